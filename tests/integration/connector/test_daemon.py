"""The connector daemon as a whole: real Mosquitto (mTLS, per-device ACLs), a real pymodbus
server, simulated sensors and vtest.avi played as a live camera.

The platform side is :class:`mosquitto.Receiver` (subscribed as the platform identity) and
:meth:`mosquitto.MosquittoBroker.publish` (commands and the retained desired configuration).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from mosquitto import PLATFORM_IDENTITY, MosquittoBroker, Receiver, wait_until

from aios.messages import CommandRequest, DesiredConfig
from aios.plc.modbus import encode
from aios.plc.simulator import ModbusSimulator
from connector import __version__
from connector.config import ConfigError, ConnectorConfig, parse_config
from connector.daemon import FIRMWARE, Connector
from connector.queue import OutboundQueue

GW = "gw-1"
POS = {"x": 0, "y": 0}


def platform_section(broker: MosquittoBroker, **fields: Any) -> dict[str, Any]:
    """The YAML ``platform`` section reaching ``broker`` as the connector's identity."""
    files = broker.identity(GW)
    return {
        "mqtt_url": f"mqtts://127.0.0.1:{broker.port}",
        "tls": {
            "ca_file": str(files.ca_file),
            "cert_file": str(files.cert_file),
            "key_file": str(files.key_file),
        },
        "reconnect_min_seconds": 0.2,
        "reconnect_max_seconds": 1.0,
        **fields,
    }


def config_data(
    broker: MosquittoBroker, plc: ModbusSimulator, data_dir: Path, video: Path | None
) -> dict[str, Any]:
    """A connector with two PLCs on the simulator, a simulated sensor and (optionally)
    the video as a camera; heartbeats every second."""
    data: dict[str, Any] = {
        "connector": {"id": GW},
        "platform": platform_section(broker),
        "data_dir": str(data_dir),
        "heartbeat_seconds": 1,
        "plcs": [
            {
                "id": "plc-a",
                "host": plc.host,
                "port": plc.port,
                "poll_interval_seconds": 0.2,
                "registers": [
                    {
                        "name": "siren",
                        "table": "coil",
                        "address": 0,
                        "data_type": "bool",
                        "writable": True,
                    },
                    {
                        "name": "tank_level",
                        "address": 40001,
                        "data_type": "float32",
                        "order": "CDAB",
                        "unit": "%",
                    },
                    {
                        "name": "temperature",
                        "address": 40003,
                        "data_type": "int16",
                        "scale": 0.1,
                        "unit": "degC",
                    },
                ],
            },
            {
                "id": "plc-b",
                "host": plc.host,
                "port": plc.port,
                "poll_interval_seconds": 0.2,
                "registers": [{"name": "flow", "address": 40011, "data_type": "uint16"}],
            },
        ],
        "sensors": [
            {
                "type": "simulated",
                "id": "climate-1",
                "poll_interval_seconds": 0.5,
                "metrics": [{"name": "humidity", "unit": "%", "mid": 45, "amplitude": 5}],
            }
        ],
    }
    if video is not None:
        data["cameras"] = [{"id": "cam-1", "url": str(video)}]
    return data


def write_config(path: Path, data: dict[str, Any]) -> ConnectorConfig:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return parse_config(path.read_text(encoding="utf-8"), name=path.name, base=path.parent)


@pytest.fixture
def connectors() -> Iterator[list[Connector]]:
    """Connectors started by a test, stopped at its end."""
    started: list[Connector] = []
    yield started
    for connector in started:
        connector.stop(flush_timeout=0)


def command(
    request_id: str, device_id: str, name: str, params: dict[str, Any], *, deadline_s: float = 30
) -> tuple[str, bytes, bool]:
    now = datetime.now(UTC)
    request = CommandRequest(
        message_id=f"m-{request_id}",
        time=now,
        request_id=request_id,
        device_id=device_id,
        name=name,
        params=params,
        deadline=now + timedelta(seconds=deadline_s),
    )
    return (f"cmd/aios/{GW}/req", request.model_dump_json().encode(), False)


