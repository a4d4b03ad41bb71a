"""Fixtures shared by the integration tests of action nodes."""

from __future__ import annotations

import pytest
from action_helpers import Clock, Sleeps


@pytest.fixture
def clock() -> Clock:
    """A settable clock, started at :data:`action_helpers.START`."""
    return Clock()


@pytest.fixture
def sleeps() -> Sleeps:
    """Records the waits a task asks for instead of sleeping."""
    return Sleeps()
