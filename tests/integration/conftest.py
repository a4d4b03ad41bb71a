"""Fixtures shared by the integration tests: a settable clock and recorded waits (action
nodes), the demo video, the default model and a simulated PLC (connector, runs, aios up)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from action_helpers import Clock, Sleeps

from aios import assets
from aios.plc.simulator import ModbusSimulator, start_simulator


@pytest.fixture
def clock() -> Clock:
    """A settable clock, started at :data:`action_helpers.START`."""
    return Clock()


@pytest.fixture
def sleeps() -> Sleeps:
    """Records the waits a task asks for instead of sleeping."""
    return Sleeps()


@pytest.fixture(scope="session")
def video() -> Path:
    """``vtest.avi`` (people walking, 768×576, 10 fps), as ``aios assets fetch`` keeps it."""
    try:
        return assets.path("vtest.avi")
    except Exception as err:  # no network and not cached
        pytest.skip(f"vtest.avi is not available: {err}")


@pytest.fixture(scope="session")
def model() -> Path:
    """The default detection model, as ``aios models fetch`` builds it."""
    from aios.vision.model_store import resolve_model_path  # loads onnx: only when asked

    try:
        return resolve_model_path(None)
    except Exception as err:
        pytest.skip(f"the default detection model is not available: {err}")


@pytest.fixture
def plc() -> Iterator[ModbusSimulator]:
    """A simulated Modbus TCP PLC on a free loopback port: 16 coils, 100 registers."""
    with start_simulator(coils=16, holding_registers=100) as sim:
        yield sim
