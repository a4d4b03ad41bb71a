"""A device's status — online, warning or offline — derived, never stored.

Status comes from two things the device reports: when it was last heard from
(``Device.last_seen``) and the health metrics of its last heartbeat (``Device.health``),
compared with explicit thresholds per device kind (:class:`StatusThresholds`):

- never heard from → **offline** (reason ``never seen``);
- silent for ``offline_after_seconds`` or more → **offline**;
- silent for ``warning_after_seconds`` or more → **warning**;
- otherwise any health metric beyond its limit (CPU, memory, disk, temperature, queue depth
  above; camera frame rate below) → **warning**, one reason per metric;
- otherwise → **online**.

Default thresholds and where they come from:

- *Silence.* Connectors and cameras send a heartbeat every 30 s; three missed heartbeats
  (90 s) is a warning — the common rule of IoT fleet monitoring, and above MQTT 3.1.1's own
  1.5 × keep-alive disconnect rule (§3.1.2.10) so a single lost packet never shows. Offline
  after 5 minutes (10 intervals): long enough to ride out a broker or connector restart.
  PLCs and sensors are reported by their connector once a minute (its polling cycle):
  warning after 3 minutes, offline after 10.
- *Resources.* CPU, memory and disk above 90 %: the "high utilization" triggers of Zabbix's
  *Linux by Zabbix agent* template (its disk trigger is "critical" at 90 %).
- *Temperature.* Above 80 °C: where a Raspberry Pi starts throttling its CPU (Raspberry Pi
  documentation, "Frequency management and thermal control"), the usual connector hardware.
- *Frame rate.* A camera processing fewer than 5 frames per second: trackers lose people
  walking across the frame and dwell times become coarse. A project choice: change it
  per site with :class:`FleetThresholds`.
- *Queue depth.* Above 1,000 items waiting: the connector is not keeping up.
- *Poll success rate* (PLCs and sensors, reported by their connector): below 90 % of the
  last requests answered. A connector keeps sending heartbeats for a PLC that stopped
  answering, so silence alone would never show it; one failure in ten is already a faulty
  link or device (a healthy Modbus link answers every request). A project choice.

Times are timezone-aware UTC. A ``last_seen`` in the future (clock skew) counts as now.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aios.domain import Device, DeviceKind, DeviceStatus


@dataclass(frozen=True)
class StatusThresholds:
    """Limits for one device kind. Seconds of silence; percentages 0–100; °C; frames/s.

    A limit set to ``None`` is not checked.

    Raises:
        ValueError: on construction, if ``warning_after_seconds`` is not below
            ``offline_after_seconds`` or an interval is not positive.
    """

    heartbeat_interval_seconds: float = 30.0
    warning_after_seconds: float = 90.0
    offline_after_seconds: float = 300.0
    max_cpu_percent: float | None = 90.0
    max_memory_percent: float | None = 90.0
    max_disk_percent: float | None = 90.0
    max_temperature_c: float | None = 80.0
    max_queue_depth: float | None = 1000.0
    min_fps: float | None = None
    min_poll_success_rate: float | None = None

    def __post_init__(self) -> None:
        if self.heartbeat_interval_seconds <= 0:
            raise ValueError("heartbeat_interval_seconds must be > 0")
        if not 0 < self.warning_after_seconds < self.offline_after_seconds:
            raise ValueError(
                "warning_after_seconds must be > 0 and below offline_after_seconds "
                f"(got {self.warning_after_seconds} and {self.offline_after_seconds})"
            )

    def limits(self) -> list[tuple[str, str, float]]:
        """The health checks: ``(metric, 'above' | 'below', limit)``."""
        checks: list[tuple[str, str, float | None]] = [
            ("cpu_percent", "above", self.max_cpu_percent),
            ("memory_percent", "above", self.max_memory_percent),
            ("disk_percent", "above", self.max_disk_percent),
            ("temperature_c", "above", self.max_temperature_c),
            ("queue_depth", "above", self.max_queue_depth),
            ("fps", "below", self.min_fps),
            ("poll_success_rate", "below", self.min_poll_success_rate),
        ]
        return [(m, d, lim) for m, d, lim in checks if lim is not None]


def _default_kinds() -> dict[DeviceKind, StatusThresholds]:
    polled = StatusThresholds(
        heartbeat_interval_seconds=60.0,
        warning_after_seconds=180.0,
        offline_after_seconds=600.0,
        min_poll_success_rate=90.0,
    )
    return {
        DeviceKind.CONNECTOR: StatusThresholds(),
        DeviceKind.CAMERA: StatusThresholds(min_fps=5.0),
        DeviceKind.PLC: polled,
        DeviceKind.SENSOR: polled,
    }


@dataclass(frozen=True)
class FleetThresholds:
    """Thresholds of every kind (defaults in the module doc); a kind missing from
    ``by_kind`` uses ``StatusThresholds()``."""

    by_kind: Mapping[DeviceKind, StatusThresholds] = field(default_factory=_default_kinds)

    def for_kind(self, kind: DeviceKind) -> StatusThresholds:
        """The thresholds of ``kind``."""
        return self.by_kind.get(kind) or StatusThresholds()


@dataclass(frozen=True)
class StatusInfo:
    """A derived status and why.

    ``since`` is when the status began, where the device record tells: for a silent
    device, ``last_seen`` plus the warning/offline delay; for one never seen, its
    ``created_at``; otherwise ``None`` — online or a health warning began at a message
    the record does not keep (``FleetService.status_since`` fills it in from the
    evaluator's recorded transitions).
    """

    status: DeviceStatus
    reasons: list[str]
    since: datetime | None = None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _fmt(value: float) -> str:
    return f"{value:g}"


def derive_status(
    device: Device,
    now: datetime,
    thresholds: StatusThresholds | FleetThresholds | None = None,
) -> StatusInfo:
    """Return the status of ``device`` at ``now`` (UTC) under ``thresholds``.

    ``thresholds`` may be one kind's (:class:`StatusThresholds`), the fleet's
    (:class:`FleetThresholds`, the device's kind is looked up) or ``None`` (the defaults).
    Pure: same inputs, same answer.
    """
    if thresholds is None:
        thresholds = FleetThresholds()
    limits = (
        thresholds.for_kind(device.kind) if isinstance(thresholds, FleetThresholds) else thresholds
    )
    if device.last_seen is None:
        return StatusInfo(DeviceStatus.OFFLINE, ["never seen"], since=device.created_at)
    silent = max((now - device.last_seen).total_seconds(), 0.0)
    if silent >= limits.offline_after_seconds:
        return StatusInfo(
            DeviceStatus.OFFLINE,
            [
                f"no message for {_fmt(round(silent))} s "
                f"(offline after {_fmt(limits.offline_after_seconds)} s)"
            ],
            since=device.last_seen + timedelta(seconds=limits.offline_after_seconds),
        )
    reasons: list[str] = []
    since: datetime | None = None
    if silent >= limits.warning_after_seconds:
        reasons.append(
            f"no message for {_fmt(round(silent))} s "
            f"(warning after {_fmt(limits.warning_after_seconds)} s)"
        )
        since = device.last_seen + timedelta(seconds=limits.warning_after_seconds)
    for metric, direction, limit in limits.limits():
        value = _number(device.health.get(metric))
        if value is None:
            continue
        if direction == "above" and value > limit:
            reasons.append(f"{metric} {_fmt(value)} above {_fmt(limit)}")
        elif direction == "below" and value < limit:
            reasons.append(f"{metric} {_fmt(value)} below {_fmt(limit)}")
    if reasons:
        return StatusInfo(DeviceStatus.WARNING, reasons, since=since)
    return StatusInfo(DeviceStatus.ONLINE, [])
