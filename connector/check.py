"""``aios-connector check``: try the platform and every configured device once.

Each row says what was tried, whether it answered and a short detail (a camera's
resolution, a PLC's values, why a device did not answer). Nothing is published to the
platform: the broker check connects and disconnects, with the client id
``{client_id}-check`` so that a running connector is not disconnected (a broker whose
policy only admits the connector's own client id refuses it: the row says so).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TextIO

from aios.vision.sources import redact_url
from connector.cameras import CameraWorker, camera_url
from connector.config import (
    CameraConfig,
    ConnectorConfig,
    ModbusDeviceConfig,
    SecretError,
    SimulatedSensorConfig,
    resolve_secret,
)
from connector.link import PlatformLink, mqtt_version_hint
from connector.plc import ModbusPoller, PollResult
from connector.queue import OutboundQueue
from connector.sensors import SimulatedSensor


@dataclass(frozen=True, slots=True)
class CheckRow:
    """One line of the table."""

    device: str
    kind: str
    target: str
    ok: bool
    detail: str


def _secret(ref: str | None, base: Path) -> str | None:
    return None if ref is None else resolve_secret(ref, base=base)


def check_platform(config: ConnectorConfig, *, base: Path, timeout: float) -> CheckRow:
    """Connect to the broker once (TLS and credentials as configured)."""
    platform = config.platform
    client_id = (platform.client_id or config.connector.id) + "-check"
    target = f"{platform.host}:{platform.port}"
    with tempfile.TemporaryDirectory(prefix="aios-connector-check-") as tmp:
        queue = OutboundQueue(Path(tmp) / "check.sqlite3")
        try:
            link = PlatformLink(
                platform.model_copy(update={"client_id": client_id}),
                config.connector.id,
                queue,
                secrets_base=base,
            )
        except (SecretError, ValueError) as err:  # the password, unreadable TLS files
            queue.close()
            return CheckRow(config.connector.id, "platform", target, False, str(err))
        started = time.monotonic()
        try:
            link.start()
            ok = link.wait_connected(timeout)
            elapsed = time.monotonic() - started
            error = link.stats().last_error
        finally:
            link.stop(flush_timeout=0)
            queue.close()
    if ok:
        return CheckRow(
            config.connector.id, "platform", target, True, f"MQTT connected in {elapsed:.2f} s"
        )
    return CheckRow(
        config.connector.id,
        "platform",
        target,
        False,
        f"not connected within {timeout:g} s"
        + (f": {error}" if error else f": no answer from the broker{mqtt_version_hint(platform)}"),
    )


def check_camera(camera: CameraConfig, *, base: Path, timeout: float) -> CheckRow:
    """Open the camera and wait for one frame."""
    try:
        password = _secret(camera.password, base)
    except SecretError as err:
        return CheckRow(camera.id, "camera", camera.host or "", False, str(err))
    target = redact_url(camera_url(camera, password))
    worker = CameraWorker(camera, password)
    worker.start()
    try:
        frame = worker.snapshot(timeout)
        health = worker.health()
    finally:
        worker.stop()
    if frame is None:
        reason = health.error or f"no frame within {timeout:g} s"
        return CheckRow(camera.id, "camera", target, False, reason)
    h, w = frame.image.shape[:2]
    return CheckRow(camera.id, "camera", target, True, f"{w}x{h} frame received")


VALUES_SHOWN = 6
"""Most values a PLC or sensor row shows (the summary counts them all)."""


def _detail(result: PollResult, names: list[str]) -> str:
    """The poll's summary, and when it answered the first values read (scaled, with units)
    in the order of ``names`` (the register map's): ``"2 values in 1 request:
    tank_level=61.25 %, siren=0"``."""
    text = result.summary()
    if not result.ok or not result.samples:
        return text
    rank = {name: i for i, name in enumerate(names)}
    samples = sorted(result.samples, key=lambda s: rank.get(s.metric, len(rank)))
    shown = [
        f"{s.metric}={s.value:g}" + (f" {s.unit}" if s.unit else "") for s in samples[:VALUES_SHOWN]
    ]
    more = ", …" if len(result.samples) > VALUES_SHOWN else ""
    return f"{text}: {', '.join(shown)}{more}"


def check_poller(device: ModbusDeviceConfig | SimulatedSensorConfig, kind: str) -> CheckRow:
    """Poll every register of the device once."""

    def ignore(*_args: object) -> None:
        return None

    if isinstance(device, SimulatedSensorConfig):
        sensor = SimulatedSensor(device, ignore, ignore)
        result = sensor.poll_once()
        names = [m.name for m in device.metrics]
        return CheckRow(device.id, kind, "simulated", result.ok, _detail(result, names))
    poller = ModbusPoller(device, ignore, ignore)
    try:
        result = poller.poll_once()
    finally:
        poller.stop()
    names = [r.name for r in device.registers]
    return CheckRow(device.id, kind, device.describe(), result.ok, _detail(result, names))


CHECK_WORKERS = 8
"""Devices tried at the same time: a site's dead cameras each wait their whole timeout."""


def run_checks(config: ConnectorConfig, *, base: Path, timeout: float = 10.0) -> list[CheckRow]:
    """Try the platform and every enabled device, several at once; return one row each,
    in the configuration's order."""
    checks: list[tuple[str, str, Callable[[], CheckRow]]] = [
        (
            config.connector.id,
            "platform",
            partial(check_platform, config, base=base, timeout=timeout),
        )
    ]
    for camera in config.cameras:
        if camera.enabled:
            checks.append(
                (camera.id, "camera", partial(check_camera, camera, base=base, timeout=timeout))
            )
    for plc in config.plcs:
        if plc.enabled:
            checks.append((plc.id, "plc", partial(check_poller, plc, "plc")))
    for sensor in config.sensors:
        if sensor.enabled:
            checks.append((sensor.id, "sensor", partial(check_poller, sensor, "sensor")))

    def attempt(device: str, kind: str, check: Callable[[], CheckRow]) -> CheckRow:
        try:
            return check()
        except Exception as err:  # a check that crashes is a failed row, not a traceback
            return CheckRow(device, kind, "", False, f"{type(err).__name__}: {err}")

    with ThreadPoolExecutor(max_workers=CHECK_WORKERS, thread_name_prefix="check") as pool:
        futures = [pool.submit(attempt, *item) for item in checks]
        return [f.result() for f in futures]


def print_table(rows: list[CheckRow], *, out: TextIO) -> None:
    """Write the rows as an aligned text table, then a one-line summary."""
    header = ("DEVICE", "KIND", "TARGET", "RESULT", "DETAIL")
    table = [header] + [
        (r.device, r.kind, r.target, "ok" if r.ok else "FAILED", r.detail) for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        cells = [row[i].ljust(widths[i]) for i in range(4)]
        out.write("  ".join([*cells, row[4]]).rstrip() + "\n")
    failed = sum(not r.ok for r in rows)
    out.write(
        f"\n{len(rows) - failed} of {len(rows)} answered"
        + (f"; {failed} did not (see DETAIL)\n" if failed else "\n")
    )
