"""Fixtures of the connector's integration tests: a real Mosquitto (mTLS, per-device ACLs).

``mosquitto``: a started :class:`mosquitto.MosquittoBroker` (stopped after the test);
tests skip when mosquitto is not installed. Identities (client certificates) are made on
demand with ``mosquitto.identity(device_id)``; ``mosquitto.platform_config(device_id)``
gives a :class:`connector.config.PlatformConfig` that reaches it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mosquitto import MOSQUITTO, MosquittoBroker


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """Mosquitto with mTLS and per-device ACLs on a free loopback port."""
    if MOSQUITTO is None:
        pytest.skip("needs Mosquitto (Debian: apt-get install mosquitto)")
    broker = MosquittoBroker(tmp_path / "mosquitto").start()
    try:
        yield broker
    finally:
        broker.stop()
