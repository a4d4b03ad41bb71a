"""Simulated sensors: readings that follow a sine wave with noise, for demonstrations.

Each metric of a :class:`connector.config.SimulatedSensorConfig` reads

    value(t) = mid + amplitude · sin(2π t / period_seconds) + U(−noise, +noise)

where ``t`` is the wall-clock time in seconds since the Unix epoch (so every connector
shows the same phase at the same moment) and ``U`` uniform noise. A
:class:`SimulatedSensor` has the same shape as :class:`connector.plc.ModbusPoller`
(``start``/``stop``/``poll_once``/``health``), so the daemon runs both alike.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from aios.messages import TelemetrySample
from connector.config import SimulatedMetric, SimulatedSensorConfig
from connector.plc import EventEmit, PollResult, TelemetryEmit

log = logging.getLogger(__name__)


def simulated_value(metric: SimulatedMetric, t: float, rng: random.Random) -> float:
    """Return ``metric``'s reading at ``t`` (seconds since the epoch); see the module doc."""
    wave = metric.amplitude * math.sin(2.0 * math.pi * t / metric.period_seconds)
    noise = rng.uniform(-metric.noise, metric.noise) if metric.noise else 0.0
    return metric.mid + wave + noise


class SimulatedSensor:
    """Produces one reading of every metric per ``poll_interval_seconds``.

    Args:
        device: the sensor's configuration.
        emit_telemetry: called with ``(device.id, samples)`` once per poll.
        emit_event: accepted for symmetry with :class:`connector.plc.ModbusPoller`; a
            simulated sensor reports no events.
        rng: the noise source (seed it for repeatable readings).
        wall_clock: seconds since the epoch (for tests).
    """

    def __init__(
        self,
        device: SimulatedSensorConfig,
        emit_telemetry: TelemetryEmit,
        emit_event: EventEmit,
        *,
        rng: random.Random | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.device = device
        self._emit_telemetry = emit_telemetry
        self._emit_event = emit_event
        self._rng = rng or random.Random()
        self._wall_clock = wall_clock
        self._polls = 0
        self._last: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start producing readings in a background thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"sensor-{self.device.id}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop and wait up to ``timeout`` s for the thread (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        interval = self.device.poll_interval_seconds
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # the emitter failed; keep producing
                log.exception("simulated sensor poll failed", extra={"device_id": self.device.id})
            next_at += interval
            now = time.monotonic()
            if next_at < now:
                next_at = now + interval
            self._stop.wait(next_at - now)

    def poll_once(self) -> PollResult:
        """Take one reading of every metric, emit them, and return them."""
        t = self._wall_clock()
        at = datetime.fromtimestamp(t, UTC)
        result = PollResult(self.device.id, at)
        for metric in self.device.metrics:
            value = simulated_value(metric, t, self._rng)
            result.values[metric.name] = value
            result.samples.append(
                TelemetrySample(metric=metric.name, value=value, unit=metric.unit, time=at)
            )
        with self._lock:
            self._polls += 1
            self._last = time.monotonic()
        self._emit_telemetry(self.device.id, list(result.samples))
        return result

    def health(self) -> dict[str, float | int]:
        """``polls``, ``poll_failures`` (0), ``poll_success_rate`` (100 once polled) and
        ``last_poll_age_seconds`` — the same keys as a Modbus poller's."""
        with self._lock:
            out: dict[str, float | int] = {"polls": self._polls, "poll_failures": 0}
            if self._last is not None:
                out["poll_success_rate"] = 100.0
                out["last_poll_age_seconds"] = round(time.monotonic() - self._last, 3)
            return out
