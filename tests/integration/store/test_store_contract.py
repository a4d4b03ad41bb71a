"""The contract every store adapter keeps (:mod:`aios.store.port`), written against the port
only: each test runs once per adapter of ``conftest.STORE_FACTORIES``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest

from aios.domain import (
    Alert,
    AlertRule,
    AlertRuleKind,
    AlertState,
    AuditEntry,
    Command,
    CommandStatus,
    Device,
    DeviceEvent,
    DeviceKind,
    EventRecord,
    GeoPoint,
    PipelineRecord,
    RefreshToken,
    Role,
    Run,
    RunStatus,
    TelemetryPoint,
    User,
)
from aios.store.port import (
    BoundingBox,
    Conflict,
    DeviceQuery,
    EventQuery,
    NotFound,
    Page,
    Store,
)

T = TypeVar("T")

T0 = datetime(2026, 3, 1, 8, 0, 0, 250, tzinfo=UTC)
"""A base time with microseconds, so that rounding to milliseconds or seconds shows."""


def at(seconds: float) -> datetime:
    """``T0`` plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


def walk(fetch: Callable[[str | None], Page[T]], *, max_pages: int = 100) -> list[list[T]]:
    """Every page of a list, following cursors from the first page."""
    pages: list[list[T]] = []
    cursor: str | None = None
    for _ in range(max_pages):
        page = fetch(cursor)
        pages.append(page.items)
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor
    raise AssertionError("the cursor never ended")


def flat(pages: list[list[T]]) -> list[T]:
    return [item for page in pages for item in page]


def device(device_id: str, **fields: Any) -> Device:
    defaults: dict[str, Any] = {"name": f"Device {device_id}", "kind": DeviceKind.CAMERA}
    defaults.update(fields)
    return Device(id=device_id, created_at=T0, updated_at=T0, **defaults)


def user(username: str, **fields: Any) -> User:
    return User(
        username=username,
        password_hash="$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
        created_at=T0,
        updated_at=T0,
        **fields,
    )


def token(user_id: str, family_id: str, token_hash: str) -> RefreshToken:
    return RefreshToken(
        user_id=user_id,
        family_id=family_id,
        token_hash=token_hash,
        issued_at=T0,
        expires_at=at(86400),
    )


# --------------------------------------------------------------------------- devices


def test_device_round_trips_every_field(store: Store) -> None:
    # GIVEN a device with every field set
    original = device(
        "plc-7",
        name="Press line PLC",
        kind=DeviceKind.PLC,
        site="plant-a",
        tags=["line-1", "press"],
        location=GeoPoint(lat=45.5, lon=-73.25),
        parent_id="gw-1",
        firmware_version="2.1.0",
        desired_config={"poll_ms": 250, "registers": [1, 2]},
        desired_version=3,
        reported_config={"poll_ms": 500},
        reported_version=2,
        last_seen=at(1.5),
        health={"cpu": 0.25, "temp_c": 41.0},
        pending=True,
    )
    # WHEN it is created and read back
    created = store.devices.create(original)
    read = store.devices.get("plc-7")
    # THEN both equal the original
    assert created == original
    assert read == original
    assert store.devices.get("absent") is None


def test_device_create_of_existing_id_conflicts_and_keeps_the_first(store: Store) -> None:
    store.devices.create(device("cam-1", name="First"))
    with pytest.raises(Conflict):
        store.devices.create(device("cam-1", name="Second"))
    stored = store.devices.get("cam-1")
    assert stored is not None and stored.name == "First"


def test_device_update_bumps_version_and_refuses_a_stale_one(store: Store) -> None:
    # GIVEN a stored device at version 1
    store.devices.create(device("cam-1", tags=["old"]))
    first = store.devices.get("cam-1")
    assert first is not None and first.version == 1
    # WHEN it is updated from version 1
    edited = first.model_copy(update={"name": "Renamed", "tags": ["new"], "updated_at": at(10)})
    updated = store.devices.update(edited, expected_version=1)
    # THEN the stored device is version 2 with the new fields and updated_at as given
    assert updated.version == 2
    assert updated.updated_at == at(10)
    assert store.devices.get("cam-1") == updated
    # AND a second writer that read version 1 is refused without changing anything
    stale = first.model_copy(update={"name": "Lost update"})
    with pytest.raises(Conflict):
        store.devices.update(stale, expected_version=1)
    assert store.devices.get("cam-1") == updated
    # AND the tag filter follows the update
    assert [d.id for d in store.devices.list(DeviceQuery(tag="new")).items] == ["cam-1"]
    assert store.devices.list(DeviceQuery(tag="old")).items == []


def test_device_update_of_absent_device_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.devices.update(device("ghost"), expected_version=1)


def test_device_touch_keeps_the_newest_heartbeat(store: Store) -> None:
    # GIVEN a device never seen
    store.devices.create(device("sensor-1", kind=DeviceKind.SENSOR, health={}))
    # WHEN a heartbeat arrives
    touched = store.devices.touch(
        "sensor-1", at(100), health={"battery": 0.9}, firmware_version="1.0"
    )
    # THEN last_seen, health and firmware are the heartbeat's, and the version moved on
    assert touched.last_seen == at(100)
    assert touched.health == {"battery": 0.9}
    assert touched.firmware_version == "1.0"
    assert touched.version == 2
    # WHEN a late heartbeat (older) arrives after it
    late = store.devices.touch("sensor-1", at(50), health={"battery": 0.1}, firmware_version="0.9")
    # THEN nothing rolls back, but the version still moves on
    assert late.last_seen == at(100)
    assert late.health == {"battery": 0.9}
    assert late.firmware_version == "1.0"
    assert late.version == 3
    # WHEN a newer heartbeat without health arrives
    newer = store.devices.touch("sensor-1", at(200))
    # THEN last_seen moves, health stays
    assert newer.last_seen == at(200)
    assert newer.health == {"battery": 0.9}
    assert store.devices.get("sensor-1") == newer


def test_device_touch_of_absent_device_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.devices.touch("ghost", at(0))