def desired(version: int, plans: list[dict[str, Any]]) -> tuple[str, bytes, bool]:
    message = DesiredConfig(
        message_id=f"desired-{version}",
        time=datetime.now(UTC),
        device_id=GW,
        version=version,
        config={"stream_plans": plans},
    )
    return (f"cfg/aios/{GW}/desired", message.model_dump_json().encode(), True)


def found(receiver: Receiver, topic_suffix: str, **match: Any) -> list[dict[str, Any]]:
    """Messages on ``dt|cmd/aios/gw-1/<topic_suffix>`` whose top-level fields equal ``match``."""
    items = list(receiver.messages)  # a copy: the receiver appends from its thread
    return [
        data
        for topic, data in items
        if topic.endswith("/" + topic_suffix) and all(data.get(k) == v for k, v in match.items())
    ]


def response(receiver: Receiver, request_id: str, timeout: float = 15) -> dict[str, Any]:
    wait_until(lambda: found(receiver, "res", request_id=request_id), timeout, request_id)
    return found(receiver, "res", request_id=request_id)[0]


def motion_plan(plan_id: str, camera_id: str, version: int = 1, **config: Any) -> dict[str, Any]:
    """A stream plan: camera → motion gate (no detector: cheap and fast to start)."""
    return {
        "plan_id": plan_id,
        "version": version,
        "camera_id": camera_id,
        "pipeline": {
            "name": plan_id,
            "nodes": [
                {
                    "id": "cam",
                    "type": "aios/camera.rtsp@1",
                    "config": {"host": "bound"},
                    "position": POS,
                },
                {
                    "id": "motion",
                    "type": "aios/motion_gate@1",
                    "config": {"min_changed_fraction": 0.002, **config},
                    "position": POS,
                },
            ],
            "edges": [
                {
                    "source": "cam",
                    "sourceHandle": "frames",
                    "target": "motion",
                    "targetHandle": "frames",
                }
            ],
        },
    }


def config_reports(receiver: Receiver) -> dict[int, dict[str, Any]]:
    """The config.reported events' data by desired version."""
    out: dict[int, dict[str, Any]] = {}
    for data in found(receiver, "events"):
        for event in data["events"]:
            if event["type"] == "config.reported":
                assert data.get("device_id") is None  # about the connector itself
                out[event["data"]["version"]] = event["data"]
    return out


# --------------------------------------------------------------------------- tests


