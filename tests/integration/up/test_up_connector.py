"""``aios up --connector FILE`` as a real process: the devices beside the server reached
through the connector daemon, against the embedded broker, a real Modbus simulator and a
simulated sensor."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from up_process import STOP_TIMEOUT, UpProcess
from up_support import connected, free_port, wait_until

from aios.plc.modbus import encode
from aios.plc.simulator import ModbusSimulator

CONNECTOR = "local-gw"


def connector_file(folder: Path, plc: ModbusSimulator) -> Path:
    """A local connector like ``examples/connector/local.yaml``: the simulator PLC and a
    simulated sensor, heartbeats every second. Its platform section is replaced by
    ``aios up``'s broker (this one points nowhere on purpose)."""
    data: dict[str, Any] = {
        "connector": {"id": CONNECTOR, "name": "Local connector"},
        "platform": {"mqtt_url": f"mqtt://127.0.0.1:{free_port()}"},
        "data_dir": str(folder / "connector"),
        "heartbeat_seconds": 1,
        "plcs": [
            {
                "id": "sim-plc",
                "name": "Simulated PLC",
                "host": plc.host,
                "port": plc.port,
                "poll_interval_seconds": 0.5,
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
                ],
            }
        ],
        "sensors": [
            {
                "type": "simulated",
                "id": "sim-climate",
                "poll_interval_seconds": 1,
                "metrics": [{"name": "temperature", "unit": "degC", "mid": 21}],
            }
        ],
    }
    path = folder / "local.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_up_runs_the_local_connector(plc: ModbusSimulator, tmp_path: Path) -> None:
    plc.set_holding_registers(0, encode(42.5, "float32", "CDAB"))
    path = connector_file(tmp_path, plc)
    up = UpProcess(tmp_path / "data", tmp_path, args=("--connector", str(path))).start()
    try:
        base = up.url
        login = httpx.post(
            f"{base}/api/v1/auth/login",
            json={"username": "admin", "password": up.admin_password()},
            timeout=30,
        )
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}

        def device(device_id: str) -> dict[str, Any]:
            r = httpx.get(f"{base}/api/v1/devices/{device_id}", headers=auth, timeout=10)
            assert r.status_code == 200, r.text
            result: dict[str, Any] = r.json()
            return result

        # THEN the connector and its devices are registered, children of the connector,
        # and online by their heartbeats
        assert device(CONNECTOR)["kind"] == "connector"
        for device_id, kind in (("sim-plc", "plc"), ("sim-climate", "sensor")):
            found = device(device_id)
            assert (found["kind"], found["parent_id"]) == (kind, CONNECTOR)
        for device_id in (CONNECTOR, "sim-plc", "sim-climate"):
            wait_until(lambda d=device_id: connected(device(d)), 20, f"{device_id} online")
        assert device(CONNECTOR)["firmware_version"].startswith("aios-connector ")
        assert device("sim-plc")["health"]["poll_success_rate"] == 100.0
        # AND the PLC's register map is its reported configuration (commands by name)
        reported = wait_until(
            lambda: device("sim-plc")["reported_config"].get("registers"), 20, "register map"
        )
        siren = next(r for r in reported if r["name"] == "siren")
        assert (siren["table"], siren["address"], siren["writable"]) == ("coil", 0, True)

        # WHEN a command is sent to the PLC through the API
        sent = httpx.post(
            f"{base}/api/v1/devices/sim-plc/command",
            json={
                "name": "write_coil",
                "params": {"register": "siren", "value": True},
                "timeout_seconds": 30,
            },
            headers=auth,
            timeout=10,
        )
        assert sent.status_code in (200, 201, 202), sent.text
        request_id = sent.json()["request_id"]

        # THEN the coil is set on the PLC and the command succeeds with the value read back
        def outcome() -> dict[str, Any] | None:
            r = httpx.get(
                f"{base}/api/v1/devices/sim-plc/commands/{request_id}", headers=auth, timeout=10
            )
            assert r.status_code == 200, r.text
            data: dict[str, Any] = r.json()
            return data if data["status"] != "pending" else None

        command = wait_until(outcome, 20, "the command's outcome")
        assert command["status"] == "succeeded", command
        assert command["response"]["value"] == 1.0 and command["response"]["register"] == "siren"
        assert plc.read_coils(0, 1) == [True]

        # WHEN a sensor is added to the file
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        data["sensors"].append(
            {"type": "simulated", "id": "sim-vibration", "metrics": [{"name": "rms"}]}
        )
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")

        # THEN it is registered under the connector and comes online, without a restart
        def added() -> bool:
            r = httpx.get(f"{base}/api/v1/devices/sim-vibration", headers=auth, timeout=10)
            return r.status_code == 200 and r.json()["status"] == "online"

        wait_until(added, 20, "the added sensor online")
        assert device("sim-vibration")["parent_id"] == CONNECTOR
        assert device("sim-plc")["status"] == "online"

        # WHEN SIGTERM
        started = time.monotonic()
        assert up.proc is not None
        up.proc.send_signal(signal.SIGTERM)
        # THEN it exits 0 within seconds, the local connector stopped before the broker
        assert up.proc.wait(STOP_TIMEOUT) == 0, up.stderr()
        assert time.monotonic() - started < STOP_TIMEOUT
        logs = [json.loads(line) for line in up.stderr().splitlines() if line.strip()]
        messages = [entry["message"] for entry in logs]
        assert f"connector {CONNECTOR} stopped" in messages
        steps = [e["step"] for e in logs if e["message"] == "shutdown step done"]
        assert steps.index("local connector") < steps.index("broker")
    finally:
        up.cleanup()