def test_device_touches_from_many_threads_lose_none(store: Store) -> None:
    # GIVEN a device, and threads that each send heartbeats with increasing times
    store.devices.create(device("cam-1"))
    threads_count, per_thread = 4, 10
    errors: list[BaseException] = []

    def beat(thread_index: int) -> None:
        try:
            for i in range(per_thread):
                seconds = i * threads_count + thread_index
                store.devices.touch("cam-1", at(seconds), health={"seq": seconds})
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=beat, args=(t,)) for t in range(threads_count)]
    # WHEN they all run at once
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # THEN every touch counted, and last_seen/health are the newest heartbeat's
    assert errors == []
    stored = store.devices.get("cam-1")
    assert stored is not None
    newest = threads_count * per_thread - 1
    assert stored.version == 1 + threads_count * per_thread
    assert stored.last_seen == at(newest)
    assert stored.health == {"seq": newest}


def test_concurrent_updates_from_one_version_let_exactly_one_win(store: Store) -> None:
    store.devices.create(device("cam-1"))
    base = store.devices.get("cam-1")
    assert base is not None
    outcomes: list[str] = []
    lock = threading.Lock()

    def edit(index: int) -> None:
        try:
            store.devices.update(base.model_copy(update={"name": f"n{index}"}), 1)
            result = "won"
        except Conflict:
            result = "conflict"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=edit, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["conflict"] * 5 + ["won"]
    stored = store.devices.get("cam-1")
    assert stored is not None and stored.version == 2


def test_device_delete_keeps_its_history(store: Store) -> None:
    store.devices.create(device("cam-1"))
    store.device_events.append(DeviceEvent(device_id="cam-1", time=at(1), type="status.online"))
    store.telemetry.append([TelemetryPoint(device_id="cam-1", metric="fps", time=at(1), value=25)])
    assert store.devices.delete("cam-1") is True
    assert store.devices.get("cam-1") is None
    assert store.devices.delete("cam-1") is False
    assert len(store.device_events.list("cam-1").items) == 1
    assert len(store.telemetry.query("cam-1").items) == 1
    # AND the id can be registered again
    store.devices.create(device("cam-1"))


@pytest.fixture
def fleet(store: Store) -> Store:
    """Ten devices across kinds, sites, tags, parents and positions."""
    store.devices.create(device("gw-1", name="Gateway North", kind=DeviceKind.CONNECTOR))
    store.devices.create(device("gw-2", name="Gateway South", kind=DeviceKind.CONNECTOR))
    store.devices.create(
        device(
            "cam-entrance",
            name="Entrance Camera",
            site="hq",
            tags=["outdoor", "entry"],
            parent_id="gw-1",
            location=GeoPoint(lat=10.0, lon=20.0),
        )
    )
    store.devices.create(
        device(
            "cam-lobby",
            name="Lobby camera",
            site="hq",
            tags=["indoor"],
            parent_id="gw-1",
            location=GeoPoint(lat=10.5, lon=20.5),
        )
    )
    store.devices.create(
        device(
            "cam-dock",
            name="Loading dock",
            site="warehouse",
            tags=["outdoor"],
            parent_id="gw-2",
            location=GeoPoint(lat=11.0, lon=21.0),
        )
    )
    store.devices.create(
        device(
            "plc-press",
            name="Press PLC",
            kind=DeviceKind.PLC,
            site="warehouse",
            parent_id="gw-2",
            location=GeoPoint(lat=9.999, lon=20.0),
        )
    )
    store.devices.create(
        device(
            "sensor-temp",
            name="Freezer temperature",
            kind=DeviceKind.SENSOR,
            site="warehouse",
            tags=["indoor", "cold"],
            location=GeoPoint(lat=11.0, lon=21.001),
        )
    )
    store.devices.create(device("sensor-new", kind=DeviceKind.SENSOR, pending=True))
    store.devices.create(device("CAM-upper", name="Roof", tags=["outdoor"]))
    store.devices.create(device("zz-last", name="Spare Élan", kind=DeviceKind.SENSOR))
    return store


def ids(page: Page[Device]) -> list[str]:
    return [d.id for d in page.items]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (DeviceQuery(), None),
        (
            DeviceQuery(search="CAMERA"),
            ["cam-entrance", "cam-lobby"],
        ),
        (DeviceQuery(search="cam-"), ["CAM-upper", "cam-dock", "cam-entrance", "cam-lobby"]),
        (DeviceQuery(search="élan"), ["zz-last"]),
        (DeviceQuery(kind=DeviceKind.CONNECTOR), ["gw-1", "gw-2"]),
        (DeviceQuery(site="warehouse"), ["cam-dock", "plc-press", "sensor-temp"]),
        (DeviceQuery(tag="outdoor"), ["CAM-upper", "cam-dock", "cam-entrance"]),
        (DeviceQuery(tag="indoor", site="warehouse"), ["sensor-temp"]),
        (DeviceQuery(parent_id="gw-1"), ["cam-entrance", "cam-lobby"]),
        (
            DeviceQuery(box=BoundingBox(min_lat=10.0, min_lon=20.0, max_lat=11.0, max_lon=21.0)),
            ["cam-dock", "cam-entrance", "cam-lobby"],
        ),
        (
            DeviceQuery(box=BoundingBox(min_lat=10.0, min_lon=20.0, max_lat=10.0, max_lon=20.0)),
            ["cam-entrance"],
        ),
        (DeviceQuery(pending=True), ["sensor-new"]),
        (DeviceQuery(kind=DeviceKind.SENSOR, pending=False), ["sensor-temp", "zz-last"]),
        (DeviceQuery(search="nothing-matches"), []),
    ],
)
def test_device_list_filters(fleet: Store, query: DeviceQuery, expected: list[str] | None) -> None:
    # GIVEN the fleet WHEN listed with a query THEN exactly the matching devices, by id
    listed = ids(fleet.devices.list(query, limit=1000))
    if expected is None:
        expected = sorted(
            [
                "gw-1",
                "gw-2",
                "cam-entrance",
                "cam-lobby",
                "cam-dock",
                "plc-press",
                "sensor-temp",
                "sensor-new",
                "CAM-upper",
                "zz-last",
            ]
        )
    assert listed == expected


