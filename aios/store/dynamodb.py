"""The cloud store: every port of :mod:`aios.store.port` in one DynamoDB table.

Single-table design. Keys ``pk``/``sk`` (strings); four overloaded global secondary indexes
``GSI1``…``GSI4`` keyed on ``gsiNpk``/``gsiNsk`` (strings, all attributes projected); TTL on
``expires_at_epoch``; on-demand billing. :func:`table_definition` is the single source of
that shape (the deployment template is checked against it); :func:`create_table` creates it.

A record is stored as top-level attributes (its fields; floats as numbers, times as
sortable ISO-8601 UTC strings with microseconds) beside its key attributes and ``entity``.
``#META`` is the sort key of an entity's main item; ``T#id`` below is ``<ISO time>#<id>``
(time order, ties by id; ``since <= time < until`` is the key condition
``BETWEEN iso(since) AND iso(until)`` since the ``#id`` suffix sorts after a bare time).

=========================================  ========================================================
Access pattern                             Key condition (index)
=========================================  ========================================================
device by id                               pk = DEVICE#<id>, sk = #META
devices by id (filters: search, kind,      GSI1: gsi1pk = DEVICES, gsi1sk = <id>
tag, parent, pending, box)
devices of a site by id                    GSI2: gsi2pk = DEVSITE#<site>, gsi2sk = <id>
device event (idempotent by id)            pk = DEVEVT#<device_id>, sk = <event id>
device's events, newest first              GSI1: gsi1pk = DEVEVT#<device_id>, gsi1sk = T#id range
telemetry of a metric on a UTC day         pk = TEL#<device_id>#<metric>#<YYYY-MM-DD>,
                                           sk = <ISO time> range (TTL: time + retention)
latest sample (+ first time) per metric    pk = TELLATEST#<device_id>, sk = <metric>
                                           (TTL: newest sample's time + retention)
telemetry cutoff (pruned before)           pk = TELPRUNED, sk = #META
command by request id                      pk = CMD#<request_id>, sk = #META
device's commands, newest first            GSI1: gsi1pk = CMDDEV#<device_id>, gsi1sk = T#id
pending commands, oldest deadline first    GSI2 (sparse): gsi2pk = CMDPENDING,
                                           gsi2sk = <deadline>#<id>
pipeline record                            pk = PIPELINE#<id>, sk = #META
pipeline revision n                        pk = PIPELINE#<id>, sk = REV#<n, 10 digits>
pipeline's revisions, newest first         pk = PIPELINE#<id>, begins_with(sk, REV#), descending
pipelines by id (filter: search)           GSI1: gsi1pk = PIPELINES, gsi1sk = <id>
run by id                                  pk = RUN#<id>, sk = #META
pipeline's runs, newest first              GSI1: gsi1pk = RUNPL#<pipeline_id>,
                                           gsi1sk = <started_at>#<id>
active runs                                GSI2 (sparse): gsi2pk = RUNACTIVE,
                                           gsi2sk = <started_at>#<id>
event by id (idempotent)                   pk = EVENT#<id>, sk = #META
pipeline's events, newest first            GSI1: gsi1pk = EVTPL#<pipeline_id>, gsi1sk = T#id
all events by time                         GSI2: gsi2pk = EVENTS, gsi2sk = T#id
source's events                            GSI3: gsi3pk = EVTSRC#<source_id>, gsi3sk = T#id
run's events                               GSI4: gsi4pk = EVTRUN#<run_id>, gsi4sk = T#id
alert rule by id                           pk = RULE#<id>, sk = #META
device's rules / all rules, by id          GSI1: RULEDEV#<device_id> / GSI2: RULES; sk = <id>
alert by id                                pk = ALERT#<id>, sk = #META
active alert of (device, rule)             pk = ALERTACTIVE#<device_id>#<rule_id>, sk = #META
device's alerts, newest first              GSI1: gsi1pk = ALERTDEV#<device_id>,
                                           gsi1sk = <raised_at>#<id>
alerts in a state, newest first            GSI2: gsi2pk = ALERTSTATE#<state>,
                                           gsi2sk = <raised_at>#<id>
all alerts, newest first                   GSI3: gsi3pk = ALERTS, gsi3sk = <raised_at>#<id>
user by id                                 pk = USER#<id>, sk = #META
user by username (unique)                  pk = USERNAME#<casefolded username>, sk = #META
                                           → user id
users by username                          GSI1: gsi1pk = USERS,
                                           gsi1sk = <casefolded username>#<id>
refresh token by id                        pk = REFRESH#<id>, sk = #META (TTL: expiry + 1 day)
refresh token by hash (unique)             pk = REFRESHHASH#<sha256>, sk = #META → token id
family's / user's refresh tokens           GSI1: RTFAMILY#<family_id> / GSI2: RTUSER#<user_id>;
                                           sk = <id>
audit entry by id                          pk = AUDIT#<id>, sk = #META
audit, newest first                        GSI1: gsi1pk = AUDIT, gsi1sk = T#id
actor's / target's audit                   GSI2: AUDITACTOR#<actor_id> /
                                           GSI3: AUDITTARGET#<target_id>; sk = T#id
setting                                    pk = SETTING#<key>, sk = #META
integration secret / all, by name          pk = SECRETS, sk = <name>
=========================================  ========================================================

Conditional writes. Creates use ``attribute_not_exists(pk)``; version updates
``version = :expected``; a refused write returns the stored item
(``ReturnValuesOnConditionCheckFailure``) so an absent record is :class:`NotFound` and a
moved one :class:`Conflict`. Alert dedup, usernames, refresh-token hashes, pipeline
revisions and refresh-token rotation are ``TransactWriteItems`` of the record and its
marker/uniqueness item, each conditional.

Telemetry. ``append`` batch-writes the samples, then raises each series' ``TELLATEST``
item (conditional: only to a newer sample) and lowers its ``first_time``; a query reads the
series' day buckets between those bounds, so it never scans days without data. An append
that raised may have stored part of its batch: retrying it (as MQTT QoS 1 redelivery does)
is safe, since samples are keyed by time. Retention: TTL deletes samples
``retention_days`` after their time; ``prune(before)`` raises a table-wide cutoff that
queries and ``latest`` honour at once (it deletes nothing itself and returns 0), so expired
items TTL has not swept yet are not returned either.

Reads. Gets and table queries are strongly consistent; index queries (lists) are
eventually consistent, as DynamoDB's GSIs are. Lists page on the index's key: the cursor is
the key of the last item *returned* (URL-safe base64 JSON, scoped to the list), and
filtered lists keep querying until a page is full, so no item is skipped. Substring search
(devices, pipelines) filters ``contains`` on lower-cased name/id attributes over the id
index: a read of the whole list, fine for fleets of thousands.

Limits. One index partition takes about 1,000 writes/s. The DEVICES partition of GSI1
holds every device and projects all its attributes, so every heartbeat (``touch``) is also
written there: about 10,000 devices at one heartbeat per 10 s. All events (GSI2
``EVENTS``) and all audit entries (GSI1 ``AUDIT``) share the same ceiling. Beyond it, shard
those keys (``DEVICES#<n>``) and merge the shards when listing. An item is at most 400 KB
(a pipeline revision's document included).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import boto3

from aios.domain import utcnow
from aios.store._dynamo_base import (
    INDEX_NAMES,
    TTL_ATTRIBUTE,
    Table,
    create_table,
    table_definition,
)
from aios.store._dynamo_fleet import (
    DynamoAlertStore,
    DynamoCommandStore,
    DynamoDeviceEventStore,
    DynamoDeviceStore,
    DynamoTelemetryStore,
)
from aios.store._dynamo_service import (
    DynamoAuditStore,
    DynamoEventStore,
    DynamoPipelineStore,
    DynamoRefreshTokenStore,
    DynamoRunStore,
    DynamoSecretStore,
    DynamoSettingsStore,
    DynamoUserStore,
)
from aios.store.port import (
    AlertStore,
    AuditStore,
    CommandStore,
    DeviceEventStore,
    DeviceStore,
    EventStore,
    IntegrationSecretStore,
    PipelineStore,
    RefreshTokenStore,
    RunStore,
    SettingsStore,
    TelemetryStore,
    UserStore,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.service_resource import DynamoDBServiceResource

__all__ = [
    "DEFAULT_RETENTION_DAYS",
    "INDEX_NAMES",
    "TTL_ATTRIBUTE",
    "DynamoStore",
    "create_table",
    "table_definition",
]

DEFAULT_RETENTION_DAYS = 30
"""Days telemetry samples are kept before TTL deletes them."""


class DynamoStore:
    """Every store of the service in one DynamoDB table (:class:`aios.store.port.Store`).

    ``table_name``: an existing table of :func:`table_definition`'s shape. ``client`` (a
    boto3 DynamoDB client) or ``resource`` (a boto3 DynamoDB resource, used through its
    client, which takes Python values); ``client`` wins if both are given; neither: a client
    from the AWS environment (region, credentials, endpoint).
    ``clock``: now, timezone-aware UTC (bounds telemetry queries without ``since``).
    ``retention_days``: telemetry kept that long after each sample's time (TTL), > 0.

    Raises ValueError for an empty table name or a retention that is not positive.
    """

    def __init__(
        self,
        table_name: str,
        *,
        client: DynamoDBClient | None = None,
        resource: DynamoDBServiceResource | None = None,
        clock: Callable[[], datetime] = utcnow,
        retention_days: float = DEFAULT_RETENTION_DAYS,
    ) -> None:
        if not table_name:
            raise ValueError("table_name must name the store's DynamoDB table")
        if not retention_days > 0:
            raise ValueError(f"retention_days must be positive, got {retention_days}")
        self._owns_client = client is None and resource is None
        python_values = client is None and resource is not None
        if client is None:
            client = resource.meta.client if resource is not None else boto3.client("dynamodb")
        self.table_name = table_name
        self.client = client
        table = Table(client, table_name, python_values=python_values)
        self.devices: DeviceStore = DynamoDeviceStore(table)
        self.device_events: DeviceEventStore = DynamoDeviceEventStore(table)
        self.telemetry: TelemetryStore = DynamoTelemetryStore(
            table, retention_days=retention_days, clock=clock
        )
        self.commands: CommandStore = DynamoCommandStore(table)
        self.pipelines: PipelineStore = DynamoPipelineStore(table)
        self.runs: RunStore = DynamoRunStore(table)
        self.events: EventStore = DynamoEventStore(table)
        self.alerts: AlertStore = DynamoAlertStore(table)
        self.users: UserStore = DynamoUserStore(table)
        self.refresh_tokens: RefreshTokenStore = DynamoRefreshTokenStore(table)
        self.audit: AuditStore = DynamoAuditStore(table)
        self.settings: SettingsStore = DynamoSettingsStore(table)
        self.secrets: IntegrationSecretStore = DynamoSecretStore(table)

    def close(self) -> None:
        """Close the HTTP connections of a client this store created (a given one is the
        caller's to close)."""
        if self._owns_client:
            self.client.close()
