"""Status derivation: online / warning / offline from last seen and health, per kind."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fleet_support import T0, device

from aios.domain import DeviceKind, DeviceStatus
from aios.fleet.status import FleetThresholds, StatusThresholds, derive_status


def test_never_seen_device_is_offline_since_it_was_registered() -> None:
    """GIVEN a device never heard from WHEN derived THEN offline, 'never seen'."""
    d = device("c1", created_at=T0)
    info = derive_status(d, T0 + timedelta(hours=1))
    assert info.status is DeviceStatus.OFFLINE
    assert info.reasons == ["never seen"]
    assert info.since == T0


def test_connector_goes_online_warning_offline_and_back_as_time_passes() -> None:
    """GIVEN a connector seen at T0 WHEN the clock moves THEN 90 s → warning, 300 s → offline,
    and a new heartbeat brings it back online."""
    d = device("c1", last_seen=T0)
    assert derive_status(d, T0 + timedelta(seconds=89)).status is DeviceStatus.ONLINE
    warn = derive_status(d, T0 + timedelta(seconds=90))
    assert warn.status is DeviceStatus.WARNING
    assert warn.reasons == ["no message for 90 s (warning after 90 s)"]
    assert warn.since == T0 + timedelta(seconds=90)
    assert derive_status(d, T0 + timedelta(seconds=299)).status is DeviceStatus.WARNING
    off = derive_status(d, T0 + timedelta(seconds=300))
    assert off.status is DeviceStatus.OFFLINE
    assert off.since == T0 + timedelta(seconds=300)
    back = d.model_copy(update={"last_seen": T0 + timedelta(seconds=400)})
    assert derive_status(back, T0 + timedelta(seconds=401)).status is DeviceStatus.ONLINE


def test_polled_kinds_have_longer_silence_limits() -> None:
    """GIVEN a PLC and a connector both silent 120 s THEN the PLC is still online."""
    now = T0 + timedelta(seconds=120)
    plc = device("plc1", DeviceKind.PLC, last_seen=T0)
    conn = device("c1", last_seen=T0)
    assert derive_status(plc, now).status is DeviceStatus.ONLINE
    assert derive_status(conn, now).status is DeviceStatus.WARNING
    assert derive_status(plc, T0 + timedelta(seconds=600)).status is DeviceStatus.OFFLINE


@pytest.mark.parametrize(
    ("health", "reason"),
    [
        ({"cpu_percent": 95}, "cpu_percent 95 above 90"),
        ({"memory_percent": 90.5}, "memory_percent 90.5 above 90"),
        ({"disk_percent": 99}, "disk_percent 99 above 90"),
        ({"temperature_c": 82}, "temperature_c 82 above 80"),
        ({"queue_depth": 5000}, "queue_depth 5000 above 1000"),
    ],
)
def test_health_beyond_limits_is_a_warning(health: dict[str, float], reason: str) -> None:
    """GIVEN a fresh heartbeat with one metric beyond its limit THEN warning naming it."""
    info = derive_status(device("c1", last_seen=T0, health=health), T0)
    assert info.status is DeviceStatus.WARNING
    assert info.reasons == [reason]


def test_health_at_the_limit_is_online_and_non_numbers_are_ignored() -> None:
    """GIVEN metrics exactly at the limits, and a text metric THEN online."""
    health = {"cpu_percent": 90, "temperature_c": 80, "config_version": "x", "fps": True}
    assert (
        derive_status(device("c1", last_seen=T0, health=health), T0).status is DeviceStatus.ONLINE
    )


def test_camera_frame_rate_below_minimum_is_a_warning_only_for_cameras() -> None:
    """GIVEN fps 2 THEN a camera warns; a connector does not check fps."""
    cam = device("cam1", DeviceKind.CAMERA, last_seen=T0, health={"fps": 2})
    assert derive_status(cam, T0).reasons == ["fps 2 below 5"]
    conn = device("c1", last_seen=T0, health={"fps": 2})
    assert derive_status(conn, T0).status is DeviceStatus.ONLINE


def test_silence_and_health_reasons_add_up() -> None:
    """GIVEN a silent device whose last heartbeat was hot THEN both reasons."""
    d = device("c1", last_seen=T0, health={"cpu_percent": 99})
    info = derive_status(d, T0 + timedelta(seconds=100))
    assert info.status is DeviceStatus.WARNING
    assert len(info.reasons) == 2


def test_offline_ignores_stale_health_and_future_last_seen_counts_as_now() -> None:
    """GIVEN an offline device with hot health THEN only the silence reason; GIVEN a
    last_seen ahead of the clock THEN online."""
    d = device("c1", last_seen=T0, health={"cpu_percent": 99})
    assert len(derive_status(d, T0 + timedelta(hours=1)).reasons) == 1
    ahead = device("c2", last_seen=T0 + timedelta(minutes=5))
    assert derive_status(ahead, T0).status is DeviceStatus.ONLINE


def test_custom_thresholds_per_kind_and_direct() -> None:
    """GIVEN fleet thresholds overriding connectors THEN they apply; a StatusThresholds
    passed directly applies whatever the kind."""
    strict = StatusThresholds(
        warning_after_seconds=10, offline_after_seconds=20, max_cpu_percent=None
    )
    fleet = FleetThresholds(by_kind={DeviceKind.CONNECTOR: strict})
    d = device("c1", last_seen=T0, health={"cpu_percent": 99})
    assert derive_status(d, T0, fleet).status is DeviceStatus.ONLINE
    assert derive_status(d, T0 + timedelta(seconds=20), fleet).status is DeviceStatus.OFFLINE
    cam = device("cam", DeviceKind.CAMERA, last_seen=T0)
    assert derive_status(cam, T0 + timedelta(seconds=20), fleet).status is DeviceStatus.ONLINE
    assert derive_status(cam, T0 + timedelta(seconds=20), strict).status is DeviceStatus.OFFLINE


def test_thresholds_refuse_warning_after_offline() -> None:
    """GIVEN warning later than offline THEN construction fails, naming both."""
    with pytest.raises(ValueError, match="below offline_after_seconds"):
        StatusThresholds(warning_after_seconds=300, offline_after_seconds=90)


def test_a_plc_that_stops_answering_its_connector_is_a_warning() -> None:
    """GIVEN a PLC whose connector keeps reporting it (fresh heartbeats) WHEN fewer than 90 %
    of its polls are answered THEN warning with the rate; a camera has no such limit."""
    now = T0 + timedelta(seconds=5)
    failing = device("plc1", DeviceKind.PLC, last_seen=T0, health={"poll_success_rate": 4.0})
    info = derive_status(failing, now)
    assert info.status is DeviceStatus.WARNING
    assert info.reasons == ["poll_success_rate 4 below 90"]
    healthy = device("plc2", DeviceKind.PLC, last_seen=T0, health={"poll_success_rate": 90.0})
    assert derive_status(healthy, now).status is DeviceStatus.ONLINE
    sensor = device("s1", DeviceKind.SENSOR, last_seen=T0, health={"poll_success_rate": 50})
    assert derive_status(sensor, now).status is DeviceStatus.WARNING
    camera = device(
        "cam1", DeviceKind.CAMERA, last_seen=T0, health={"poll_success_rate": 0, "fps": 10}
    )
    assert derive_status(camera, now).status is DeviceStatus.ONLINE
