"""``aios up --demo`` as a person runs it: a real process whose demo site (the simulated
PLC in-process, the local connector playing vtest.avi as a camera, simulated sensors, the
intrusion pipeline playing on them) comes up by itself, raises zone events and pulses the
siren coil; started again on the same data folder it reuses everything."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from up_process import UpProcess
from up_support import connected, free_port

from aios.config import Settings
from aios.domain import Device, DeviceKind, GeoPoint
from aios.fleet.service import FleetService
from aios.nodes import CATALOG
from aios.pipeline.validation import validate_pipeline
from aios.plc.modbus import decode
from aios.plc.simulator import start_simulator
from aios.services import Services
from aios.store.sqlite import SqliteStore
from aios.up.demo import (
    ALERT_RULES,
    CONNECTOR_EXAMPLE,
    PIPELINE_EXAMPLE,
    PIPELINE_ID,
    PROCESS_SIGNALS,
    SITE,
    DemoError,
    PlcProcess,
    demo_locations,
    ensure_alert_rules,
    ensure_pipeline,
    pipeline_document,
    place_devices,
    retarget_plc,
    start_demo_site,
)

WAIT = 120.0
"""Seconds for the run to be running, its first zone events and its first siren pulse: the
connector loads the model (≈10 s), then vtest.avi shows people entering the zone within
seconds and one staying 5 s about 25 s in. On a busy machine frames are dropped to keep up
with the camera and a stay may be missed until the video loops (79 s)."""

DEVICES = {
    "local-gw": ("connector", None),
    "courtyard": ("camera", "local-gw"),
    "sim-plc": ("plc", "local-gw"),
    "sim-climate": ("sensor", "local-gw"),
    "sim-vibration": ("sensor", "local-gw"),
}
"""The demo site's devices (examples/connector/local.yaml): kind and parent."""


