"""Host health for the heartbeat, and the connector's redacting JSON logs."""

from __future__ import annotations

import io
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from aios.messages import HealthMetrics
from connector.health import board_temperature, system_health
from connector.logs import configure_logging, redact_text

# --------------------------------------------------------------------------- health


class shwtemp(NamedTuple):  # noqa: N801 - psutil's name for a reading
    """A reading as ``psutil.sensors_temperatures()`` gives it (psutil's own type is private)."""

    label: str
    current: float
    high: float | None
    critical: float | None


def test_health_has_the_heartbeat_metrics_in_range(tmp_path: Path) -> None:
    health = system_health(tmp_path)
    assert {"cpu_percent", "memory_percent", "disk_percent", "uptime_seconds"} <= set(health)
    assert set(health) <= {*HealthMetrics.model_fields}
    assert all(isinstance(v, float) for v in health.values())
    # THEN it validates as the heartbeat's health (bounds included)
    metrics = HealthMetrics(**health)
    assert metrics.cpu_percent is not None and 0 <= metrics.cpu_percent <= 100


def test_disk_percent_is_of_the_filesystem_holding_the_data_dir(tmp_path: Path) -> None:
    # GIVEN a data folder that does not exist yet (the connector creates it later)
    data_dir = tmp_path / "not" / "yet"
    # WHEN measured THEN the filesystem of its nearest existing parent is used, as df counts
    measured = system_health(data_dir)["disk_percent"]
    st = os.statvfs(tmp_path)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    available = st.f_bavail * st.f_frsize
    assert measured == pytest.approx(100 * used / (used + available), abs=1.0)


def test_memory_percent_agrees_with_the_kernel() -> None:
    meminfo = dict(
        (line.split(":")[0], int(line.split()[1]))
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.split(":")[0] in ("MemTotal", "MemAvailable")
    )
    expected = 100 * (meminfo["MemTotal"] - meminfo["MemAvailable"]) / meminfo["MemTotal"]
    assert system_health(Path("/"))["memory_percent"] == pytest.approx(expected, abs=5.0)


def test_uptime_is_of_this_process_and_advances() -> None:
    first = system_health(Path("/"))["uptime_seconds"]
    time.sleep(0.3)
    second = system_health(Path("/"))["uptime_seconds"]
    assert 0.2 <= second - first <= 1.5
    host_uptime = float(Path("/proc/uptime").read_text().split()[0])
    assert 0 < first <= host_uptime


def test_cpu_percent_sees_a_busy_core() -> None:
    # GIVEN a reading to start the interval from
    system_health(Path("/"))
    # WHEN this process keeps one core busy for 0.5 s
    ends = time.monotonic() + 0.5
    while time.monotonic() < ends:
        pass
    # THEN the system-wide figure shows at least part of one core of all cores in use
    cores = os.cpu_count() or 1
    busy = system_health(Path("/"))["cpu_percent"]
    assert busy >= 50 / cores


def test_board_temperature_prefers_the_soc_package() -> None:
    readings = {
        "nvme": [shwtemp("Composite", 48.0, 80.0, 85.0)],
        "coretemp": [
            shwtemp("Core 0", 51.0, 100.0, 100.0),
            shwtemp("Package id 0", 55.5, 100.0, 100.0),
            shwtemp("Core 1", 58.0, 100.0, 100.0),
        ],
        "acpitz": [shwtemp("", 27.8, None, None)],
    }
    assert board_temperature(readings) == 55.5


def test_board_temperature_raspberry_pi_and_amd() -> None:
    assert board_temperature({"cpu_thermal": [shwtemp("", 61.3, None, None)]}) == 61.3
    amd = {"k10temp": [shwtemp("Tctl", 70.1, None, None), shwtemp("Tccd1", 66.0, None, None)]}
    assert board_temperature(amd) == 70.1
    # an unknown chip name with "thermal" in it: its hottest reading
    zones = {"rockchip_thermal": [shwtemp("", 40.0, None, None), shwtemp("", 44.0, None, None)]}
    assert board_temperature(zones) == 44.0


def test_board_temperature_ignores_drives_and_impossible_readings() -> None:
    assert board_temperature({}) is None
    assert board_temperature({"nvme": [shwtemp("Composite", 40.0, None, None)]}) is None
    assert board_temperature({"cpu_thermal": [shwtemp("", 1000.0, None, None)]}) is None
    assert board_temperature({"cpu_thermal": [shwtemp("", float("nan"), None, None)]}) is None


# --------------------------------------------------------------------------- logs

PEM_KEY = (
    "-----BEGIN EC PRIVATE KEY-----\n"
    "MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oGZ9Ab0Xbh3EoAoGCCqGSM49\n"
    "AwEHoUQDQgAE7bhx0YlUb4dC0VHbR9jRrrP6sAT1r9uDThhv3ZxpOkgKDA==\n"
    "-----END EC PRIVATE KEY-----\n"
)


LogLines = Callable[[], list[dict[str, object]]]


@pytest.fixture
def log_lines() -> Iterator[LogLines]:
    """Configure the connector's logging to a buffer; yield a reader of its JSON lines."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    buffer = io.StringIO()
    configure_logging("debug", stream=buffer)

    def read() -> list[dict[str, object]]:
        return [json.loads(line) for line in buffer.getvalue().splitlines()]

    yield read
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])


def test_logs_are_json_lines_with_fields(log_lines: LogLines) -> None:
    logging.getLogger("connector.test").info("camera %s up", "cam1", extra={"device_id": "cam1"})
    (entry,) = log_lines()
    assert entry["level"] == "INFO" and entry["logger"] == "connector.test"
    assert entry["message"] == "camera cam1 up" and entry["device_id"] == "cam1"


def test_logs_redact_keys_tokens_and_url_passwords(log_lines: LogLines) -> None:
    log = logging.getLogger("connector.test")
    log.warning("loaded %s", PEM_KEY, extra={"detail": {"pem": "x " + PEM_KEY}})
    log.info("opening rtsp://admin:Hunter2@10.0.0.2/stream1")
    log.info("upload", extra={"headers": {"Authorization": "Bearer abc.def"}, "note": "Bearer t0k"})
    log.info("broker", extra={"password": "S3cret"})
    try:
        raise ValueError("bad key " + PEM_KEY[:80])  # a key cut short, inside a traceback
    except ValueError:
        log.exception("failed")
    text = "\n".join(json.dumps(e) for e in log_lines())
    for secret in (
        "MHcCAQEEIBkg4LVWM9nu",
        "AwEHoUQDQgAE7bhx0",
        "Hunter2",
        "abc.def",
        "t0k",
        "S3cret",
    ):
        assert secret not in text, secret
    entries = log_lines()
    assert entries[0]["message"] == "loaded -----BEGIN EC PRIVATE KEY-----[redacted]\n"
    assert entries[1]["message"] == "opening rtsp://admin:[redacted]@10.0.0.2/stream1"
    assert entries[2]["note"] == "Bearer [redacted]"
    assert "ValueError: bad key -----BEGIN EC PRIVATE KEY-----[redacted]" in str(
        entries[4]["exception"]
    )


def test_redact_text_leaves_certificates_and_ordinary_text() -> None:
    certificate = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    assert redact_text(certificate) == certificate
    assert redact_text("queue depth 12 on plc-line1") == "queue depth 12 on plc-line1"


def test_log_level_names_are_checked() -> None:
    with pytest.raises(ValueError, match="log level 'loud'"):
        configure_logging("loud", stream=io.StringIO())