def test_device_pages_walk_every_device_once(fleet: Store) -> None:
    pages = walk(lambda cursor: fleet.devices.list(limit=3, cursor=cursor))
    assert [len(p) for p in pages] == [3, 3, 3, 1]
    walked = [d.id for d in flat(pages)]
    assert walked == sorted(walked)
    assert len(walked) == len(set(walked)) == 10


def test_device_walk_resumes_after_inserts(fleet: Store) -> None:
    first = fleet.devices.list(limit=3)
    assert first.next_cursor is not None
    fleet.devices.create(device("AAA-before"))
    fleet.devices.create(device("sensor-later"))
    cursor: str | None = first.next_cursor
    seen = ids(first)
    while cursor is not None:
        page = fleet.devices.list(limit=3, cursor=cursor)
        seen += ids(page)
        cursor = page.next_cursor
    assert len(seen) == len(set(seen))
    assert "sensor-later" in seen
    assert "AAA-before" not in seen
    assert len(seen) == 11


def test_device_list_with_filter_pages(fleet: Store) -> None:
    pages = walk(
        lambda cursor: fleet.devices.list(DeviceQuery(site="warehouse"), limit=2, cursor=cursor)
    )
    assert [[d.id for d in p] for p in pages] == [["cam-dock", "plc-press"], ["sensor-temp"]]


@pytest.mark.parametrize("cursor", ["", "not-a-cursor", "!!!", "eyJ4IjoxfQ"])
def test_invalid_cursor_is_a_value_error(store: Store, cursor: str) -> None:
    with pytest.raises(ValueError, match="cursor"):
        store.devices.list(cursor=cursor)


def test_cursor_of_another_list_is_a_value_error(store: Store) -> None:
    for i in range(3):
        store.pipelines.create(PipelineRecord(id=f"pl-{i}", name=f"P{i}"), {"nodes": []})
    cursor = store.pipelines.list(limit=1).next_cursor
    assert cursor is not None
    with pytest.raises(ValueError, match="cursor"):
        store.audit.list(cursor=cursor)


