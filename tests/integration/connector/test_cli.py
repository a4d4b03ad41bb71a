"""``aios-connector`` as a real process: configuration errors, ``check`` against real
devices and Mosquitto (mTLS), the daemon's reload on SIGHUP and its stop on SIGTERM.

A camera password is given by ``env:`` reference; it must appear in no output.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from mosquitto import MosquittoBroker, Receiver, free_port, wait_until

from aios.plc.modbus import encode
from aios.plc.simulator import ModbusSimulator
from connector.queue import OutboundQueue

GW = "gw-cli"
SECRET = "Pa55:w@rd/secret"
"""The camera password (reserved characters: it is percent-encoded in the RTSP URL)."""
SECRET_FORMS = (SECRET, "Pa55%3Aw%40rd%2Fsecret", "Pa55")
RUN_TIMEOUT = 60.0
STOP_BOUND = 15.0
"""Longest a SIGTERM'd daemon may take to exit (devices stop, queue flushes ≤ 5 s)."""


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("AIOS_")}
    out |= {"CAM_GATE_PASSWORD": SECRET, "PYTHONUNBUFFERED": "1"}
    return out


def cli(*args: str, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector.cli", *args],
        check=False,
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def platform(broker: MosquittoBroker) -> dict[str, Any]:
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
    }


def plc_section(device_id: str, port: int) -> dict[str, Any]:
    return {
        "id": device_id,
        "host": "127.0.0.1",
        "port": port,
        "timeout_seconds": 0.5,
        "poll_interval_seconds": 0.2,
        "registers": [
            {"name": "tank_level", "address": 40001, "data_type": "float32", "order": "CDAB"},
            {"name": "siren", "table": "coil", "address": 0, "data_type": "bool"},
        ],
    }


def down_camera() -> dict[str, Any]:
    """A Hikvision camera on a loopback port nothing listens on, password by reference."""
    return {
        "id": "cam-gate",
        "vendor": "hikvision",
        "host": "127.0.0.1",
        "port": free_port(),
        "username": "admin",
        "password": "env:CAM_GATE_PASSWORD",
        "open_timeout_seconds": 2,
        "read_timeout_seconds": 2,
        "reconnect_max_seconds": 2,
    }


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for form in SECRET_FORMS:
            assert form not in text, f"the camera password ({form!r}) leaked:\n{text}"


def rows(stdout: str) -> dict[str, tuple[str, str, str]]:
    """``check``'s table: device → (kind, result, detail)."""
    lines = stdout.splitlines()
    header = lines[0]
    assert header.split() == ["DEVICE", "KIND", "TARGET", "RESULT", "DETAIL"], stdout
    kind, result, detail = (header.index(c) for c in ("KIND", "RESULT", "DETAIL"))
    out: dict[str, tuple[str, str, str]] = {}
    for line in lines[1:]:
        if not line.strip():
            break
        out[line[:kind].strip()] = (
            line[kind:].split()[0],
            line[result:detail].strip(),
            line[detail:].strip(),
        )
    return out


def test_an_invalid_configuration_exits_2_with_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(
        "connector:\n"
        "  id: gw-cli\n"
        "plcs:\n"
        "  - id: plc-1\n"
        "    host: 127.0.0.1\n"
        "    registers:\n"
        "      - name: level\n"
        "        address: 40001\n"
        "        data_type: float64\n"
        "cameras:\n"
        "  - id: cam-1\n"
        "    host: 10.0.0.2\n"
        "    username: admin\n"
        f"    password: {SECRET}\n",
        encoding="utf-8",
    )
    for args in (("--config", str(path)), ("check", "--config", str(path))):
        result = cli(*args)
        assert result.returncode == 2, result
        # the file (by name), the line, the field path and the message
        problems = result.stderr.splitlines()
        assert problems[0] == "site.yaml: 2 problem(s)", result.stderr
        assert re.fullmatch(
            r"site\.yaml:9: plcs\[0\]\.registers\[0\]\.data_type: .*'float32'.*", problems[1]
        ), result.stderr
        assert re.fullmatch(r"site\.yaml:14: cameras\[0\]\.password: .*env:.*", problems[2])
        assert len(problems) == 3
        assert result.stdout == ""
        assert_no_secret(result.stdout, result.stderr)


def test_an_unreadable_tls_file_or_secret_exits_2_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    config: dict[str, Any] = {
        "connector": {"id": GW},
        "platform": {
            "mqtt_url": f"mqtts://127.0.0.1:{free_port()}",
            "tls": {"ca_file": "absent-ca.pem", "cert_file": "c.pem", "key_file": "k.pem"},
        },
        "data_dir": str(tmp_path / "data"),
        "cameras": [down_camera() | {"password": "env:CAM_NOT_SET"}],
    }
    result = cli("--config", str(write(path, config)))
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert f"{path}: cannot load platform.tls.ca_file {tmp_path / 'absent-ca.pem'}" in (
        result.stderr
    )
    # a camera password whose variable is not set
    config["platform"] = {"mqtt_url": f"mqtt://127.0.0.1:{free_port()}"}
    result = cli("--config", str(write(path, config)))
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert (
        f"{path}: cameras[0].password (camera cam-gate): environment variable CAM_NOT_SET "
        "is not set" in result.stderr
    )


