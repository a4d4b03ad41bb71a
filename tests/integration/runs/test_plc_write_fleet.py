"""A pipeline writes a fleet PLC through its connector: ``aios up --connector FILE`` as a
real process (embedded broker, the connector daemon, a real Modbus simulator), a webhook
pipeline played through the API whose PLC write nodes name the PLC by its device id. The
writes are commands in the PLC's history, executed by the connector on the simulator; a
PLC that is not in the fleet is a validation problem of the node."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from up_process import UpProcess
from up_support import connected, free_port, wait_until

from aios.events.webhooks import sign
from aios.plc.modbus import decode, encode
from aios.plc.simulator import ModbusSimulator

pytestmark = pytest.mark.timeout(240)

CONNECTOR, PLC = "site-gw", "line-plc"
SECRET = "whsec-fleet-plc-31f"
POS = {"x": 0, "y": 0}


def connector_file(folder: Path, plc: ModbusSimulator) -> Path:
    """A connector with the simulator as its PLC (platform section replaced by ``aios up``)."""
    data: dict[str, Any] = {
        "connector": {"id": CONNECTOR, "name": "Site connector"},
        "platform": {"mqtt_url": f"mqtt://127.0.0.1:{free_port()}"},
        "data_dir": str(folder / "connector"),
        "heartbeat_seconds": 1,
        "plcs": [
            {
                "id": PLC,
                "name": "Line PLC",
                "host": plc.host,
                "port": plc.port,
                "poll_interval_seconds": 1,
                "registers": [
                    {"name": "beacon", "table": "coil", "address": 0, "data_type": "bool"}
                ],
            }
        ],
    }
    path = folder / "connector.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def pipeline(port: int, plc_id: str = PLC) -> dict[str, Any]:
    """webhook → 'siren' (coil 1 and a float32 register from the event, left set) and
    'beacon' (coil 2 as a 1 s pulse), both on the fleet PLC ``plc_id``."""
    return {
        "schemaVersion": 1,
        "name": "Line alarms",
        "nodes": [
            {
                "id": "door",
                "type": "aios/webhook@1",
                "config": {"path": "/hooks/door", "secret_name": "door_secret", "port": port},
                "position": POS,
            },
            {
                "id": "siren",
                "type": "aios/plc_write@1",
                "config": {
                    "device_id": plc_id,
                    "timeout_seconds": 10,
                    "writes": [
                        {"name": "siren", "table": "coil", "address": 1, "value": True},
                        {
                            "name": "level",
                            "table": "holding_register",
                            "address": "40011",
                            "data_type": "float32",
                            "order": "CDAB",
                            "value": "{{ event.data.level }}",
                        },
                    ],
                },
                "position": POS,
            },
            {
                "id": "beacon",
                "type": "aios/plc_write@1",
                "config": {
                    "device_id": plc_id,
                    "timeout_seconds": 10,
                    "pulse_seconds": 1,
                    "writes": [{"name": "beacon", "table": "coil", "address": 2, "value": True}],
                },
                "position": POS,
            },
        ],
        "edges": [
            {"source": "door", "sourceHandle": "events", "target": t, "targetHandle": "events"}
            for t in ("siren", "beacon")
        ],
    }


def test_a_pipeline_writes_a_fleet_plc_through_its_connector(
    plc: ModbusSimulator, tmp_path: Path
) -> None:
    plc.set_holding_registers(10, encode(7.0, "float32", "CDAB"))
    up = UpProcess(
        tmp_path / "data",
        tmp_path,
        args=("--connector", str(connector_file(tmp_path, plc))),
        env={"AIOS_SECRET_DOOR_SECRET": SECRET},
    ).start()
    try:
        base = up.url
        login = httpx.post(
            f"{base}/api/v1/auth/login",
            json={"username": "admin", "password": up.admin_password()},
            timeout=30,
        )
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}

        def get(path: str) -> Any:
            r = httpx.get(f"{base}/api/v1{path}", headers=auth, timeout=10)
            assert r.status_code == 200, r.text
            return r.json()

        wait_until(lambda: connected(get(f"/devices/{PLC}")), 30, "the PLC online")

        # a PLC that is not in the fleet, or a device that is not a PLC: problems of the node
        port = free_port()
        for wrong, says in (("ghost-plc", "not in the fleet"), (CONNECTOR, "not a PLC")):
            r = httpx.post(
                f"{base}/api/v1/pipelines/validate",
                json=pipeline(port, wrong),
                headers=auth,
                timeout=10,
            )
            assert r.status_code == 200, r.text
            result = r.json()
            assert result["valid"] is False
            issues = {(i["node_id"], tuple(i["path"])) for i in result["issues"]}
            assert issues == {
                ("siren", ("config", "device_id")),
                ("beacon", ("config", "device_id")),
            }
            assert all(says in i["message"] for i in result["issues"])
            assert {i["code"] for i in result["issues"]} == {"fleet_plc"}
        r = httpx.post(
            f"{base}/api/v1/pipelines/validate", json=pipeline(port), headers=auth, timeout=10
        )
        assert r.json() == {"valid": True, "issues": []}, r.text

        created = httpx.post(
            f"{base}/api/v1/pipelines", json=pipeline(port), headers=auth, timeout=10
        )
        assert created.status_code == 201, created.text
        pipeline_id = created.json()["id"]
        played = httpx.post(
            f"{base}/api/v1/pipelines/{pipeline_id}/execute", json={}, headers=auth, timeout=10
        )
        assert played.status_code in (200, 201, 202), played.text
        run_id = played.json()["id"]
        wait_until(lambda: get(f"/runs/{run_id}")["status"] == "running", 60, "run running")

        # WHEN the webhook receives an event
        raw = json.dumps({"event_id": "door-1", "level": 42.5}).encode()

        def deliver() -> bool:
            try:
                sent = httpx.post(
                    f"http://127.0.0.1:{port}/hooks/door",
                    content=raw,
                    headers={
                        "Content-Type": "application/json",
                        "X-AIOS-Signature": sign(SECRET, raw),
                    },
                    timeout=5,
                )
            except httpx.TransportError:
                return False
            return sent.status_code in (200, 202)

        wait_until(deliver, 30, "the webhook to take the event")

        # THEN the connector sets the coil and the register on the PLC
        wait_until(lambda: plc.read_coils(1, 1) == [True], 30, "coil 1 set")
        wait_until(
            lambda: decode(plc.read_holding_registers(10, 2), "float32", "CDAB") == 42.5,
            30,
            "register 40011 written",
        )

        # AND the writes are commands in the PLC's history, with their outcome
        def finished() -> list[dict[str, Any]] | None:
            items: list[dict[str, Any]] = get(f"/devices/{PLC}/commands")["items"]
            done = [c for c in items if c["status"] != "pending"]
            return items if len(done) == 4 and len(items) == 4 else None

        try:
            commands = wait_until(finished, 30, "the four commands answered")
        except AssertionError:
            listed = get(f"/devices/{PLC}/commands")["items"]
            raise AssertionError(f"commands: {json.dumps(listed, indent=1)}") from None
        commands.sort(key=lambda c: c["requested_at"])
        assert all(c["status"] == "succeeded" for c in commands), commands
        by_node = {
            node: [
                (c["name"], c["params"], c["response"]["value"])
                for c in commands
                if node in c["requested_by"]
            ]
            for node in ("siren", "beacon")
        }
        assert by_node["siren"] == [
            ("write_coil", {"table": "coil", "address": 1, "value": True}, 1.0),
            (
                "write_register",
                {
                    "table": "holding_register",
                    "address": 10,
                    "data_type": "float32",
                    "order": "CDAB",
                    "value": 42.5,
                },
                42.5,
            ),
        ]
        # the pulse: set, then restored (the inverse of the written coil) a second later
        assert by_node["beacon"] == [
            ("write_coil", {"table": "coil", "address": 2, "value": True}, 1.0),
            ("write_coil", {"table": "coil", "address": 2, "value": False}, 0.0),
        ]
        assert plc.read_coils(2, 1) == [False]
        assert all("Line alarms" in c["requested_by"] for c in commands)

        # AND the run's counters show the actions sent
        def counted() -> dict[str, Any] | None:
            actions = get(f"/runs/{run_id}")["counters"].get("actions") or {}
            ok = (
                actions.get("siren", {}).get("sent") == 1
                and actions.get("beacon", {}).get("sent") == 1
            )
            return actions if ok else None

        wait_until(counted, 30, "both actions counted sent")
        stopped = httpx.post(
            f"{base}/api/v1/pipelines/{pipeline_id}/stop", json={}, headers=auth, timeout=10
        )
        assert stopped.status_code in (200, 202), stopped.text
        deadline = time.monotonic() + 30
        while get(f"/runs/{run_id}")["status"] not in ("stopped", "succeeded", "failed"):
            assert time.monotonic() < deadline, "the run did not stop"
            time.sleep(0.1)
    finally:
        up.cleanup()