@pytest.mark.parametrize("limit", [0, -1, 1001])
def test_limit_out_of_range_is_a_value_error(store: Store, limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        store.devices.list(limit=limit)
    with pytest.raises(ValueError, match="limit"):
        store.events.list(limit=limit)


# --------------------------------------------------------------------------- device events


def test_device_events_newest_first_with_range_and_pages(store: Store) -> None:
    # GIVEN events of two devices, one stored twice
    for i in range(7):
        store.device_events.append(
            DeviceEvent(id=f"e{i}", device_id="cam-1", time=at(i), type="status.online")
        )
    store.device_events.append(
        DeviceEvent(id="e3", device_id="cam-1", time=at(3), type="duplicate", message="again")
    )
    store.device_events.append(DeviceEvent(id="x", device_id="cam-2", time=at(3), type="other"))
    # WHEN listed
    all_events = store.device_events.list("cam-1").items
    # THEN newest first, the duplicate kept once (the first), other devices excluded
    assert [e.id for e in all_events] == ["e6", "e5", "e4", "e3", "e2", "e1", "e0"]
    assert all_events[3].type == "status.online"
    # AND since is inclusive, until exclusive
    ranged = store.device_events.list("cam-1", since=at(2), until=at(5)).items
    assert [e.id for e in ranged] == ["e4", "e3", "e2"]
    # AND pages walk all of them once
    pages = walk(lambda c: store.device_events.list("cam-1", limit=3, cursor=c))
    assert [e.id for e in flat(pages)] == [e.id for e in all_events]
    assert store.device_events.list("nobody").items == []


def test_device_events_with_equal_times_page_without_loss(store: Store) -> None:
    for i in range(5):
        store.device_events.append(DeviceEvent(id=f"e{i}", device_id="cam-1", time=at(0), type="t"))
    pages = walk(lambda c: store.device_events.list("cam-1", limit=2, cursor=c))
    assert [e.id for e in flat(pages)] == ["e4", "e3", "e2", "e1", "e0"]


# --------------------------------------------------------------------------- telemetry


def test_telemetry_append_query_replace_and_latest(store: Store) -> None:
    # GIVEN samples of two metrics, given out of order, and a sample of another device
    points = [
        TelemetryPoint(device_id="s1", metric="temp", time=at(i), value=20 + i, unit="Cel")
        for i in (3, 0, 2, 1)
    ] + [TelemetryPoint(device_id="s1", metric="hum", time=at(i), value=50 + i) for i in (1, 2)]
    store.telemetry.append(points)
    store.telemetry.append([TelemetryPoint(device_id="s2", metric="temp", time=at(9), value=99)])
    store.telemetry.append([])
    # WHEN queried THEN oldest first, by time then metric
    got = store.telemetry.query("s1").items
    assert [(p.time, p.metric) for p in got] == [
        (at(0), "temp"),
        (at(1), "hum"),
        (at(1), "temp"),
        (at(2), "hum"),
        (at(2), "temp"),
        (at(3), "temp"),
    ]
    assert got[0] == TelemetryPoint(device_id="s1", metric="temp", time=at(0), value=20, unit="Cel")
    # AND a metric filter and a since/until range (since inclusive, until exclusive)
    ranged = store.telemetry.query("s1", metric="temp", since=at(1), until=at(3)).items
    assert [p.value for p in ranged] == [21, 22]
    # WHEN a sample of the same (device, metric, time) is appended again THEN it replaces
    store.telemetry.append([TelemetryPoint(device_id="s1", metric="temp", time=at(2), value=-5)])
    temps = store.telemetry.query("s1", metric="temp").items
    assert [p.value for p in temps] == [20, 21, -5, 23]
    # AND latest gives the newest sample of each metric
    latest = store.telemetry.latest("s1")
    assert set(latest) == {"temp", "hum"}
    assert latest["temp"].time == at(3) and latest["temp"].value == 23
    assert latest["hum"].time == at(2) and latest["hum"].value == 52
    assert store.telemetry.latest("nobody") == {}


def test_telemetry_pages(store: Store) -> None:
    store.telemetry.append(
        [
            TelemetryPoint(device_id="plc", metric=m, time=at(i), value=i)
            for i in range(4)
            for m in ("a", "b")
        ]
    )
    pages = walk(lambda c: store.telemetry.query("plc", limit=3, cursor=c))
    assert [len(p) for p in pages] == [3, 3, 2]
    assert [(p.time, p.metric) for p in flat(pages)] == [
        (at(i), m) for i in range(4) for m in ("a", "b")
    ]


def test_telemetry_prune_drops_older_samples_from_query_and_latest(store: Store) -> None:
    # GIVEN two devices: s1 with "temp" at 0..5 s and "hum" only at 0..1 s; s2 at 0..3 s
    store.telemetry.append(
        [TelemetryPoint(device_id="s1", metric="temp", time=at(i), value=i) for i in range(6)]
        + [TelemetryPoint(device_id="s1", metric="hum", time=at(i), value=50) for i in (0, 1)]
        + [TelemetryPoint(device_id="s2", metric="temp", time=at(i), value=i) for i in range(4)]
    )
    # WHEN samples older than 2 s are pruned
    deleted = store.telemetry.prune(at(2))
    # THEN it reports the 6 it deleted, or 0 where deletion is deferred (DynamoDB's TTL)
    assert deleted in (6, 0)
    # AND no query returns an older sample, whatever its since; the one at 2 s is kept
    assert [p.time for p in store.telemetry.query("s1").items] == [at(i) for i in range(2, 6)]
    assert [p.time for p in store.telemetry.query("s1", since=at(-60)).items] == [
        at(i) for i in range(2, 6)
    ]
    assert [p.value for p in store.telemetry.query("s2", metric="temp").items] == [2, 3]
    assert store.telemetry.query("s1", metric="hum").items == []
    assert store.telemetry.query("s1", until=at(2)).items == []
    # AND pages still walk what is left
    pages = walk(lambda c: store.telemetry.query("s1", since=at(0), limit=3, cursor=c))
    assert [p.time for p in flat(pages)] == [at(i) for i in range(2, 6)]
    # AND latest leaves out the metric whose samples were all older, keeps the other's newest
    assert set(store.telemetry.latest("s1")) == {"temp"}
    assert store.telemetry.latest("s1")["temp"].time == at(5)
    assert store.telemetry.latest("s2")["temp"].value == 3


def test_telemetry_prune_again_or_earlier_deletes_nothing_more(store: Store) -> None:
    store.telemetry.append(
        [TelemetryPoint(device_id="s1", metric="t", time=at(i), value=i) for i in range(4)]
    )
    assert store.telemetry.prune(at(-10)) == 0  # nothing that old
    assert len(store.telemetry.query("s1").items) == 4
    store.telemetry.prune(at(2))
    # WHEN pruned again at the same time, then at an earlier one
    assert store.telemetry.prune(at(2)) == 0
    assert store.telemetry.prune(at(1)) == 0
    # THEN what the first prune dropped stays dropped, the rest stays
    assert [p.value for p in store.telemetry.query("s1").items] == [2, 3]
    # AND newer samples appended afterwards are stored and returned as ever
    store.telemetry.append([TelemetryPoint(device_id="s1", metric="t", time=at(9), value=9)])
    assert [p.value for p in store.telemetry.query("s1").items] == [2, 3, 9]
    assert store.telemetry.latest("s1")["t"].value == 9


def test_telemetry_prune_of_every_sample_empties_query_and_latest(store: Store) -> None:
    assert store.telemetry.prune(at(0)) == 0  # an empty store
    store.telemetry.append(
        [
            TelemetryPoint(device_id="s1", metric=m, time=at(i), value=i)
            for i in range(3)
            for m in "ab"
        ]
    )
    assert store.telemetry.prune(at(100)) in (6, 0)
    assert store.telemetry.query("s1").items == []
    assert store.telemetry.latest("s1") == {}


def test_telemetry_prune_refuses_a_naive_time(store: Store) -> None:
    with pytest.raises(ValueError, match="before"):
        store.telemetry.prune(datetime(2026, 3, 1, 8, 0))


# --------------------------------------------------------------------------- commands


def command(request_id: str, device_id: str, requested: float, deadline: float) -> Command:
    return Command(
        request_id=request_id,
        device_id=device_id,
        name="write_coil",
        params={"address": 3, "value": True},
        requested_by="usr_1",
        requested_at=at(requested),
        deadline=at(deadline),
    )


def test_command_completes_once(store: Store) -> None:
    # GIVEN a pending command
    created = store.commands.create(command("req-1", "plc-1", 0, 30))
    assert store.commands.get("req-1") == created
    with pytest.raises(Conflict):
        store.commands.create(command("req-1", "plc-1", 1, 31))
    # WHEN it times out
    timed_out = store.commands.complete(
        "req-1", CommandStatus.TIMED_OUT, at=at(30), error="no response in 30 s"
    )
    assert timed_out.status is CommandStatus.TIMED_OUT
    assert timed_out.responded_at == at(30)
    assert timed_out.error == "no response in 30 s"
    # THEN a late response is refused and the timeout stays recorded
    with pytest.raises(Conflict):
        store.commands.complete("req-1", CommandStatus.SUCCEEDED, at=at(31), response={"ok": True})
    assert store.commands.get("req-1") == timed_out
    with pytest.raises(NotFound):
        store.commands.complete("ghost", CommandStatus.SUCCEEDED, at=at(1))
    assert store.commands.get("ghost") is None


def test_command_success_records_response(store: Store) -> None:
    store.commands.create(command("req-1", "plc-1", 0, 30))
    done = store.commands.complete(
        "req-1", CommandStatus.SUCCEEDED, at=at(2), response={"value": True}
    )
    assert done.response == {"value": True}
    assert store.commands.get("req-1") == done


def test_commands_list_newest_first_and_pending_by_deadline(store: Store) -> None:
    store.commands.create(command("r1", "plc-1", 0, 50))
    store.commands.create(command("r2", "plc-1", 1, 20))
    store.commands.create(command("r3", "plc-1", 2, 40))
    store.commands.create(command("r4", "plc-2", 3, 10))
    store.commands.create(command("r5", "plc-1", 4, 5))
    store.commands.complete("r5", CommandStatus.FAILED, at=at(4.5), error="coil out of range")
    pages = walk(lambda c: store.commands.list("plc-1", limit=2, cursor=c))
    assert [c.request_id for c in flat(pages)] == ["r5", "r3", "r2", "r1"]
    assert [c.request_id for c in store.commands.list_pending()] == ["r4", "r2", "r3", "r1"]
    assert [c.request_id for c in store.commands.list_pending(limit=2)] == ["r4", "r2"]


# --------------------------------------------------------------------------- pipelines


def test_pipeline_revisions(store: Store) -> None:
    # GIVEN a new pipeline
    record = PipelineRecord(id="pl-1", name="Dock", created_by="usr_1", created_at=T0)
    created = store.pipelines.create(record, {"nodes": [], "v": 1})
    assert created.latest_revision == 1
    assert store.pipelines.get("pl-1") == created
    first = store.pipelines.get_revision("pl-1", 1)
    assert first is not None
    assert first.document == {"nodes": [], "v": 1}
    assert first.created_by == "usr_1"
    with pytest.raises(Conflict):
        store.pipelines.create(record, {"nodes": []})
    # WHEN a revision is added from revision 1
    second = store.pipelines.add_revision(
        "pl-1",
        {"nodes": [], "v": 2},
        expected_revision=1,
        name="Dock v2",
        created_by="usr_2",
        at=at(60),
    )
    # THEN it is revision 2, the record's latest, with the new name and time
    assert second.latest_revision == 2
    assert second.name == "Dock v2"
    assert second.description == ""
    assert second.updated_at == at(60)
    assert store.pipelines.get("pl-1") == second
    revision = store.pipelines.get_revision("pl-1", 2)
    assert revision is not None
    assert (revision.document, revision.created_by, revision.created_at) == (
        {"nodes": [], "v": 2},
        "usr_2",
        at(60),
    )
    # AND a second editor who started from revision 1 is refused, storing nothing
    with pytest.raises(Conflict):
        store.pipelines.add_revision("pl-1", {"v": "lost"}, expected_revision=1, at=at(61))
    assert store.pipelines.get_revision("pl-1", 3) is None
    assert store.pipelines.get("pl-1") == second
    with pytest.raises(NotFound):
        store.pipelines.add_revision("ghost", {}, expected_revision=1, at=at(61))
    # AND revisions list newest first, in pages
    store.pipelines.add_revision(
        "pl-1", {"v": 3}, expected_revision=2, description="third", at=at(70)
    )
    pages = walk(lambda c: store.pipelines.list_revisions("pl-1", limit=2, cursor=c))
    assert [r.revision for r in flat(pages)] == [3, 2, 1]
    third = store.pipelines.get("pl-1")
    assert third is not None and (third.name, third.description) == ("Dock v2", "third")


def test_pipeline_delete_removes_revisions(store: Store) -> None:
    store.pipelines.create(PipelineRecord(id="pl-1", name="A"), {"v": 1})
    store.pipelines.add_revision("pl-1", {"v": 2}, expected_revision=1, at=at(1))
    store.runs.create(Run(id="run-1", pipeline_id="pl-1", revision=2, started_at=at(2)))
    assert store.pipelines.delete("pl-1") is True
    assert store.pipelines.get("pl-1") is None
    assert store.pipelines.get_revision("pl-1", 1) is None
    assert store.pipelines.list_revisions("pl-1").items == []
    assert store.pipelines.delete("pl-1") is False
    assert store.runs.get("run-1") is not None
    # AND the id can be used again, starting from revision 1
    again = store.pipelines.create(PipelineRecord(id="pl-1", name="B"), {"v": "new"})
    assert again.latest_revision == 1
    assert [r.revision for r in store.pipelines.list_revisions("pl-1").items] == [1]


def test_pipeline_list_search_and_pages(store: Store) -> None:
    for pid, name in [("pl-a", "Dock watch"), ("pl-b", "Lobby"), ("pl-c", "DOCKS 2"), ("x", "y")]:
        store.pipelines.create(PipelineRecord(id=pid, name=name), {})
    assert [p.id for p in store.pipelines.list(search="dock").items] == ["pl-a", "pl-c"]
    assert [p.id for p in store.pipelines.list(search="PL-").items] == ["pl-a", "pl-b", "pl-c"]
    pages = walk(lambda c: store.pipelines.list(limit=3, cursor=c))
    assert [[p.id for p in page] for page in pages] == [["pl-a", "pl-b", "pl-c"], ["x"]]


# --------------------------------------------------------------------------- runs


def test_runs_create_update_list(store: Store) -> None:
    # GIVEN runs of two pipelines
    for i in range(5):
        store.runs.create(Run(id=f"run-{i}", pipeline_id="pl-1", revision=1, started_at=at(i * 10)))
    store.runs.create(
        Run(id="run-x", pipeline_id="pl-2", revision=3, status=RunStatus.RUNNING, started_at=at(1))
    )
    with pytest.raises(Conflict):
        store.runs.create(Run(id="run-0", pipeline_id="pl-1", revision=1))
    # WHEN runs progress
    run0 = store.runs.get("run-0")
    assert run0 is not None
    stopped = store.runs.update(
        run0.model_copy(
            update={"status": RunStatus.STOPPED, "stopped_at": at(5), "counters": {"frames": 9}}
        ),
        expected_version=1,
    )
    assert stopped.version == 2
    assert store.runs.get("run-0") == stopped
    with pytest.raises(Conflict):
        store.runs.update(run0, expected_version=1)
    with pytest.raises(NotFound):
        store.runs.update(Run(id="ghost", pipeline_id="pl-1", revision=1), expected_version=1)
    run3 = store.runs.get("run-3")
    assert run3 is not None
    store.runs.update(run3.model_copy(update={"status": RunStatus.FAILED, "error": "x"}), 1)
    run4 = store.runs.get("run-4")
    assert run4 is not None
    store.runs.update(run4.model_copy(update={"status": RunStatus.STOPPING}), 1)
    # THEN lists are newest first per pipeline; active runs are those not finished
    pages = walk(lambda c: store.runs.list("pl-1", limit=2, cursor=c))
    assert [r.id for r in flat(pages)] == ["run-4", "run-3", "run-2", "run-1", "run-0"]
    assert [r.id for r in store.runs.list("pl-2").items] == ["run-x"]
    assert sorted(r.id for r in store.runs.list_active()) == ["run-1", "run-2", "run-4", "run-x"]


# --------------------------------------------------------------------------- events


def event(event_id: str, seconds: float, **fields: Any) -> EventRecord:
    values: dict[str, Any] = {
        "pipeline_id": "pl-1",
        "run_id": "run-1",
        "node_id": "zone1",
        "source_id": "cam-1",
        "type": "zone.entered",
        "time": at(seconds),
    }
    values.update(fields)
    return EventRecord(id=event_id, **values)


def test_event_put_is_idempotent(store: Store) -> None:
    first = event("ev-1", 1, data={"track_id": 4})
    assert store.events.put(first) is True
    assert store.events.put(event("ev-1", 2, data={"track_id": 5})) is False
    assert store.events.get("ev-1") == first
    assert store.events.get("absent") is None
    assert len(store.events.list().items) == 1


def test_event_list_filters_order_and_pages(store: Store) -> None:
    store.events.put(event("a", 1))
    store.events.put(event("b", 2, type="zone.left"))
    store.events.put(event("c", 3, run_id="run-2"))
    store.events.put(event("d", 4, pipeline_id="pl-2", run_id="run-3", source_id="cam-2"))
    store.events.put(event("e", 5, source_id="cam-2"))
    store.events.put(event("f", 5))
    store.events.put(event("g", 6, run_id=None, source_id=None))

    def listed(query: EventQuery) -> list[str]:
        return [e.id for e in store.events.list(query).items]

    assert listed(EventQuery()) == ["g", "f", "e", "d", "c", "b", "a"]
    assert listed(EventQuery(pipeline_id="pl-1")) == ["g", "f", "e", "c", "b", "a"]
    assert listed(EventQuery(run_id="run-1")) == ["f", "e", "b", "a"]
    assert listed(EventQuery(type="zone.left")) == ["b"]
    assert listed(EventQuery(source_id="cam-2")) == ["e", "d"]
    assert listed(EventQuery(since=at(2), until=at(5))) == ["d", "c", "b"]
    assert listed(EventQuery(pipeline_id="pl-1", run_id="run-1", since=at(2))) == ["f", "e", "b"]
    pages = walk(lambda c: store.events.list(EventQuery(pipeline_id="pl-1"), limit=4, cursor=c))
    assert [[e.id for e in p] for p in pages] == [["g", "f", "e", "c"], ["b", "a"]]


def test_event_walk_is_stable_under_inserts(store: Store) -> None:
    for i in range(10):
        store.events.put(event(f"ev-{i:02d}", i))
    first = store.events.list(limit=3)
    assert [e.id for e in first.items] == ["ev-09", "ev-08", "ev-07"]
    # WHEN a newer and an older event arrive mid-walk
    store.events.put(event("ev-new", 100))
    store.events.put(event("ev-old", -1))
    seen = [e.id for e in first.items]
    cursor = first.next_cursor
    while cursor is not None:
        page = store.events.list(limit=3, cursor=cursor)
        seen += [e.id for e in page.items]
        cursor = page.next_cursor
    # THEN the walk has every original once; the older one is reached, the newer one is not
    assert seen == [f"ev-{i:02d}" for i in range(9, -1, -1)] + ["ev-old"]


# --------------------------------------------------------------------------- alerts


def alert(alert_id: str, device_id: str, rule_id: str, seconds: float) -> Alert:
    return Alert(
        id=alert_id,
        device_id=device_id,
        rule_id=rule_id,
        kind=AlertRuleKind.OFFLINE,
        message=f"{device_id} offline",
        raised_at=at(seconds),
        value=12.5,
    )


def test_alert_rules(store: Store) -> None:
    r1 = AlertRule(id="rule-1", device_id="cam-1", kind=AlertRuleKind.OFFLINE, for_minutes=5)
    r2 = AlertRule(
        id="rule-2", device_id="s-1", kind=AlertRuleKind.METRIC_ABOVE, metric="temp", threshold=8
    )
    r3 = AlertRule(id="rule-0", device_id="cam-1", kind=AlertRuleKind.METRIC_BELOW, metric="fps")
    for rule in (r1, r2, r3):
        assert store.alerts.put_rule(rule) == rule
    assert store.alerts.get_rule("rule-2") == r2
    assert [r.id for r in store.alerts.list_rules()] == ["rule-0", "rule-1", "rule-2"]
    assert [r.id for r in store.alerts.list_rules("cam-1")] == ["rule-0", "rule-1"]
    replaced = r1.model_copy(update={"for_minutes": 10.0, "enabled": False})
    store.alerts.put_rule(replaced)
    assert store.alerts.get_rule("rule-1") == replaced
    assert store.alerts.delete_rule("rule-1") is True
    assert store.alerts.delete_rule("rule-1") is False
    assert store.alerts.get_rule("rule-1") is None
    assert [r.id for r in store.alerts.list_rules("cam-1")] == ["rule-0"]


def test_alert_raise_is_deduplicated_while_active(store: Store) -> None:
    # GIVEN an active alert of (cam-1, rule-1)
    first = alert("al-1", "cam-1", "rule-1", 0)
    assert store.alerts.raise_alert(first) is True
    # WHEN the same condition is raised again THEN it is not stored
    assert store.alerts.raise_alert(alert("al-2", "cam-1", "rule-1", 1)) is False
    assert store.alerts.get("al-2") is None
    # AND another rule or device raises independently
    assert store.alerts.raise_alert(alert("al-3", "cam-1", "rule-2", 2)) is True
    assert store.alerts.raise_alert(alert("al-4", "cam-2", "rule-1", 3)) is True
    # WHEN the alert clears THEN it is returned cleared, and a new one may be raised
    cleared = store.alerts.clear("cam-1", "rule-1", at=at(10))
    assert cleared is not None
    assert (cleared.id, cleared.state, cleared.cleared_at) == ("al-1", AlertState.CLEARED, at(10))
    assert store.alerts.get("al-1") == cleared
    assert store.alerts.clear("cam-1", "rule-1", at=at(11)) is None
    assert store.alerts.raise_alert(alert("al-5", "cam-1", "rule-1", 20)) is True
    active = store.alerts.get("al-5")
    assert active is not None and active.state is AlertState.ACTIVE


def test_alert_acknowledge_keeps_the_first(store: Store) -> None:
    store.alerts.raise_alert(alert("al-1", "cam-1", "rule-1", 0))
    acked = store.alerts.acknowledge("al-1", by="alice", at=at(5))
    assert (acked.acknowledged_by, acked.acknowledged_at) == ("alice", at(5))
    assert acked.state is AlertState.ACTIVE
    again = store.alerts.acknowledge("al-1", by="bob", at=at(9))
    assert (again.acknowledged_by, again.acknowledged_at) == ("alice", at(5))
    assert store.alerts.get("al-1") == acked
    with pytest.raises(NotFound):
        store.alerts.acknowledge("ghost", by="alice", at=at(5))


def test_alert_list_filters_and_order(store: Store) -> None:
    store.alerts.raise_alert(alert("al-1", "cam-1", "rule-1", 0))
    store.alerts.raise_alert(alert("al-2", "cam-2", "rule-1", 10))
    store.alerts.raise_alert(alert("al-3", "cam-1", "rule-2", 20))
    store.alerts.raise_alert(alert("al-4", "cam-3", "rule-9", 30))
    store.alerts.clear("cam-2", "rule-1", at=at(40))

    def listed(**filters: Any) -> list[str]:
        return [a.id for a in store.alerts.list(**filters).items]

    assert listed() == ["al-4", "al-3", "al-2", "al-1"]
    assert listed(state=AlertState.ACTIVE) == ["al-4", "al-3", "al-1"]
    assert listed(state=AlertState.CLEARED) == ["al-2"]
    assert listed(device_id="cam-1") == ["al-3", "al-1"]
    assert listed(since=at(10)) == ["al-4", "al-3", "al-2"]
    assert listed(state=AlertState.ACTIVE, device_id="cam-1", since=at(5)) == ["al-3"]
    pages = walk(lambda c: store.alerts.list(limit=3, cursor=c))
    assert [[a.id for a in p] for p in pages] == [["al-4", "al-3", "al-2"], ["al-1"]]


# --------------------------------------------------------------------------- users


def test_users_unique_username_ignoring_case(store: Store) -> None:
    alice = store.users.create(user("Alice", role=Role.ADMIN, email="alice@example.com"))
    assert store.users.get(alice.id) == alice
    assert store.users.get_by_username("alice") == alice
    assert store.users.get_by_username("ALICE") == alice
    assert store.users.get_by_username("bob") is None
    with pytest.raises(Conflict):
        store.users.create(user("aLiCe"))
    with pytest.raises(Conflict):
        store.users.create(user("someone-else").model_copy(update={"id": alice.id}))
    assert store.users.count() == 1


def test_user_update(store: Store) -> None:
    alice = store.users.create(user("alice"))
    bob = store.users.create(user("bob"))
    locked = store.users.update(
        alice.model_copy(update={"failed_logins": 5, "locked_until": at(900)}),
        expected_version=1,
    )
    assert locked.version == 2
    assert store.users.get(alice.id) == locked
    with pytest.raises(Conflict):
        store.users.update(alice, expected_version=1)
    # a rename to a taken username (any case) is refused and changes nothing
    with pytest.raises(Conflict):
        store.users.update(bob.model_copy(update={"username": "ALICE"}), expected_version=1)
    assert store.users.get(bob.id) == bob
    # a rename to a free one moves the username index
    renamed = store.users.update(bob.model_copy(update={"username": "Robert"}), 1)
    assert store.users.get_by_username("robert") == renamed
    assert store.users.get_by_username("bob") is None
    store.users.create(user("BOB"))
    with pytest.raises(NotFound):
        store.users.update(user("ghost"), expected_version=1)


def test_users_list_by_username_ignoring_case_and_delete(store: Store) -> None:
    for name in ["carol", "Alice", "bob", "Dave", "erin", "frank", "Grace"]:
        store.users.create(user(name))
    pages = walk(lambda c: store.users.list(limit=3, cursor=c))
    assert [[u.username for u in p] for p in pages] == [
        ["Alice", "bob", "carol"],
        ["Dave", "erin", "frank"],
        ["Grace"],
    ]
    assert store.users.count() == 7
    dave = store.users.get_by_username("dave")
    assert dave is not None
    assert store.users.delete(dave.id) is True
    assert store.users.delete(dave.id) is False
    assert store.users.count() == 6
    assert store.users.get_by_username("dave") is None
    store.users.create(user("dave"))


# --------------------------------------------------------------------------- refresh tokens


def test_refresh_token_rotates_once(store: Store) -> None:
    # GIVEN a token
    first = token("usr_1", "fam-1", "hash-1")
    store.refresh_tokens.put(first)
    assert store.refresh_tokens.get_by_hash("hash-1") == first
    assert store.refresh_tokens.get_by_hash("nope") is None
    # WHEN it is used: rotated to a replacement
    second = token("usr_1", "fam-1", "hash-2")
    assert store.refresh_tokens.rotate(first.id, second, at=at(10)) is True
    # THEN the replacement is stored and the first points to it
    assert store.refresh_tokens.get_by_hash("hash-2") == second
    used = store.refresh_tokens.get_by_hash("hash-1")
    assert used is not None and used.replaced_by == second.id
    # WHEN the first is presented again (reuse) THEN it does not rotate, storing nothing
    third = token("usr_1", "fam-1", "hash-3")
    assert store.refresh_tokens.rotate(first.id, third, at=at(20)) is False
    assert store.refresh_tokens.get_by_hash("hash-3") is None
    # AND a revoked token does not rotate either
    store.refresh_tokens.revoke(second.id, at=at(30))
    revoked = store.refresh_tokens.get_by_hash("hash-2")
    assert revoked is not None and revoked.revoked_at == at(30)
    assert store.refresh_tokens.rotate(second.id, third, at=at(31)) is False
    assert store.refresh_tokens.rotate("absent", third, at=at(31)) is False


def test_refresh_token_revoke_family_and_user_count_live_tokens(store: Store) -> None:
    # GIVEN family 1 (a used token and its live replacement), family 2 (two live tokens,
    # one of another user), and a revoked token
    a1 = token("usr_1", "fam-1", "h-a1")
    a2 = token("usr_1", "fam-1", "h-a2")
    store.refresh_tokens.put(a1)
    assert store.refresh_tokens.rotate(a1.id, a2, at=at(1))
    b1 = token("usr_1", "fam-2", "h-b1")
    b2 = token("usr_2", "fam-2", "h-b2")
    c1 = token("usr_1", "fam-3", "h-c1")
    for t in (b1, b2, c1):
        store.refresh_tokens.put(t)
    store.refresh_tokens.revoke(c1.id, at=at(2))
    # WHEN family 1 is revoked THEN one token was live, and all of it is revoked
    assert store.refresh_tokens.revoke_family("fam-1", at=at(5)) == 1
    for h in ("h-a1", "h-a2"):
        stored = store.refresh_tokens.get_by_hash(h)
        assert stored is not None and stored.revoked_at is not None
    assert store.refresh_tokens.revoke_family("fam-1", at=at(6)) == 0
    # WHEN user 1 is revoked THEN only b1 was still live; user 2's token is untouched
    assert store.refresh_tokens.revoke_user("usr_1", at=at(7)) == 1
    still = store.refresh_tokens.get_by_hash("h-b2")
    assert still is not None and still.revoked_at is None
    first_revocation = store.refresh_tokens.get_by_hash("h-c1")
    assert first_revocation is not None and first_revocation.revoked_at == at(2)
    assert store.refresh_tokens.revoke_user("usr_2", at=at(8)) == 1
    assert store.refresh_tokens.revoke_user("nobody", at=at(8)) == 0


def test_refresh_token_hash_is_unique(store: Store) -> None:
    store.refresh_tokens.put(token("usr_1", "fam-1", "same"))
    with pytest.raises(Conflict):
        store.refresh_tokens.put(token("usr_2", "fam-2", "same"))


# --------------------------------------------------------------------------- audit, settings


def test_audit_list_filters_newest_first(store: Store) -> None:
    entries = [
        AuditEntry(id="a1", time=at(1), actor_id="u1", action="auth.login", source_ip="10.0.0.5"),
        AuditEntry(
            id="a2", time=at(2), actor_id="u1", action="device.create", target_type="device",
            target_id="cam-1", detail={"name": "Front"},
        ),
        AuditEntry(
            id="a3", time=at(3), actor_id="u2", action="device.update", target_type="device",
            target_id="cam-1",
        ),
        AuditEntry(
            id="a4", time=at(4), actor_id="u2", action="pipeline.execute",
            target_type="pipeline", target_id="pl-1", outcome="denied",
        ),
    ]  # fmt: skip
    for entry in entries:
        store.audit.append(entry)

    def listed(**filters: Any) -> list[str]:
        return [e.id for e in store.audit.list(**filters).items]

    assert store.audit.list().items == list(reversed(entries))
    assert listed(actor_id="u1") == ["a2", "a1"]
    assert listed(target_type="device") == ["a3", "a2"]
    assert listed(target_type="device", target_id="cam-1", actor_id="u2") == ["a3"]
    assert listed(since=at(3)) == ["a4", "a3"]
    pages = walk(lambda c: store.audit.list(limit=3, cursor=c))
    assert [[e.id for e in p] for p in pages] == [["a4", "a3", "a2"], ["a1"]]


def test_settings_round_trip_json(store: Store) -> None:
    assert store.settings.get("fleet") is None
    value = {"allow_pending": True, "thresholds": {"camera": [60, 300]}, "note": "é", "x": None}
    store.settings.put("fleet", value)
    assert store.settings.get("fleet") == value
    store.settings.put("fleet", [1, 2.5, "three"])
    assert store.settings.get("fleet") == [1, 2.5, "three"]
    store.settings.put("flag", False)
    assert store.settings.get("flag") is False


# --------------------------------------------------------------------------- times


def test_times_round_trip_as_utc_with_microseconds(store: Store) -> None:
    # GIVEN a time given in another offset, with microseconds
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2026, 3, 1, 10, 0, 0, 999_999, tzinfo=plus_two)
    store.device_events.append(DeviceEvent(id="e1", device_id="d", time=local, type="t"))
    store.devices.create(device("d", last_seen=local))
    # WHEN read back THEN the same instant, in UTC, microseconds kept
    got = store.device_events.list("d").items[0].time
    assert got == local
    assert got.utcoffset() == timedelta(0)
    assert got.microsecond == 999_999
    stored = store.devices.get("d")
    assert stored is not None and stored.last_seen == local
    assert stored.last_seen.utcoffset() == timedelta(0)


def test_times_order_by_instant_across_offsets_and_microseconds(store: Store) -> None:
    # GIVEN events whose local wall times disagree with their instants
    plus_two = timezone(timedelta(hours=2))
    minus_five = timezone(timedelta(hours=-5))
    store.events.put(event("utc", 0))  # 08:00:00.000250 UTC
    store.events.put(event("east", 0, time=datetime(2026, 3, 1, 9, 59, 59, tzinfo=plus_two)))
    store.events.put(event("west", 0, time=datetime(2026, 3, 1, 3, 0, 0, 251, tzinfo=minus_five)))
    store.events.put(event("later-us", 0, time=at(0) + timedelta(microseconds=2)))
    # WHEN listed newest first THEN by instant: 07:59:59 < 08:00:00.000250 < .000251 < .000252
    assert [e.id for e in store.events.list().items] == ["later-us", "west", "utc", "east"]
    # AND range bounds compare instants too
    since = datetime(2026, 3, 1, 10, 0, 0, 251, tzinfo=plus_two)
    assert [e.id for e in store.events.list(EventQuery(since=since)).items] == [
        "later-us",
        "west",
    ]