def test_check_prints_a_row_per_device_and_exits_1_when_one_fails(
    mosquitto: MosquittoBroker, plc: ModbusSimulator, video: Path, tmp_path: Path
) -> None:
    plc.set_holding_registers(0, encode(61.25, "float32", "CDAB"))
    config = {
        "connector": {"id": GW},
        "platform": platform(mosquitto),
        "data_dir": str(tmp_path / "data"),
        "cameras": [down_camera(), {"id": "cam-file", "url": str(video)}],
        "plcs": [plc_section("plc-up", plc.port), plc_section("plc-down", free_port())],
        "sensors": [{"type": "simulated", "id": "climate", "metrics": [{"name": "rh"}]}],
    }
    path = write(tmp_path / "site.yaml", config)
    started = time.monotonic()
    result = cli("check", "--config", str(path), "--timeout", "3")
    elapsed = time.monotonic() - started
    table = rows(result.stdout)
    assert result.returncode == 1, result
    assert table[GW][:2] == ("platform", "ok") and "MQTT connected" in table[GW][2]
    assert table["plc-up"] == ("plc", "ok", "2 values in 2 requests: tank_level=61.25, siren=0")
    assert table["plc-down"][:2] == ("plc", "FAILED")
    assert table["cam-file"][:2] == ("camera", "ok") and "768x576" in table["cam-file"][2]
    kind, outcome, detail = table["cam-gate"]
    assert (kind, outcome) == ("camera", "FAILED"), detail
    assert "Connection refused" in detail or "no frame" in detail, detail
    cam_line = next(line for line in result.stdout.splitlines() if line.startswith("cam-gate"))
    assert "rtsp://admin:***@127.0.0.1:" in cam_line, cam_line
    assert table["climate"][:2] == ("sensor", "ok")
    assert list(table) == [GW, "cam-gate", "cam-file", "plc-up", "plc-down", "climate"]
    assert "4 of 6 answered; 2 did not" in result.stdout
    assert elapsed < 30
    assert_no_secret(result.stdout, result.stderr)
    # nothing was published: check leaves no queue behind
    assert not (tmp_path / "data" / "outbox.sqlite3").exists()

    # WHEN the failing devices are removed
    config["cameras"] = config["cameras"][1:]
    config["plcs"] = config["plcs"][:1]
    result = cli("check", "--config", str(write(path, config)), "--timeout", "3")
    # THEN every row is ok and the exit status 0
    assert result.returncode == 0, result
    assert {r[1] for r in rows(result.stdout).values()} == {"ok"}
    assert "4 of 4 answered" in result.stdout


def test_the_daemon_reloads_on_sighup_and_flushes_on_sigterm(
    mosquitto: MosquittoBroker, plc: ModbusSimulator, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    config = {
        "connector": {"id": GW},
        "platform": platform(mosquitto),
        "data_dir": str(data_dir),
        "heartbeat_seconds": 1,
        "cameras": [down_camera()],
        "plcs": [plc_section("plc-up", plc.port)],
    }
    path = write(tmp_path / "site.yaml", config)
    receiver = Receiver(mosquitto, [f"dt/aios/{GW}/#"])
    stderr = tmp_path / "stderr.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "connector.cli",
            "--config",
            str(path),
            "--no-watch",
            "--flush-timeout",
            "5",
        ],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=stderr.open("w"),
        text=True,
    )

    def devices(kind: str) -> set[str | None]:
        return {d.get("device_id") for t, d in list(receiver.messages) if t.endswith(kind)}

    try:
        # GIVEN the daemon running: its devices report through the broker
        wait_until(lambda: "plc-up" in devices("/telemetry"), 30, "PLC telemetry")
        wait_until(lambda: {None, "cam-gate"} <= devices("/heartbeat"), 10, "heartbeats")

        # WHEN a sensor is added to the file and SIGHUP sent
        config["sensors"] = [
            {
                "type": "simulated",
                "id": "climate",
                "poll_interval_seconds": 0.5,
                "metrics": [{"name": "rh"}],
            }
        ]
        write(path, config)
        process.send_signal(signal.SIGHUP)
        # THEN its readings arrive, while the rest keeps running
        wait_until(lambda: "climate" in devices("/telemetry"), 15, "the new sensor's telemetry")
        assert process.poll() is None

        # WHEN SIGTERM
        sent = datetime.now(UTC)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(STOP_BOUND)
        # THEN it exits 0 within the bound, its queue flushed: the last heartbeats (sent
        # while stopping) reached the broker
        assert code == 0, stderr.read_text()
        assert time.monotonic() - started < STOP_BOUND
        with OutboundQueue(data_dir / "outbox.sqlite3") as queue:
            assert queue.depth() == 0
        last = [
            d
            for t, d in list(receiver.messages)
            if t.endswith("/heartbeat") and datetime.fromisoformat(d["time"]) >= sent
        ]
        assert {d.get("device_id") for d in last} >= {None, "plc-up", "climate", "cam-gate"}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        receiver.close()
    assert process.stdout is not None
    out = process.stdout.read()
    logs = [json.loads(line) for line in stderr.read_text().splitlines() if line.strip()]
    messages = [entry["message"] for entry in logs]
    assert any(m.startswith("configuration applied: started ['climate']") for m in messages)
    assert messages[-1] == f"connector {GW} stopped"
    # AND the down camera was logged (redacted), never its password
    assert any("rtsp://admin:[redacted]@127.0.0.1:" in m for m in messages)
    assert_no_secret(out, stderr.read_text())