def test_heartbeats_telemetry_and_commands(
    mosquitto: MosquittoBroker,
    plc: ModbusSimulator,
    video: Path,
    tmp_path: Path,
    connectors: list[Connector],
) -> None:
    # GIVEN values in the PLC and the platform listening
    plc.set_holding_registers(0, encode(61.25, "float32", "CDAB") + encode(-125, "int16"))
    plc.set_holding_registers(10, [4321])
    receiver = Receiver(mosquitto, [f"dt/aios/{GW}/#", f"cmd/aios/{GW}/res"])
    try:
        config = write_config(
            tmp_path / "c.yaml", config_data(mosquitto, plc, tmp_path / "data", video)
        )
        # WHEN the connector runs
        connector = Connector(config, config_path=tmp_path / "c.yaml")
        connectors.append(connector)
        connector.start()
        assert connector.link.wait_connected(15), connector.link.stats()

        # THEN heartbeats arrive for the connector and each child, the camera streaming
        def heartbeat(device_id: str | None, **need: Any) -> dict[str, Any] | None:
            for data in reversed(found(receiver, "heartbeat", device_id=device_id)):
                if all(data["health"].get(k) is not None for k in need):
                    return data
            return None

        wait_until(
            lambda: (h := heartbeat("cam-1", fps=1)) is not None and h["health"]["frames"] >= 25,
            20,
            "a camera heartbeat after 25 frames",
        )
        wait_until(
            lambda: (
                heartbeat("plc-a", poll_success_rate=1)
                and heartbeat("plc-b", polls=1)
                and heartbeat("climate-1")
            ),
            10,
            "PLC and sensor heartbeats",
        )
        own = heartbeat(None)
        assert own is not None
        assert own["firmware_version"] == FIRMWARE and __version__ in FIRMWARE
        assert own["kind"] == "connector"
        for key in ("cpu_percent", "memory_percent", "disk_percent", "queue_depth"):
            assert isinstance(own["health"][key], int | float), key
        assert 0 <= own["health"]["disk_percent"] <= 100
        cam = heartbeat("cam-1", fps=1)
        assert cam is not None and cam["kind"] == "camera"
        assert 0 <= cam["health"]["last_frame_age_seconds"] < 2
        assert 7 <= cam["health"]["fps"] <= 13  # vtest.avi plays in real time, at its 10 fps
        plc_a = heartbeat("plc-a", poll_success_rate=1)
        assert plc_a is not None and plc_a["kind"] == "plc"
        assert plc_a["health"]["poll_success_rate"] == 100.0
        sensor = heartbeat("climate-1")
        assert sensor is not None and sensor["kind"] == "sensor"
        # AND each device's first message is a heartbeat naming its kind (a platform that
        # registers unknown devices as pending learns the kind from it)
        for device_id, kind in (("plc-a", "plc"), ("climate-1", "sensor"), ("cam-1", "camera")):
            first = next(d for _, d in list(receiver.messages) if d.get("device_id") == device_id)
            assert first.get("kind") == kind, first

        # AND telemetry carries the PLC's decoded, scaled values
        def values(device_id: str) -> dict[str, float]:
            out: dict[str, float] = {}
            for data in found(receiver, "telemetry", device_id=device_id):
                out.update({s["metric"]: s["value"] for s in data["samples"]})
            return out

        wait_until(lambda: "temperature" in values("plc-a"), 10, "plc-a telemetry")
        wait_until(lambda: "flow" in values("plc-b"), 10, "plc-b telemetry")
        wait_until(lambda: "humidity" in values("climate-1"), 10, "sensor telemetry")
        assert values("plc-a") == {"siren": 0.0, "tank_level": 61.25, "temperature": -12.5}
        assert values("plc-b") == {"flow": 4321.0}
        assert 35 <= values("climate-1")["humidity"] <= 55

        # WHEN the platform sends commands
        mosquitto.publish(
            PLATFORM_IDENTITY,
            [
                command("r-write", "plc-a", "write_coil", {"register": "siren", "value": True}),
                command("r-unknown", "plc-zz", "write_coil", {"register": "siren", "value": 1}),
                command(
                    "r-late",
                    "plc-a",
                    "write_coil",
                    {"register": "siren", "value": 0},
                    deadline_s=-1,
                ),
                command("r-ping", GW, "ping", {}),
            ],
        )
        # THEN the write is answered with the request id and the value read back
        written = response(receiver, "r-write")
        assert written["ok"] is True and written["error"] is None
        assert written["result"]["value"] == 1.0 and written["result"]["register"] == "siren"
        assert plc.read_coils(0, 1) == [True]
        # AND the others with a clear error; the late one was not executed
        unknown = response(receiver, "r-unknown")
        assert unknown["ok"] is False
        assert "plc-zz" in unknown["error"] and "plc-a, plc-b" in unknown["error"]
        late = response(receiver, "r-late")
        assert late["ok"] is False and "deadline" in late["error"]
        assert plc.read_coils(0, 1) == [True]
        ping = response(receiver, "r-ping")
        assert ping["ok"] is True and ping["result"]["version"] == __version__
        assert ping["result"]["uptime_seconds"] > 0
        # AND the coil's new value is in the telemetry after the next poll
        wait_until(lambda: values("plc-a")["siren"] == 1.0, 10, "siren on in telemetry")
    finally:
        receiver.close()


