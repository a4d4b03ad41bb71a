"""What the DynamoDB adapter does beyond the port contract: the table's shape, time-bucketed
telemetry with TTL, marker and uniqueness items, sparse indexes, numbers, and cursors over
filtered queries — checked on moto (no network), often by reading the raw items."""

from __future__ import annotations

import functools
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import boto3
import pytest
from moto import mock_aws

from aios.domain import (
    Alert,
    AlertRuleKind,
    AlertState,
    Command,
    CommandStatus,
    Device,
    DeviceEvent,
    DeviceKind,
    EventRecord,
    GeoPoint,
    PipelineRecord,
    Run,
    RunStatus,
    TelemetryPoint,
    User,
)
from aios.store.codec import encode_cursor
from aios.store.dynamodb import (
    INDEX_NAMES,
    TTL_ATTRIBUTE,
    DynamoStore,
    create_table,
    table_definition,
)
from aios.store.port import Conflict, DeviceQuery, EventQuery, NotFound, StoreError

TABLE = "aios-adapter-test"
T0 = datetime(2026, 3, 1, 8, 0, 0, 250, tzinfo=UTC)
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@functools.cache
def moto_client() -> Any:
    """One client for every test (creating one costs ~0.3 s); only used inside moto."""
    return boto3.client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )


@pytest.fixture
def client() -> Any:
    """A DynamoDB client on a fresh moto account with the store's table."""
    with mock_aws():
        create_table(moto_client(), TABLE)
        yield moto_client()


@pytest.fixture
def dynamo(client: Any) -> DynamoStore:
    """A store on the table whose clock reads ``NOW``."""
    return DynamoStore(TABLE, client=client, clock=lambda: NOW)


def raw(client: Any, pk: str, sk: str = "#META") -> dict[str, Any] | None:
    """The item as DynamoDB holds it (attribute values typed: {"S": ...})."""
    item: dict[str, Any] | None = client.get_item(
        TableName=TABLE, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
    ).get("Item")
    return item


