"""The host's health for the connector's heartbeat: CPU, memory, disk, uptime, temperature.

Read with psutil. The values are bounded to the ranges of :class:`aios.messages.HealthMetrics`
(percentages 0..100, temperature -100..200 °C, uptime ≥ 0), so a heartbeat built from them
always validates.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

# Thermal sensors that give the SoC / CPU package temperature, best first (psutil's names of
# the Linux hwmon and thermal-zone drivers): Raspberry Pi and most ARM boards, Intel, AMD,
# other ARM SoCs, then the ACPI zone that most x86 boards expose.
_BOARD_SENSORS = ("cpu_thermal", "coretemp", "k10temp", "zenpower", "soc_thermal", "acpitz")
# Within a chip, the reading that stands for the whole package.
_PACKAGE_LABELS = ("package id 0", "tctl", "tdie", "cpu", "soc")

_cpu_lock = threading.Lock()
_cpu_primed = False


def _percent(value: float) -> float | None:
    """``value`` clamped to 0..100 and rounded to 0.1 (None when not a number)."""
    if not math.isfinite(value):
        return None
    return round(min(100.0, max(0.0, value)), 1)


def _cpu_percent() -> float:
    """System-wide CPU use, %, since the previous call (the first call measures 0.1 s)."""
    global _cpu_primed  # noqa: PLW0603 - one sampler per process, as psutil keeps one
    with _cpu_lock:
        if not _cpu_primed:
            _cpu_primed = True
            return float(psutil.cpu_percent(interval=0.1))
        return float(psutil.cpu_percent(interval=None))


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent (the data folder may not exist yet)."""
    path = path.expanduser().absolute()
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or "/")


def board_temperature(readings: Mapping[str, Sequence[Any]]) -> float | None:
    """Pick the SoC / CPU package temperature, °C, from ``psutil.sensors_temperatures()``.

    ``readings`` maps a chip name to its readings (each with ``label`` and ``current``).
    The first chip of a known board sensor (``cpu_thermal``, ``coretemp``, ``k10temp``,
    ``zenpower``, ``soc_thermal``, ``acpitz``) is used, else any chip whose name holds
    ``cpu``, ``soc`` or ``thermal``; within it the package reading (``Package id 0``,
    ``Tctl``…) or else the hottest. Drive and battery sensors (``nvme``, ``drivetemp``,
    ``BAT0``) are not the board's. Returns None when there is no such sensor or its reading
    lies outside -100..200 °C (a disconnected sensor).
    """
    chips = [name for name in _BOARD_SENSORS if readings.get(name)]
    chips += [
        name
        for name in readings
        if name not in chips
        and readings[name]
        and any(word in name.lower() for word in ("cpu", "soc", "thermal"))
    ]
    if not chips:
        return None
    entries = list(readings[chips[0]])
    current: float | None = None
    for wanted in _PACKAGE_LABELS:
        for entry in entries:
            if str(entry.label).strip().lower() == wanted:
                current = float(entry.current)
                break
        if current is not None:
            break
    if current is None:
        values = [float(e.current) for e in entries if math.isfinite(float(e.current))]
        current = max(values) if values else None
    if current is None or not math.isfinite(current) or not -100.0 <= current <= 200.0:
        return None
    return round(current, 1)


def system_health(data_dir: Path) -> dict[str, float]:
    """Measure the host for a heartbeat.

    Args:
        data_dir: the connector's data folder; ``disk_percent`` is of the filesystem that
            holds it (of its nearest existing parent if it does not exist yet).

    Returns:
        ``cpu_percent`` (all cores, % since the previous call; the first call samples
        0.1 s), ``memory_percent`` ((total − available) / total, %), ``disk_percent``
        (used / (used + free for unprivileged users), %, as ``df``), ``uptime_seconds``
        (since this process started) and, when the board exposes one,
        ``temperature_c`` (see :func:`board_temperature`). Keys and ranges are those of
        :class:`aios.messages.HealthMetrics`; a value that cannot be read is left out.
    """
    out: dict[str, float] = {}
    readings: dict[str, float | None] = {
        "cpu_percent": _percent(_cpu_percent()),
        "memory_percent": _percent(float(psutil.virtual_memory().percent)),
    }
    try:
        readings["disk_percent"] = _percent(
            float(psutil.disk_usage(str(_existing(data_dir))).percent)
        )
    except OSError:
        readings["disk_percent"] = None
    try:
        started = psutil.Process().create_time()
        readings["uptime_seconds"] = round(max(0.0, time.time() - started), 1)
    except psutil.Error:
        readings["uptime_seconds"] = None
    sensors = getattr(psutil, "sensors_temperatures", None)  # not on every platform
    if sensors is not None:
        try:
            readings["temperature_c"] = board_temperature(sensors())
        except (OSError, RuntimeError):
            readings["temperature_c"] = None
    for key, value in readings.items():
        if value is not None:
            out[key] = value
    return out