def test_desired_stream_plans_start_stop_and_report(
    *,
    mosquitto: MosquittoBroker,
    plc: ModbusSimulator,
    video: Path,
    tmp_path: Path,
    connectors: list[Connector],
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = Receiver(mosquitto, [f"dt/aios/{GW}/events", f"dt/aios/{GW}/heartbeat"])
    try:
        data = config_data(mosquitto, plc, tmp_path / "data", video)
        data["plcs"], data["sensors"] = [], []
        config = write_config(tmp_path / "c.yaml", data)
        connector = Connector(config, config_path=tmp_path / "c.yaml")
        connectors.append(connector)
        # GIVEN a retained desired configuration with a plan over the file camera
        mosquitto.publish(PLATFORM_IDENTITY, [desired(1, [motion_plan("p1", "cam-1")])])
        # WHEN the connector starts
        connector.start()
        # THEN it runs the plan and reports it accepted and running
        wait_until(lambda: 1 in config_reports(receiver), 20, "the report of v1")
        report = config_reports(receiver)[1]
        assert report["accepted"] is True and "error" not in report
        assert [
            (p["plan_id"], p["camera_id"], p["state"]) for p in report["config"]["stream_plans"]
        ] == [("p1", "cam-1", "running")]
        worker = connector.plans.workers["p1"]
        wait_until(lambda: connector.plans.status()[0].frames >= 5, 15, "frames through plan p1")

        # WHEN the link reconnects (the broker restarts) and the retained v1 comes again
        def applied_v1() -> int:
            return sum("desired configuration v1" in r.getMessage() for r in caplog.records)

        caplog.set_level(logging.DEBUG, logger="connector.daemon")
        applied = applied_v1()
        mosquitto.restart()
        wait_until(lambda: applied_v1() > applied, 30, "v1 applied again after reconnecting")
        # (a heartbeat sent now is queued after any report of that application)
        before = len(found(receiver, "heartbeat", device_id=None))
        connector._send_heartbeats()
        wait_until(
            lambda: len(found(receiver, "heartbeat", device_id=None)) > before,
            15,
            "a heartbeat after the reconnection",
        )
        # THEN the same worker runs on and the outcome is not reported a second time
        assert connector.plans.workers["p1"] is worker and worker.is_alive()
        v1_reports = [
            e
            for d in found(receiver, "events")
            for e in d["events"]
            if e["type"] == "config.reported" and e["data"]["version"] == 1
        ]
        assert len(v1_reports) == 1

        # WHEN a new version without the plan is pushed
        mosquitto.publish(PLATFORM_IDENTITY, [desired(2, [])])
        # THEN the plan's worker stops and the report says nothing runs
        wait_until(lambda: 2 in config_reports(receiver), 15, "the report of v2")
        assert config_reports(receiver)[2]["accepted"] is True
        assert config_reports(receiver)[2]["config"]["stream_plans"] == []
        assert not worker.is_alive() and connector.plans.workers == {}

        # WHEN a version with an invalid plan beside a valid one is pushed
        mosquitto.publish(
            PLATFORM_IDENTITY,
            [
                desired(
                    3,
                    [
                        motion_plan("bad", "cam-1", min_changed_fraction=-1),
                        motion_plan("good", "cam-1"),
                    ],
                )
            ],
        )
        # THEN it is refused naming the bad plan and its field; the valid one runs
        wait_until(lambda: 3 in config_reports(receiver), 15, "the report of v3")
        report = config_reports(receiver)[3]
        assert report["accepted"] is False
        assert "'bad'" in report["error"] and "min_changed_fraction" in report["error"]
        assert "good" not in report["error"]
        assert [p["plan_id"] for p in report["config"]["stream_plans"]] == ["good"]
        wait_until(
            lambda: (
                [(s.plan_id, s.state) for s in connector.plans.status()] == [("good", "running")]
                and connector.plans.status()[0].frames >= 3
            ),
            15,
            "plan 'good' running",
        )
        assert connector.status()["stream_plans"] == [
            {"plan_id": "good", "camera_id": "cam-1", "state": "running"}
        ]
        # AND the connector's heartbeat carries the version it runs
        wait_until(
            lambda: found(receiver, "heartbeat", device_id=None, config_version=3),
            5,
            "a heartbeat with config_version 3",
        )
    finally:
        receiver.close()


def test_apply_config_restarts_only_what_changed(
    *,
    mosquitto: MosquittoBroker,
    plc: ModbusSimulator,
    video: Path,
    tmp_path: Path,
    connectors: list[Connector],
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "c.yaml"
    data = config_data(mosquitto, plc, tmp_path / "data", video)
    connector = Connector(write_config(path, data), config_path=path)
    connectors.append(connector)
    connector.start()
    assert connector.link.wait_connected(15)
    wait_until(lambda: connector.cameras["cam-1"].health().frames > 0, 15, "camera frames")
    pollers = dict(connector.pollers)
    camera = connector.cameras["cam-1"]
    link = connector.link

    # WHEN one PLC's register map changes in the file
    data["plcs"][0]["registers"].append(
        {"name": "pressure", "address": 40021, "data_type": "uint16", "unit": "bar"}
    )
    write_config(path, data)
    report = connector.reload()
    # THEN only that poller restarts: the others and the camera are the same, still running
    assert report is not None
    assert report.restarted == ["plc-a"] and report.started == [] and report.stopped == []
    assert sorted(report.unchanged) == ["cam-1", "climate-1", "plc-b"]
    assert report.link_restarted is False and connector.link is link
    assert connector.pollers["plc-a"] is not pollers["plc-a"]
    assert connector.plcs["plc-a"] is connector.pollers["plc-a"]
    old = pollers["plc-a"]
    assert isinstance(old, type(connector.plcs["plc-a"]))
    assert old._thread is not None and not old._thread.is_alive()
    for device_id in ("plc-b", "climate-1"):
        assert connector.pollers[device_id] is pollers[device_id]
    assert connector.cameras["cam-1"] is camera and camera.health().state == "streaming"
    polls_b = connector.pollers["plc-b"].health()["polls"]
    frames = camera.health().frames
    wait_until(
        lambda: (
            connector.pollers["plc-b"].health()["polls"] > polls_b + 2
            and camera.health().frames > frames + 5
            and connector.pollers["plc-a"].health().get("poll_success_rate") == 100.0
        ),
        10,
        "plc-b, the camera and the new plc-a poller working",
    )
    assert connector.config.plcs[0].registers[-1].name == "pressure"

    # WHEN the file becomes invalid
    text = path.read_text()
    path.write_text(text.replace("data_type: uint16", "data_type: uint17"))
    with caplog.at_level(logging.ERROR, logger="connector.daemon"):
        assert connector.reload() is None
    # THEN the running configuration is kept and the log says why (file, line, field)
    why = [r.getMessage() for r in caplog.records if "not applied" in r.getMessage()]
    assert len(why) == 1, caplog.text
    assert "c.yaml:" in why[0] and "plcs[1].registers[0].data_type" in why[0], why[0]
    assert connector.config.plcs[0].registers[-1].name == "pressure"
    assert connector.pollers == {**pollers, "plc-a": connector.plcs["plc-a"]}

    # WHEN the new platform section names a TLS file that is not there
    broken = copy.deepcopy(data)
    broken["platform"]["tls"]["ca_file"] = str(tmp_path / "absent-ca.pem")
    write_config(path, broken)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="connector.daemon"):
        assert connector.reload() is None
    # THEN the link is untouched (still connected) and the log names the file
    assert connector.link is link and link.connected
    assert "absent-ca.pem" in caplog.text and "kept" in caplog.text

    # WHEN the file changes the connector's id
    renamed = copy.deepcopy(data)
    renamed["connector"]["id"] = "gw-2"
    write_config(path, renamed)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="connector.daemon"):
        assert connector.reload() is None
    # THEN it is refused (a restart is needed), nothing stops
    assert "connector.id" in caplog.text and "restart" in caplog.text
    assert connector.id == GW and connector.cameras["cam-1"] is camera
    with pytest.raises(ConfigError, match=r"connector\.id"):
        connector.apply_config(write_config(path, renamed))

    # WHEN the platform section changes
    data["platform"]["keepalive_seconds"] = 20
    write_config(path, data)
    report = connector.reload()
    # THEN the link reconnects and no device restarts
    assert report is not None and report.link_restarted is True
    assert report.restarted == [] and len(report.unchanged) == 4
    assert connector.link is not link and not link.connected
    assert connector.link.wait_connected(15), connector.link.stats()
    assert connector.link.platform.keepalive_seconds == 20
    assert connector.cameras["cam-1"] is camera


