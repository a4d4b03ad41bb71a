"""Shipped connector files: the example configurations and the deployment definitions
(systemd unit, container image) under infra/connector."""

from __future__ import annotations

import configparser
import json
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from aios.paths import assets_dir
from aios.plc.client import ModbusClient, ModbusConnection
from aios.plc.simulator import start_simulator
from connector.config import ConnectorConfig, load_config, parse_config

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples" / "connector"
INFRA = ROOT / "infra" / "connector"
UNIT = INFRA / "aios-connector.service"
CONTAINERFILE = INFRA / "Containerfile"


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A home folder of the test's own, without AIOS_HOME (the default asset folder)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("AIOS_HOME", raising=False)
    return tmp_path


# --------------------------------------------------------------------------- examples


@pytest.mark.parametrize("name", ["connector.yaml", "local.yaml"])
def test_examples_parse_without_their_secrets(
    name: str, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    # GIVEN none of the env: secrets the examples reference
    for var in ("AIOS_CONNECTOR_API_TOKEN", "CAM_GATE_PASSWORD", "CAM_OFFICE_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    path = EXAMPLES / name
    # WHEN read from the file and from its text THEN both validate, identically
    from_file = load_config(path)
    from_text = parse_config(path.read_text(encoding="utf-8"), name=name, base=EXAMPLES)
    assert from_file == from_text
    assert isinstance(from_file, ConnectorConfig)


def test_site_example_covers_every_section(home: Path) -> None:
    config = load_config(EXAMPLES / "connector.yaml")
    # AWS IoT Core over mTLS
    platform = config.platform
    assert platform.mqtt_url.startswith("mqtts://") and "-ats.iot." in platform.host
    assert platform.port == 8883
    assert platform.tls is not None
    assert platform.tls.cert_file is not None and platform.tls.key_file is not None
    assert config.data_dir == Path("/var/lib/aios-connector")  # the service's StateDirectory
    # cameras of every vendor, both streams, a raw URL; credentials only by reference
    cameras = config.cameras
    vendors = {c.vendor for c in cameras}
    assert {"hikvision", "dahua", "amcrest", "axis", "reolink", "uniview", "generic"} <= vendors
    assert {c.stream for c in cameras if c.host} == {"main", "sub"}
    assert any(c.url and c.url.startswith("rtsp://") for c in cameras)
    assert all(c.password is None or c.password.startswith(("env:", "file:")) for c in cameras)
    # PLCs over TCP and RTU; Modicon references; every data type and word order
    transports = {p.transport for p in config.plcs}
    assert transports == {"tcp", "rtu"}
    registers = [r for p in config.plcs for r in p.registers]
    assert any(isinstance(r.address, str) and r.address.startswith("4") for r in registers)
    assert {r.data_type for r in registers} == {
        "bool",
        "int16",
        "uint16",
        "int32",
        "uint32",
        "float32",
    }
    assert {r.order for r in registers if r.data_type == "float32"} == {
        "ABCD",
        "CDAB",
        "BADC",
        "DCBA",
    }
    assert {r.table for r in registers} == {
        "coil",
        "discrete_input",
        "holding_register",
        "input_register",
    }
    # a Modbus sensor and a simulated one
    assert {s.type for s in config.sensors} == {"modbus", "simulated"}


def test_local_example_targets_aios_up_and_the_demo_assets(home: Path) -> None:
    config = load_config(EXAMPLES / "local.yaml")
    assert config.platform.mqtt_url == "mqtt://127.0.0.1:1883"
    assert config.platform.tls is None and config.platform.password is None
    assert config.data_dir == home / ".cache" / "aios" / "connector"  # not in the repository
    # the camera is the demo video where `aios assets fetch` puts it
    (camera,) = config.cameras
    assert camera.is_file
    assert camera.url == (assets_dir() / "vtest.avi").as_uri()
    assert (home / ".cache" / "aios" / "assets" / "vtest.avi").as_uri() == camera.url
    # the simulated PLC of `aios sim plc`, two simulated sensors
    (plc,) = config.plcs
    assert (plc.transport, plc.host, plc.port, plc.unit_id) == ("tcp", "127.0.0.1", 5020, 1)
    assert [s.type for s in config.sensors] == ["simulated", "simulated"]


def test_local_example_register_map_exists_on_the_simulated_plc(home: Path) -> None:
    # GIVEN the local example's PLC and a simulator as `aios sim plc` starts it (on a free port)
    (plc,) = load_config(EXAMPLES / "local.yaml").plcs
    assert {r.table for r in plc.registers} == {"coil", "holding_register"}
    with start_simulator(host="127.0.0.1", port=0) as sim:
        connection = ModbusConnection(host=sim.host, port=sim.port, unit_id=plc.unit_id)
        with ModbusClient(connection, timeout_seconds=3.0) as client:
            # WHEN every mapped value is read THEN the device answers (no ILLEGAL ADDRESS)
            for reg in plc.registers:
                if reg.table == "coil":
                    values: list[bool] | list[int] = client.read_coils(reg.pdu_address, reg.count)
                else:
                    values = client.read_holding_registers(reg.pdu_address, reg.count)
                assert len(values) == reg.count, reg.name
    # and the siren is coil 0, the one the intrusion pipeline pulses
    pipeline = json.loads((ROOT / "examples/pipelines/intrusion.json").read_text("utf-8"))
    siren = next(n for n in pipeline["nodes"] if n["id"] == "siren")["config"]["writes"][0]
    mapped = next(r for r in plc.registers if r.name == "siren")
    assert (mapped.table, mapped.pdu_address) == (siren["table"], siren["address"])


# --------------------------------------------------------------------------- systemd unit


def _unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser


def test_unit_runs_hardened_as_its_own_user() -> None:
    service = _unit()["Service"]
    assert service["Type"] == "simple"
    assert service["Restart"] == "on-failure"
    assert service["RestartSec"]
    assert service["User"] not in ("", "root", "0")
    assert service["StateDirectory"] == "aios-connector"
    assert service["ConfigurationDirectory"] == "aios"
    assert service["EnvironmentFile"] == "-/etc/aios/connector.env"
    assert service["KillSignal"] == "SIGTERM"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "ReadWritePaths": "/var/lib/aios-connector",
        "SupplementaryGroups": "dialout",
    }.items():
        assert service[key] == value, key
    # no option that closes the device list (serial ports must stay reachable)
    assert "DeviceAllow" not in service and service.get("PrivateDevices", "no") == "no"
    assert "ProtectClock" not in service


def test_unit_gives_the_queue_flush_time_to_finish() -> None:
    service = _unit()["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[:2] == ["/usr/bin/env", "aios-connector"]
    assert argv[argv.index("--config") + 1] == "/etc/aios/connector.yaml"
    flush = float(argv[argv.index("--flush-timeout") + 1])
    stop = float(service["TimeoutStopSec"].removesuffix("s"))
    assert stop >= flush + 15  # devices stop first, then the flush runs


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # systemd-analyze reports problems (unknown keys, bad values) on stderr, exit code 0
    unit = tmp_path / UNIT.name
    shutil.copyfile(UNIT, unit)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = [line for line in (done.stdout + done.stderr).splitlines() if unit.name in line]
    assert done.returncode == 0 and problems == [], done.stdout + done.stderr


# --------------------------------------------------------------------------- Containerfile


def _instructions(text: str) -> list[tuple[str, str]]:
    """The Containerfile's instructions as (KEYWORD, arguments), continuation lines joined
    and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), " ".join(args.split())))
    assert not pending, "the Containerfile ends inside a continued instruction"
    return out


def test_containerfile_structure() -> None:
    steps = _instructions(CONTAINERFILE.read_text(encoding="utf-8"))
    froms = [args for keyword, args in steps if keyword == "FROM"]
    assert froms and all(f.split()[0] == "python:3.11-slim-bookworm" for f in froms)
    final = steps[max(i for i, (k, _) in enumerate(steps) if k == "FROM") :]
    final_keywords = [k for k, _ in final]
    # the image runs as a user that is not root
    users = [args for keyword, args in final if keyword == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    assert final_keywords.index("USER") < final_keywords.index("ENTRYPOINT")
    # installed from the lock with uv: the connector and vision extras, no dev tools
    syncs = [args for keyword, args in steps if keyword == "RUN" and "uv sync" in args]
    assert syncs
    for args in syncs:
        assert "--frozen" in args and "--no-dev" in args
        assert "--extra connector" in args and "--extra vision" in args
        assert "--extra dev" not in args and "--all-extras" not in args
    copied = [args for keyword, args in steps if keyword == "COPY" and "--from" not in args]
    assert any("uv.lock" in args for args in copied)
    # state volume, configuration folder, entry point
    volumes = [args for keyword, args in final if keyword == "VOLUME"]
    assert any("/var/lib/aios-connector" in v for v in volumes)
    assert json.loads(dict(final)["ENTRYPOINT"]) == ["aios-connector"]
    assert json.loads(dict(final)["CMD"]) == ["--config", "/etc/aios/connector.yaml"]


def test_containerfile_matches_the_project() -> None:
    # the extras, the script and the files it copies exist in this repository
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert {"connector", "vision"} <= set(project["optional-dependencies"])
    assert project["scripts"]["aios-connector"] == "connector.cli:main"
    steps = _instructions(CONTAINERFILE.read_text(encoding="utf-8"))
    for keyword, args in steps:
        if keyword == "COPY" and "--from" not in args:
            *sources, _dest = args.split()
            for source in sources:
                assert (ROOT / source).exists(), source