def poll(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """``predicate``'s first truthy value, polled every 0.5 s; fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"not reached within {timeout} s: {what}"
        time.sleep(0.5)


class Api:
    """The demo's API as the admin."""

    def __init__(self, up: UpProcess, password: str) -> None:
        self.client = httpx.Client(base_url=f"{up.url}/api/v1", timeout=30.0)
        res = self.client.post("/auth/login", json={"username": "admin", "password": password})
        assert res.status_code == 200, res.text
        self.client.headers["Authorization"] = f"Bearer {res.json()['access_token']}"

    def get(self, path: str, **params: Any) -> Any:
        res = self.client.get(path, params=params or None)
        assert res.status_code == 200, (path, res.status_code, res.text)
        return res.json()


def demo_lines(up: UpProcess) -> list[str]:
    """What the process printed after "AIOS is up." once the sign-in lines are there."""

    def printed() -> list[str] | None:
        lines = list(up.stdout_lines)
        after = lines[lines.index("AIOS is up.") :]
        return after if any(line.strip() == "username: admin" for line in after) else None

    result: list[str] = poll(printed, 10, "the demo's sign-in lines")
    return result


def siren_port(pipeline: dict[str, Any]) -> int:
    (siren,) = [n for n in pipeline["document"]["nodes"] if n["type"] == "aios/plc_write@1"]
    return int(siren["config"]["connection"]["port"])


@pytest.fixture
def processes() -> Iterator[list[UpProcess]]:
    started: list[UpProcess] = []
    yield started
    for up in started:
        up.cleanup()


@pytest.mark.timeout(420)
def test_demo_site_plays_the_intrusion_pipeline_and_a_restart_reuses_it(
    tmp_path: Path, video: Path, model: Path, processes: list[UpProcess]
) -> None:
    del video, model  # the demo uses them as `aios assets fetch`/`aios models fetch` left them
    data = tmp_path / "data"
    plc_port = free_port()
    # WHEN `aios up --demo` starts on a new data folder
    up = UpProcess(data, tmp_path, args=("--demo",), env={"AIOS_DEMO_PLC_PORT": str(plc_port)})
    processes.append(up)
    up.start()
    # THEN it ends its start with where to sign in, as whom, and the first admin's password
    password = up.admin_password()
    tail = demo_lines(up)
    assert f"Open {up.url}/ and sign in:" in tail
    assert f"  password: {password}" in tail
    assert any(f"127.0.0.1:{plc_port}" in line for line in tail)
    api = Api(up, password)

    # AND the demo devices are registered under the connector, placed on the map, online
    devices = {d["id"]: d for d in api.get("/devices", limit=100)["items"]}
    assert {i: (d["kind"], d["parent_id"]) for i, d in devices.items()} == DEVICES
    for device in devices.values():
        assert device["site"] == SITE
        assert -90 <= device["location"]["lat"] <= 90 and -180 <= device["location"]["lon"] <= 180
    assert len({(d["location"]["lat"], d["location"]["lon"]) for d in devices.values()}) == len(
        DEVICES
    )
    for device_id in DEVICES:
        poll(lambda d=device_id: connected(api.get(f"/devices/{d}")), 30, f"{device_id} online")
    # AND the demo's alert rules watch them
    rules = api.get("/alert-rules")
    rules = rules["items"] if isinstance(rules, dict) else rules
    assert {r["id"] for r in rules} == {r.id for r in ALERT_RULES}

    # AND the intrusion pipeline is stored on the fleet camera, its siren on the demo PLC
    (listed,) = api.get("/pipelines")["items"]
    assert listed["id"] == PIPELINE_ID
    pipeline = api.get(f"/pipelines/{PIPELINE_ID}")
    (camera,) = [n for n in pipeline["document"]["nodes"] if n["id"] == "camera"]
    assert camera["type"] == "aios/camera.device@1"
    assert camera["config"] == {"device_id": "courtyard"}
    assert siren_port(pipeline) == plc_port
    assert pipeline["validation"]["valid"] is True
    # AND it is playing
    run_id = pipeline["active_run_id"]
    assert run_id is not None
    poll(lambda: api.get(f"/runs/{run_id}")["status"] == "running", WAIT, "the run running")

    # AND people entering the restricted area are stored as zone events
    zone_events = poll(
        lambda: [
            e
            for e in api.get("/events", run_id=run_id, limit=100)["items"]
            if e["type"] == "zone.enter" and e["node_id"] == "restricted"
        ],
        WAIT,
        "zone events",
    )
    assert zone_events[0]["data"]["dashboard"]["node_id"] == "dashboard"

    # AND someone staying pulses the siren: coil 0 of the simulated PLC, as the connector
    # reads it back into the PLC's telemetry, and as the demo logs the coil's changes
    def siren_on() -> bool:
        samples = api.get("/devices/sim-plc/telemetry", metric="siren", limit=1000)["items"]
        return any(s["value"] == 1 for s in samples)

    poll(siren_on, WAIT, "the siren coil ON in the PLC's telemetry")
    batches = api.get("/devices/sim-plc/telemetry", metric="batch_count", limit=1000)["items"]
    assert max(s["value"] for s in batches) >= 1  # the PLC's process values move
    poll(lambda: "demo PLC coil changed: siren ON" in up.stderr(), 10, "the coil change logged")
    # the pulse is counted once it has ended (3 s after the coil went ON) and the run's
    # counters are next written; a later alarm may be counted "throttled" before that
    counters = poll(
        lambda: (
            (c := api.get(f"/runs/{run_id}")["counters"])["actions"].get("siren", {}).get("sent")
            and c
        ),
        30,
        "the siren's action counted as sent",
    )
    assert set(counters["actions"]["telegram"]) == {"not_configured"}

    # WHEN it is stopped and started again on the same data folder, its PLC on another port
    assert up.signal(signal.SIGINT) == 0
    new_port = free_port()
    again = UpProcess(data, tmp_path, args=("--demo",), env={"AIOS_DEMO_PLC_PORT": str(new_port)})
    processes.append(again)
    again.start()
    # THEN no password is shown again, only where to sign in
    assert again.printed_password() is None
    tail = demo_lines(again)
    assert f"Open {again.url}/ and sign in:" in tail
    api = Api(again, password)
    # AND nothing is duplicated: the same devices, the same one pipeline, its siren moved
    assert {d["id"] for d in api.get("/devices", limit=100)["items"]} == set(DEVICES)
    rules = api.get("/alert-rules")
    assert len(rules["items"] if isinstance(rules, dict) else rules) == len(ALERT_RULES)
    (listed,) = api.get("/pipelines")["items"]
    assert listed["id"] == PIPELINE_ID
    pipeline = api.get(f"/pipelines/{PIPELINE_ID}")
    assert pipeline["latest_revision"] == 2
    assert siren_port(pipeline) == new_port
    # AND it plays again, in a new run (the earlier one stopped with its process)
    new_run = pipeline["active_run_id"]
    assert new_run is not None and new_run != run_id
    assert api.get(f"/runs/{run_id}")["status"] == "stopped"
    poll(lambda: api.get(f"/runs/{new_run}")["status"] == "running", WAIT, "the new run running")
    assert again.signal(signal.SIGINT) == 0


# --------------------------------------------------------------------------- the pieces


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    store = SqliteStore(tmp_path / "aios.db")
    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    yield Services(store=store, settings=settings)
    store.close()


def test_the_demo_pipeline_is_the_example_on_the_fleet_camera_and_the_demo_plc() -> None:
    example = json.loads(PIPELINE_EXAMPLE.read_text(encoding="utf-8"))
    document = pipeline_document(example, camera_id="courtyard", plc_port=5555)
    validate_pipeline(document, CATALOG)  # raises PipelineInvalid listing any problem
    types = {n["id"]: n["type"] for n in document["nodes"]}
    assert types == {n["id"]: n["type"] for n in example["nodes"]} | {
        "camera": "aios/camera.device@1"
    }
    (siren,) = [n for n in document["nodes"] if n["id"] == "siren"]
    assert siren["config"]["connection"] == {
        "transport": "tcp",
        "host": "127.0.0.1",
        "port": 5555,
        "unit_id": 1,
    }
    assert siren["config"]["writes"] == [
        {"name": "siren", "table": "coil", "address": 0, "value": True}
    ]
    # a later start on another port moves the siren; a PLC elsewhere is left alone
    moved = retarget_plc(document, 6666)
    assert moved is not None and siren_port({"document": moved}) == 6666
    assert retarget_plc(document, 5555) is None
    siren["config"]["connection"]["host"] = "10.0.0.7"
    assert retarget_plc(document, 6666) is None


def test_a_second_ensure_neither_duplicates_nor_rewrites_the_pipeline(
    services: Services,
) -> None:
    example = json.loads(PIPELINE_EXAMPLE.read_text(encoding="utf-8"))
    document = pipeline_document(example, camera_id="courtyard", plc_port=5555)
    assert ensure_pipeline(services, document, 5555) == PIPELINE_ID
    assert ensure_pipeline(services, document, 5555) == PIPELINE_ID
    (record,) = services.store.pipelines.list().items
    assert (record.id, record.latest_revision) == (PIPELINE_ID, 1)
    ensure_pipeline(services, document, 6666)
    record_after = services.store.pipelines.get(PIPELINE_ID)
    assert record_after is not None and record_after.latest_revision == 2


def test_devices_are_placed_unless_an_operator_placed_them(services: Services) -> None:
    fleet = FleetService(services)
    fleet.register(Device(id="gw", name="gw", kind=DeviceKind.CONNECTOR), actor="t")
    for device_id in ("cam", "plc"):
        fleet.register(
            Device(id=device_id, name=device_id, kind=DeviceKind.CAMERA, parent_id="gw"),
            actor="t",
        )
    mine = GeoPoint(lat=1.0, lon=2.0)
    fleet.update("plc", {"location": mine.model_dump()}, expected_version=None, actor="t")
    locations = demo_locations(["gw", "cam", "plc", "not-registered"])
    assert len({(p.lat, p.lon) for p in locations.values()}) == 4
    assert place_devices(fleet, locations) == ["gw", "cam", "plc"]
    stored = {d: services.store.devices.get(d) for d in ("gw", "cam", "plc")}
    assert {d: (v.site, v.location) for d, v in stored.items() if v} == {
        "gw": (SITE, locations["gw"]),
        "cam": (SITE, locations["cam"]),
        "plc": (SITE, mine),
    }
    assert place_devices(fleet, locations) == []


def test_alert_rules_are_saved_once_for_the_devices_there_are(services: Services) -> None:
    fleet = FleetService(services)
    fleet.register(Device(id="local-gw", name="gw", kind=DeviceKind.CONNECTOR), actor="t")
    fleet.register(
        Device(id="sim-vibration", name="v", kind=DeviceKind.SENSOR, parent_id="local-gw"),
        actor="t",
    )
    assert ensure_alert_rules(fleet) == ["rule_demo_vibration"]  # no camera registered
    changed = ALERT_RULES[0].model_copy(update={"threshold": 9.0})
    fleet.put_rule(changed)
    assert ensure_alert_rules(fleet) == []
    assert fleet.list_rules("sim-vibration") == [changed]


def test_the_demo_plc_holds_moving_process_values(tmp_path: Path) -> None:
    example = yaml.safe_load(CONNECTOR_EXAMPLE.read_text(encoding="utf-8"))
    with start_simulator() as plc:
        process = PlcProcess(plc, example)
        assert sorted(r.name for r in process.registers) == sorted(PROCESS_SIGNALS)
        process.write(150.0)  # half the tank's period, a quarter of the temperature's
        assert decode(plc.read_holding_registers(0, 2), "float32", "CDAB") == pytest.approx(55.0)
        assert decode(plc.read_holding_registers(2, 1), "int16") == 480  # 48.0 degC, tenths
        assert decode(plc.read_holding_registers(4, 2), "uint32") == 15
        process.write(75.0)
        assert decode(plc.read_holding_registers(0, 2), "float32", "CDAB") == pytest.approx(85.0)


def test_a_taken_plc_port_refuses_the_demo_with_what_to_change(tmp_path: Path) -> None:
    with start_simulator() as taken, pytest.raises(DemoError, match="AIOS_DEMO_PLC_PORT"):
        start_demo_site(tmp_path / "data", taken.port)