def queued_ids(queue: OutboundQueue) -> list[tuple[str, str]]:
    """``(topic, message_id)`` of every message in the queue, oldest first."""
    return [(topic, data["message_id"]) for topic, data in queued(queue)]


def queued(queue: OutboundQueue) -> list[tuple[str, dict[str, Any]]]:
    """``(topic, decoded JSON)`` of every message in the queue, oldest first."""
    return [(m.topic, json.loads(m.payload)) for m in queue.pending(100_000)]


def test_stop_flushes_what_the_outage_queued(
    mosquitto: MosquittoBroker,
    plc: ModbusSimulator,
    tmp_path: Path,
    connectors: list[Connector],
) -> None:
    receiver = Receiver(mosquitto, [f"dt/aios/{GW}/#"])
    try:
        config = write_config(
            tmp_path / "c.yaml", config_data(mosquitto, plc, tmp_path / "data", None)
        )
        connector = Connector(config)
        connector.start()
        assert connector.link.wait_connected(15)
        wait_until(lambda: found(receiver, "telemetry"), 10, "telemetry before the outage")

        # WHEN the broker is down while the devices report
        mosquitto.stop()
        wait_until(lambda: connector.queue.depth() >= 30, 15, "messages queued in the outage")
        # AND it returns before the connector is stopped
        queued = queued_ids(connector.queue)
        mosquitto.start()
        stop_started = datetime.now(UTC)
        connector.stop(flush_timeout=15)
        # THEN everything queued, and the last heartbeats sent by stop, reached the broker
        with OutboundQueue(config.data_dir / "outbox.sqlite3") as queue:
            assert queue.depth() == 0
        wait_until(
            lambda: {m for _, m in queued} <= set(receiver.ids()), 15, "the outage's messages"
        )
        last = found(receiver, "heartbeat", device_id=None)[-1]
        assert datetime.fromisoformat(last["time"]) >= stop_started
        assert {d.get("device_id") for d in found(receiver, "heartbeat")} >= {
            None,
            "plc-a",
            "plc-b",
            "climate-1",
        }
        # AND each device's messages arrived in the order they were queued
        order = {m: i for i, (_, m) in enumerate(queued)}
        arrived = [order[m] for m in receiver.ids() if m in order]
        assert arrived == sorted(arrived)
    finally:
        receiver.close()


