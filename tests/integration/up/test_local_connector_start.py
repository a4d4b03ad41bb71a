"""Starting the local connector of ``aios up``: what it registers, and what it refuses."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from aios.config import Settings
from aios.domain import DeviceKind
from aios.fleet.service import FleetService
from aios.services import Services
from aios.store.sqlite import SqliteStore
from aios.up.broker import BrokerAddress
from aios.up.local_connector import LocalConnectorError, register_devices, start_local_connector
from connector.config import parse_config

SITE = """\
connector: {id: gw-local, name: Gateway}
data_dir: data
cameras:
  - id: gate
    vendor: hikvision
    host: 127.0.0.1
    username: admin
    password: env:AIOS_TEST_NO_SUCH_VARIABLE
plcs:
  - id: plc-1
    host: 127.0.0.1
    port: 1
    registers: [{name: siren, table: coil, address: 0, data_type: bool}]
sensors:
  - {type: simulated, id: climate, metrics: [{name: temperature_c}]}
"""


@pytest.fixture
def fleet(tmp_path: Path) -> FleetService:
    store = SqliteStore(tmp_path / "aios.db")
    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    return FleetService(Services(store=store, settings=settings))


def test_a_missing_secret_refuses_the_file_before_anything_is_registered(
    tmp_path: Path, fleet: FleetService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIVEN a camera password referencing an unset variable WHEN aios up starts the local
    connector THEN a clear error naming the field, and the fleet is untouched."""
    monkeypatch.delenv("AIOS_TEST_NO_SUCH_VARIABLE", raising=False)
    path = tmp_path / "site.yaml"
    path.write_text(SITE, encoding="utf-8")
    with pytest.raises(LocalConnectorError) as caught:
        start_local_connector(path, fleet, BrokerAddress(host="127.0.0.1", port=1))
    message = str(caught.value)
    assert "cameras[0].password (camera gate)" in message
    assert "AIOS_TEST_NO_SUCH_VARIABLE is not set" in message
    assert fleet.store.devices.get("gw-local") is None
    assert fleet.store.devices.get("gate") is None


def test_devices_are_registered_once_as_children_of_the_connector(
    tmp_path: Path, fleet: FleetService
) -> None:
    """The connector and each device of the file, with its kind and parent; a second call
    (a reload) registers only what was added, and leaves renamed devices alone."""
    config = parse_config(textwrap.dedent(SITE), base=tmp_path)
    assert register_devices(fleet, config) == ["gw-local", "gate", "plc-1", "climate"]
    kinds = {d: fleet.store.devices.get(d) for d in ("gw-local", "gate", "plc-1", "climate")}
    assert {d: (v.kind, v.parent_id) for d, v in kinds.items() if v is not None} == {
        "gw-local": (DeviceKind.CONNECTOR, None),
        "gate": (DeviceKind.CAMERA, "gw-local"),
        "plc-1": (DeviceKind.PLC, "gw-local"),
        "climate": (DeviceKind.SENSOR, "gw-local"),
    }
    fleet.update("gate", {"name": "Front gate"}, actor="alice", expected_version=1)
    more = parse_config(
        SITE + "  - {type: simulated, id: dust, metrics: [{name: pm10}]}\n", base=tmp_path
    )
    assert register_devices(fleet, more) == ["dust"]
    gate = fleet.store.devices.get("gate")
    assert gate is not None and gate.name == "Front gate"
