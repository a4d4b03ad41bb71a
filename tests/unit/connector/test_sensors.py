"""Simulated sensors: sine wave plus bounded uniform noise, one telemetry call per poll."""

from __future__ import annotations

import math
import random
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from aios.messages import DeviceEventItem, TelemetrySample
from connector.config import SimulatedSensorConfig
from connector.sensors import SimulatedSensor


def sensor_config(**fields: Any) -> SimulatedSensorConfig:
    data: dict[str, Any] = {
        "type": "simulated",
        "id": "sim-1",
        "poll_interval_seconds": 0.05,
        "metrics": [
            {
                "name": "temperature_c",
                "unit": "°C",
                "mid": 20,
                "amplitude": 5,
                "period_seconds": 600,
                "noise": 0.2,
            },
            {"name": "humidity", "unit": "%", "mid": 50, "amplitude": 0, "noise": 0},
        ],
    }
    data.update(fields)
    return SimulatedSensorConfig.model_validate(data)


class Sink:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, list[TelemetrySample]]] = []
        self.events: list[DeviceEventItem] = []

    def telemetry(self, device_id: str, samples: list[TelemetrySample]) -> None:
        with self.lock:
            self.calls.append((device_id, samples))

    def event(self, device_id: str, event: DeviceEventItem) -> None:
        self.events.append(event)


@pytest.mark.parametrize("t", [0.0, 150.0, 300.0, 450.0, 1_767_225_600.0 + 37.0])
def test_reading_follows_the_sine_within_the_noise(t: float) -> None:
    """value = mid + amplitude·sin(2πt/period) ± noise, at the wall-clock time."""
    # GIVEN a sensor whose clock reads t
    sink = Sink()
    sensor = SimulatedSensor(
        sensor_config(), sink.telemetry, sink.event, rng=random.Random(1), wall_clock=lambda: t
    )
    # WHEN it polls
    result = sensor.poll_once()
    # THEN each value is the sine within the noise band, stamped with t
    expected = 20 + 5 * math.sin(2 * math.pi * t / 600)
    assert abs(result.values["temperature_c"] - expected) <= 0.2
    assert result.values["humidity"] == 50.0
    assert len(sink.calls) == 1
    device_id, samples = sink.calls[0]
    assert device_id == "sim-1"
    assert [s.metric for s in samples] == ["temperature_c", "humidity"]
    assert samples[0].unit == "°C"
    assert samples[0].time == datetime.fromtimestamp(t, UTC)


def test_noise_is_uniform_and_bounded() -> None:
    """Over many readings at one instant the noise spans ±noise and averages near zero."""
    sink = Sink()
    sensor = SimulatedSensor(
        sensor_config(), sink.telemetry, sink.event, rng=random.Random(7), wall_clock=lambda: 0.0
    )
    values = [sensor.poll_once().values["temperature_c"] for _ in range(2000)]
    assert min(values) >= 19.8 and max(values) <= 20.2
    assert min(values) < 19.82 and max(values) > 20.18
    assert abs(sum(values) / len(values) - 20.0) < 0.02


def test_runs_at_its_interval_and_reports_health() -> None:
    """Started, it emits about once per poll interval; health counts the polls."""
    sink = Sink()
    sensor = SimulatedSensor(sensor_config(), sink.telemetry, sink.event)
    assert sensor.health() == {"polls": 0, "poll_failures": 0}
    sensor.start()
    time.sleep(0.5)
    sensor.stop()
    n = len(sink.calls)
    assert 6 <= n <= 12  # 0.5 s at 0.05 s: about 10
    health = sensor.health()
    assert health["polls"] == n and health["poll_success_rate"] == 100.0
    assert 0 <= health["last_poll_age_seconds"] < 1
    time.sleep(0.1)
    assert len(sink.calls) == n  # stopped means stopped
    assert sink.events == []