def test_stop_during_an_outage_keeps_the_queue_for_the_next_start(
    mosquitto: MosquittoBroker,
    plc: ModbusSimulator,
    tmp_path: Path,
    connectors: list[Connector],
) -> None:
    receiver = Receiver(mosquitto, [f"dt/aios/{GW}/#"])
    try:
        config = write_config(
            tmp_path / "c.yaml", config_data(mosquitto, plc, tmp_path / "data", None)
        )
        first = Connector(config)
        first.start()
        assert first.link.wait_connected(15)
        # WHEN the broker is down while the devices report, and the connector is stopped
        mosquitto.stop()
        wait_until(lambda: first.queue.depth() >= 20, 15, "messages queued in the outage")
        depth = first.queue.depth()
        stop_time = datetime.now(UTC)
        started = time.monotonic()
        first.stop(flush_timeout=1.0)
        # THEN it stops within the flush bound (plus the link's own shutdown)
        assert time.monotonic() - started < 8
        # AND nothing was lost: the queue holds the outage's messages and the last heartbeats
        with OutboundQueue(config.data_dir / "outbox.sqlite3") as queue:
            kept_messages = queued(queue)
        kept = [data["message_id"] for _, data in kept_messages]
        assert len(kept) >= depth >= 20
        last = {
            data.get("device_id")
            for topic, data in kept_messages
            if topic.endswith("/heartbeat") and datetime.fromisoformat(data["time"]) >= stop_time
        }
        assert last == {None, "plc-a", "plc-b", "climate-1"}  # sent while stopping

        # WHEN the broker is back and the connector starts again on the same data folder
        mosquitto.start()
        seen = set(receiver.ids())  # (a message in flight at the outage may have arrived)
        before = len(receiver.ids())
        restarted = datetime.now(UTC)
        second = Connector(config)
        connectors.append(second)
        second.start()
        # THEN every kept message is delivered, before anything new, in the order queued
        wait_until(lambda: set(kept) <= set(receiver.ids()), 20, "the kept messages")
        expected = [m for m in kept if m not in seen]
        # (the broker may still hand the receiver's session messages it stored before the
        # outage: they are neither kept nor new, and are left out of the order check)
        arrived = [
            data["message_id"]
            for _, data in list(receiver.messages)[before:]
            if data["message_id"] in expected or datetime.fromisoformat(data["time"]) >= restarted
        ]
        assert arrived[: len(expected)] == expected
    finally:
        receiver.close()