class CountingClient:
    """A client that counts its Query calls."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.queries = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def query(self, **kwargs: Any) -> Any:
        self.queries += 1
        return self._client.query(**kwargs)


# --------------------------------------------------------------------------- table


def test_created_table_matches_the_definition_and_has_ttl(client: Any) -> None:
    # GIVEN the table create_table made
    described = client.describe_table(TableName=TABLE)["Table"]
    definition = table_definition(TABLE)
    # THEN its keys, indexes and billing are the definition's
    assert described["KeySchema"] == definition["KeySchema"]
    assert sorted(described["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == sorted(
        definition["AttributeDefinitions"], key=lambda a: a["AttributeName"]
    )
    indexes = {i["IndexName"]: i for i in described["GlobalSecondaryIndexes"]}
    assert set(indexes) == set(INDEX_NAMES) == {"GSI1", "GSI2", "GSI3", "GSI4"}
    for wanted in definition["GlobalSecondaryIndexes"]:
        got = indexes[wanted["IndexName"]]
        assert got["KeySchema"] == wanted["KeySchema"]
        assert got["Projection"] == {"ProjectionType": "ALL"}
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    # AND TTL is on expires_at_epoch
    ttl = client.describe_time_to_live(TableName=TABLE)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": TTL_ATTRIBUTE}


def test_definition_and_store_refuse_bad_arguments(client: Any) -> None:
    with pytest.raises(ValueError, match="table_name"):
        table_definition("")
    with pytest.raises(ValueError, match="table_name"):
        DynamoStore("", client=client)
    with pytest.raises(ValueError, match="retention_days"):
        DynamoStore(TABLE, client=client, retention_days=0)


def test_store_from_a_resource_or_the_environment(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a store on a resource (whose client takes Python values, not typed ones)
    resource = boto3.resource(
        "dynamodb", region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
    )
    on_resource = DynamoStore(TABLE, resource=resource, clock=lambda: NOW)
    # WHEN it writes, refuses, transacts, pages and buckets like the client-built one
    for i in range(3):
        on_resource.devices.create(
            Device(id=f"cam-{i}", name="Gate", kind=DeviceKind.CAMERA, health={"t": 1.5})
        )
    with pytest.raises(Conflict):
        on_resource.devices.create(Device(id="cam-0", name="Again", kind=DeviceKind.CAMERA))
    with pytest.raises(NotFound):
        on_resource.devices.update(Device(id="cam-9", name="X", kind=DeviceKind.CAMERA), 1)
    on_resource.users.create(User(id="u1", username="Alice", password_hash="h"))
    with pytest.raises(Conflict):
        on_resource.users.create(User(id="u2", username="alice", password_hash="h"))
    first = on_resource.devices.list(limit=2)
    rest = on_resource.devices.list(limit=2, cursor=first.next_cursor)
    on_resource.telemetry.append([TelemetryPoint(device_id="s1", metric="t", time=T0, value=20.5)])
    # THEN a store on the plain client reads the same records
    plain = DynamoStore(TABLE, client=client, clock=lambda: NOW)
    assert [d.id for d in first.items + rest.items] == ["cam-0", "cam-1", "cam-2"]
    assert rest.next_cursor is None
    assert plain.devices.get("cam-0") == on_resource.devices.get("cam-0")
    stored = plain.devices.get("cam-0")
    assert stored is not None and stored.health == {"t": 1.5}
    assert plain.users.get_by_username("ALICE") == on_resource.users.get("u1")
    assert [p.value for p in plain.telemetry.query("s1", since=T0).items] == [20.5]
    # AND a store from the environment (region from AWS_DEFAULT_REGION) sees them too
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    from_env = DynamoStore(TABLE)
    assert from_env.devices.get("cam-2") is not None
    from_env.close()


# --------------------------------------------------------------------------- numbers


def test_floats_nested_in_documents_round_trip(dynamo: DynamoStore, client: Any) -> None:
    # GIVEN a device whose documents nest floats, ints, booleans, nulls and lists
    config = {"roi": [[0.125, 0.5], [0.875, 1e-6]], "fps": 12, "gain": -3.25, "on": True}
    config |= {"none": None, "deep": {"a": {"b": [1, 2.5, "x"]}}, "big": 2**53}
    health = {"cpu_temp_c": 61.7, "uptime_s": 86400}
    device = Device(
        id="cam-1",
        name="Gate",
        kind=DeviceKind.CAMERA,
        location=GeoPoint(lat=48.858370, lon=2.294481),
        desired_config=config,
        health=health,
    )
    # WHEN it is stored and read back
    dynamo.devices.create(device)
    got = dynamo.devices.get("cam-1")
    # THEN every value and its type is kept
    assert got is not None
    assert got.desired_config == config
    assert got.health == health
    assert got.location == GeoPoint(lat=48.858370, lon=2.294481)
    assert isinstance(got.desired_config["fps"], int)
    assert isinstance(got.desired_config["gain"], float)
    assert got.desired_config["big"] == 2**53
    # AND DynamoDB holds them as numbers (not strings)
    item = raw(client, "DEVICE#cam-1")
    assert item is not None
    assert item["desired_config"]["M"]["gain"] == {"N": "-3.25"}
    assert item["location"]["M"]["lat"] == {"N": "48.85837"}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(dynamo: DynamoStore, bad: float) -> None:
    device = Device(id="cam-1", name="Gate", kind=DeviceKind.CAMERA, desired_config={"x": bad})
    with pytest.raises(ValueError, match="finite"):
        dynamo.devices.create(device)
    assert dynamo.devices.get("cam-1") is None


def test_settings_refuse_values_json_cannot_hold(dynamo: DynamoStore) -> None:
    with pytest.raises(TypeError, match="JSON"):
        dynamo.settings.put("fleet", {"when": object()})
    assert dynamo.settings.get("fleet") is None


# --------------------------------------------------------------------------- telemetry


def test_telemetry_is_stored_in_utc_day_buckets_with_ttl(client: Any) -> None:
    # GIVEN a store keeping telemetry 7 days
    dynamo = DynamoStore(TABLE, client=client, retention_days=7, clock=lambda: NOW)
    late = datetime(2026, 3, 1, 23, 59, 59, 999999, tzinfo=UTC)
    early = late + timedelta(microseconds=1)
    # WHEN samples either side of midnight UTC are appended (one given in UTC+2)
    local = early.astimezone(timezone(timedelta(hours=2)))
    dynamo.telemetry.append(
        [
            TelemetryPoint(device_id="s1", metric="temp", time=late, value=20.5, unit="Cel"),
            TelemetryPoint(device_id="s1", metric="temp", time=local, value=21.0, unit="Cel"),
        ]
    )
    # THEN each is in its UTC day's partition, keyed by its time, expiring 7 days after it
    first = raw(client, "TEL#s1#temp#2026-03-01", "2026-03-01T23:59:59.999999+00:00")
    second = raw(client, "TEL#s1#temp#2026-03-02", "2026-03-02T00:00:00.000000+00:00")
    assert first is not None and second is not None
    assert first[TTL_ATTRIBUTE] == {"N": str(int((late + timedelta(days=7)).timestamp()))}
    assert second[TTL_ATTRIBUTE] == {"N": str(int((early + timedelta(days=7)).timestamp()))}
    # AND the latest item holds the newest sample
    assert dynamo.telemetry.latest("s1")["temp"].time == early


def test_telemetry_query_crosses_days_in_time_then_metric_order(dynamo: DynamoStore) -> None:
    # GIVEN two metrics sampled every 5 hours over 4 days (both at the same instants)
    start = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)
    points = [
        TelemetryPoint(device_id="plc", metric=m, time=start + timedelta(hours=5 * i), value=i)
        for i in range(20)
        for m in ("pressure", "flow")
    ]
    dynamo.telemetry.append(points)
    expected = sorted(points, key=lambda p: (p.time, p.metric))
    # WHEN it is read in pages of 7
    got: list[TelemetryPoint] = []
    cursor = None
    sizes = []
    for _ in range(20):
        page = dynamo.telemetry.query("plc", limit=7, cursor=cursor)
        got += page.items
        sizes.append(len(page.items))
        cursor = page.next_cursor
        if cursor is None:
            break
    # THEN every sample comes once, oldest first, flow before pressure at equal times
    assert [(p.time, p.metric, p.value) for p in got] == [
        (p.time, p.metric, p.value) for p in expected
    ]
    assert sizes == [7, 7, 7, 7, 7, 5]
    # AND a range across midnight is exact at both ends (since included, until excluded)
    since, until = start + timedelta(hours=20), start + timedelta(hours=40)
    ranged = dynamo.telemetry.query("plc", metric="flow", since=since, until=until).items
    assert [p.time for p in ranged] == [since + timedelta(hours=5 * i) for i in range(4)]


def test_telemetry_without_since_reads_the_retention_window(client: Any) -> None:
    # GIVEN a store keeping 3 days, and samples 10 days apart
    dynamo = DynamoStore(TABLE, client=client, retention_days=3, clock=lambda: NOW)
    old, new = NOW - timedelta(days=12), NOW - timedelta(days=2)
    dynamo.telemetry.append([TelemetryPoint(device_id="s1", metric="t", time=new, value=2)])
    # WHEN an older sample arrives later (first_time moves back, latest stays)
    dynamo.telemetry.append([TelemetryPoint(device_id="s1", metric="t", time=old, value=1)])
    # THEN the latest is still the newer one
    assert dynamo.telemetry.latest("s1")["t"].value == 2
    # AND a query without since reads only the retention window (older samples have expired)
    assert [p.value for p in dynamo.telemetry.query("s1").items] == [2]
    # AND an explicit since reaches the older sample
    since = NOW - timedelta(days=30)
    assert [p.value for p in dynamo.telemetry.query("s1", since=since).items] == [1, 2]


def test_telemetry_prune_raises_a_cutoff_and_leaves_deletion_to_ttl(client: Any) -> None:
    # GIVEN a store keeping 7 days, with samples of one metric over 4 days
    counting = CountingClient(client)
    dynamo = DynamoStore(TABLE, client=counting, retention_days=7, clock=lambda: NOW)
    days = [T0 + timedelta(days=d) for d in range(4)]
    dynamo.telemetry.append(
        [TelemetryPoint(device_id="s1", metric="t", time=t, value=i) for i, t in enumerate(days)]
    )
    # THEN the latest item expires with its newest sample
    latest_item = raw(client, "TELLATEST#s1", "t")
    assert latest_item is not None
    assert latest_item[TTL_ATTRIBUTE] == {"N": str(int((days[3] + timedelta(days=7)).timestamp()))}
    # WHEN pruned before the third day
    assert dynamo.telemetry.prune(days[2]) == 0
    # THEN no item is deleted (TTL will) but the cutoff item holds the time
    assert raw(client, f"TEL#s1#t#{days[0].date().isoformat()}", days[0].isoformat()) is not None
    assert raw(client, "TELPRUNED") == {
        "pk": {"S": "TELPRUNED"},
        "sk": {"S": "#META"},
        "before": {"S": days[2].isoformat(timespec="microseconds")},
        "entity": {"S": "telemetry_cutoff"},
    }
    # AND a query reads only the day buckets from the cutoff on
    counting.queries = 0
    assert [p.value for p in dynamo.telemetry.query("s1", since=T0).items] == [2, 3]
    assert counting.queries == 1 + 2  # the latest items, then the 2 days left
    # WHEN an earlier prune follows, THEN the cutoff does not go down
    dynamo.telemetry.prune(days[0])
    assert raw(client, "TELPRUNED")["before"] == {"S": days[2].isoformat(timespec="microseconds")}
    # AND a sample older than the cutoff that arrives late is hidden as well
    late = TelemetryPoint(device_id="s2", metric="t", time=days[1], value=9)
    dynamo.telemetry.append([late])
    assert dynamo.telemetry.query("s2", since=T0).items == []
    assert dynamo.telemetry.latest("s2") == {}
    # AND a naive time is refused
    with pytest.raises(ValueError, match="before"):
        dynamo.telemetry.prune(datetime(2026, 3, 3))


def test_telemetry_cursor_of_another_metric_is_refused(dynamo: DynamoStore) -> None:
    dynamo.telemetry.append(
        [
            TelemetryPoint(device_id="s1", metric="t", time=T0 + timedelta(seconds=i), value=i)
            for i in range(3)
        ]
    )
    cursor = dynamo.telemetry.query("s1", metric="t", limit=1).next_cursor
    assert cursor is not None
    with pytest.raises(ValueError, match="cursor"):
        dynamo.telemetry.query("s1", metric="h", cursor=cursor)
    forged = encode_cursor("dynamodb:telemetry:s1:t", {"not": "a key"})
    with pytest.raises(ValueError, match="cursor"):
        dynamo.telemetry.query("s1", metric="t", cursor=forged)


# --------------------------------------------------------------------------- pagination


def test_filtered_list_reads_on_past_one_megabyte_responses(client: Any) -> None:
    # GIVEN 45 devices of ~30 KB each (DynamoDB returns at most 1 MB per Query), three
    # of them PLCs
    counting = CountingClient(client)
    dynamo = DynamoStore(TABLE, client=counting)  # type: ignore[arg-type]
    padding = {"blob": "x" * 30_000}
    for i in range(45):
        kind = DeviceKind.PLC if i % 15 == 7 else DeviceKind.CAMERA
        dynamo.devices.create(
            Device(id=f"dev-{i:02d}", name=f"D{i}", kind=kind, desired_config=padding)
        )
    # WHEN the PLCs are listed two per page
    ids: list[str] = []
    cursor = None
    pages = 0
    for _ in range(10):
        page = dynamo.devices.list(DeviceQuery(kind=DeviceKind.PLC), limit=2, cursor=cursor)
        pages += 1
        ids += [d.id for d in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    # THEN every PLC comes once, in id order, and the last page says it is the last
    assert ids == ["dev-07", "dev-22", "dev-37"]
    assert pages == 2
    # AND the adapter needed more Query calls than pages (it followed LastEvaluatedKey)
    assert counting.queries > pages


def test_filtered_page_resumes_after_the_last_item_returned(dynamo: DynamoStore) -> None:
    # GIVEN 12 devices of which 8 match a search (one DynamoDB response holds all of them)
    for i in range(12):
        name = f"Gate camera {i}" if i % 3 else f"Boiler {i}"
        dynamo.devices.create(Device(id=f"d{i:02d}", name=name, kind=DeviceKind.CAMERA))
    # WHEN they are listed three per page
    first = dynamo.devices.list(DeviceQuery(search="GATE"), limit=3)
    second = dynamo.devices.list(DeviceQuery(search="GATE"), limit=3, cursor=first.next_cursor)
    third = dynamo.devices.list(DeviceQuery(search="GATE"), limit=3, cursor=second.next_cursor)
    # THEN no matching device is skipped between pages
    ids = [d.id for p in (first, second, third) for d in p.items]
    assert ids == ["d01", "d02", "d04", "d05", "d07", "d08", "d10", "d11"]
    assert third.next_cursor is None


def test_cursor_of_another_device_or_forged_is_refused(dynamo: DynamoStore) -> None:
    for device_id in ("a", "b"):
        for i in range(3):
            dynamo.device_events.append(
                DeviceEvent(device_id=device_id, type="status.online", time=T0 + timedelta(i))
            )
    cursor = dynamo.device_events.list("a", limit=1).next_cursor
    assert cursor is not None
    assert len(dynamo.device_events.list("a", limit=5, cursor=cursor).items) == 2
    with pytest.raises(ValueError, match="another list"):
        dynamo.device_events.list("b", cursor=cursor)
    forged = encode_cursor("dynamodb:device_events:GSI1:DEVEVT#a", {"pk": "x"})
    with pytest.raises(ValueError, match="invalid cursor"):
        dynamo.device_events.list("a", cursor=forged)


def test_device_event_id_is_stored_once_even_with_another_time(dynamo: DynamoStore) -> None:
    event = DeviceEvent(id="dev_1", device_id="a", type="config.acknowledged", time=T0)
    dynamo.device_events.append(event)
    dynamo.device_events.append(event.model_copy(update={"time": T0 + timedelta(seconds=5)}))
    assert [e.time for e in dynamo.device_events.list("a").items] == [T0]


# --------------------------------------------------------------------------- markers


def test_alert_marker_is_written_and_deleted_with_the_alert(
    dynamo: DynamoStore, client: Any
) -> None:
    def alert(alert_id: str) -> Alert:
        return Alert(
            id=alert_id,
            device_id="cam-1",
            rule_id="rule-1",
            kind=AlertRuleKind.OFFLINE,
            message="offline",
            raised_at=T0,
        )

    # WHEN an alert is raised
    assert dynamo.alerts.raise_alert(alert("alert-1"))
    # THEN the (device, rule) marker names it
    marker = raw(client, "ALERTACTIVE#cam-1#rule-1")
    assert marker is not None and marker["alert_id"] == {"S": "alert-1"}
    # WHEN another is raised while it is active
    assert not dynamo.alerts.raise_alert(alert("alert-2"))
    # THEN the transaction stored nothing of it
    assert dynamo.alerts.get("alert-2") is None
    # WHEN it is cleared
    cleared = dynamo.alerts.clear("cam-1", "rule-1", at=T0 + timedelta(minutes=5))
    # THEN the marker is gone and the alert is cleared (and listed as such)
    assert cleared is not None and cleared.state is AlertState.CLEARED
    assert raw(client, "ALERTACTIVE#cam-1#rule-1") is None
    assert [a.id for a in dynamo.alerts.list(state=AlertState.CLEARED).items] == ["alert-1"]
    assert dynamo.alerts.list(state=AlertState.ACTIVE).items == []
    # AND a new alert of the same (device, rule) can be raised
    assert dynamo.alerts.raise_alert(alert("alert-3"))
    assert dynamo.alerts.clear("cam-1", "rule-9", at=T0) is None


def test_username_item_moves_with_a_rename(dynamo: DynamoStore, client: Any) -> None:
    # GIVEN two users
    alice = dynamo.users.create(User(id="u1", username="Alice", password_hash="h"))
    carol = dynamo.users.create(User(id="u2", username="carol", password_hash="h"))
    assert raw(client, "USERNAME#alice") is not None
    # WHEN alice is renamed Bob
    renamed = dynamo.users.update(alice.model_copy(update={"username": "Bob"}), 1)
    # THEN the uniqueness item moved, and the old name is free
    assert raw(client, "USERNAME#alice") is None
    bob_item = raw(client, "USERNAME#bob")
    assert bob_item is not None and bob_item["user_id"] == {"S": "u1"}
    assert dynamo.users.get_by_username("ALICE") is None
    assert dynamo.users.get_by_username("bob") == renamed
    # WHEN carol takes "BOB"
    with pytest.raises(Conflict, match="taken"):
        dynamo.users.update(carol.model_copy(update={"username": "BOB"}), 1)
    # THEN carol is unchanged
    assert dynamo.users.get("u2") == carol
    assert raw(client, "USERNAME#carol") is not None
    # AND deleting bob frees the name
    assert dynamo.users.delete("u1")
    assert raw(client, "USERNAME#bob") is None
    assert dynamo.users.count() == 1


# --------------------------------------------------------------------------- sparse indexes


def test_completed_command_leaves_the_pending_index(dynamo: DynamoStore, client: Any) -> None:
    command = Command(request_id="req-1", device_id="plc-1", name="reboot", deadline=T0)
    dynamo.commands.create(command)
    before = raw(client, "CMD#req-1")
    assert before is not None and before["gsi2pk"] == {"S": "CMDPENDING"}
    dynamo.commands.complete("req-1", CommandStatus.TIMED_OUT, at=T0)
    after = raw(client, "CMD#req-1")
    assert after is not None and "gsi2pk" not in after and "gsi2sk" not in after
    assert dynamo.commands.list_pending() == []
    with pytest.raises(ValueError, match="succeeded"):
        dynamo.commands.complete("req-1", CommandStatus.PENDING, at=T0)


def test_finished_run_leaves_the_active_index(dynamo: DynamoStore, client: Any) -> None:
    run = dynamo.runs.create(Run(id="run-1", pipeline_id="pl-1", revision=1, started_at=T0))
    assert [r.id for r in dynamo.runs.list_active()] == ["run-1"]
    dynamo.runs.update(run.model_copy(update={"status": RunStatus.STOPPED}), 1)
    item = raw(client, "RUN#run-1")
    assert item is not None and "gsi2pk" not in item
    assert dynamo.runs.list_active() == []
    assert [r.status for r in dynamo.runs.list("pl-1").items] == [RunStatus.STOPPED]


def test_refused_revision_leaves_no_item(dynamo: DynamoStore, client: Any) -> None:
    dynamo.pipelines.create(PipelineRecord(id="pl-1", name="Gate"), {"nodes": []})
    dynamo.pipelines.add_revision("pl-1", {"nodes": [1]}, expected_revision=1, at=T0)
    # WHEN a second editor saves from revision 1
    with pytest.raises(Conflict, match="revision 2"):
        dynamo.pipelines.add_revision("pl-1", {"nodes": [2]}, expected_revision=1, at=T0)
    # THEN the transaction wrote nothing: revision 3 does not exist, 2 is the first save's
    assert raw(client, "PIPELINE#pl-1", "REV#0000000003") is None
    revision = dynamo.pipelines.get_revision("pl-1", 2)
    assert revision is not None and revision.document == {"nodes": [1]}
    with pytest.raises(NotFound):
        dynamo.pipelines.add_revision("pl-9", {}, expected_revision=1, at=T0)
    # AND deleting the pipeline removes every item of its partition
    assert dynamo.pipelines.delete("pl-1")
    left = client.query(
        TableName=TABLE,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "PIPELINE#pl-1"}},
    )
    assert left["Count"] == 0


def test_empty_time_range_lists_nothing_without_a_query(client: Any) -> None:
    # GIVEN events
    counting = CountingClient(client)
    dynamo = DynamoStore(TABLE, client=counting)  # type: ignore[arg-type]
    dynamo.device_events.append(DeviceEvent(device_id="a", type="status.online", time=T0))
    dynamo.events.put(
        EventRecord(id="e1", pipeline_id="pl", node_id="n", type="zone.enter", time=T0)
    )
    # WHEN lists are asked for a range that ends before it starts
    later, earlier = T0 + timedelta(hours=1), T0 - timedelta(hours=1)
    # THEN they are empty, and DynamoDB was not asked (it refuses a BETWEEN whose lower
    # bound is above its upper bound with a ValidationException; moto does not)
    assert dynamo.device_events.list("a", since=later, until=earlier).items == []
    assert dynamo.events.list(EventQuery(since=later, until=earlier)).items == []
    assert counting.queries == 0
    assert dynamo.telemetry.query("a", since=later, until=earlier).items == []


def test_dynamodb_errors_become_store_errors(dynamo: DynamoStore, client: Any) -> None:
    # WHEN an item is over DynamoDB's 400 KB
    big = Device(
        id="cam-1", name="Gate", kind=DeviceKind.CAMERA, desired_config={"x": "y" * 450_000}
    )
    # THEN it is a ValueError saying what DynamoDB refused, and nothing is stored
    with pytest.raises(ValueError, match="size"):
        dynamo.devices.create(big)
    assert dynamo.devices.get("cam-1") is None
    # AND a store on a missing table raises StoreError naming the operation
    missing = DynamoStore("no-such-table", client=client)
    with pytest.raises(StoreError, match=r"get_item.*ResourceNotFoundException"):
        missing.devices.get("cam-1")
