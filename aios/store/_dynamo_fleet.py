"""The fleet's stores on DynamoDB: devices, device events, telemetry, commands, alerts.

Keys and indexes are listed in :mod:`aios.store.dynamodb`.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from typing import Any

from aios.domain import (
    Alert,
    AlertRule,
    AlertState,
    Command,
    CommandStatus,
    Device,
    DeviceEvent,
    TelemetryPoint,
)
from aios.store._dynamo_base import (
    TTL_ATTRIBUTE,
    ConditionFailed,
    Expr,
    Query,
    SortRange,
    Table,
    TransactionCanceled,
    and_all,
    load_record,
    record_attrs,
)
from aios.store.codec import (
    check_limit,
    decode_cursor,
    encode_cursor,
    from_iso,
    normalize,
    to_iso,
    utc,
)
from aios.store.port import Conflict, DeviceQuery, NotFound, Page

META = "#META"
"""Sort key of an entity's main item."""

ONE_MICROSECOND = timedelta(microseconds=1)

PRUNED_PK = "TELPRUNED"
"""Partition key of the telemetry cutoff item (sort key ``#META``): samples older than its
``before`` are not returned (:meth:`DynamoTelemetryStore.prune`)."""


def time_key(time: datetime, item_id: str) -> str:
    """A sort key ordering by time, then id: ``<ISO time>#<id>``.

    Because the ISO form is fixed-width, ``to_iso(since) <= key <= to_iso(until)`` holds
    exactly for ``since <= time < until`` (a key at ``until`` is ``to_iso(until) + "#…"``,
    which sorts after ``to_iso(until)``).
    """
    return f"{to_iso(time)}#{item_id}"


def time_range(since: datetime | None, until: datetime | None) -> SortRange:
    """The sort-key range of :func:`time_key` keys with ``since <= time < until``."""
    return SortRange(
        lo=None if since is None else to_iso(since, name="since"),
        hi=None if until is None else to_iso(until, name="until"),
    )


# --------------------------------------------------------------------------- devices


class DynamoDeviceStore:
    """:class:`aios.store.port.DeviceStore` on DynamoDB.

    Item ``DEVICE#<id>`` / ``#META`` with the device's fields, its lower-cased name and id
    (``name_lc``, ``id_lc``: case-insensitive search by ``contains``), ``GSI1`` = all devices
    by id, ``GSI2`` = devices of a site by id.
    """

    def __init__(self, table: Table) -> None:
        self._t = table

    @staticmethod
    def _pk(device_id: str) -> str:
        return f"DEVICE#{device_id}"

    def _attrs(self, device: Device) -> dict[str, Any]:
        attrs = record_attrs(device)
        attrs.update(
            pk=self._pk(device.id),
            sk=META,
            entity="device",
            name_lc=device.name.casefold(),
            id_lc=device.id.casefold(),
            gsi1pk="DEVICES",
            gsi1sk=device.id,
        )
        if device.site is not None:
            attrs.update(gsi2pk=f"DEVSITE#{device.site}", gsi2sk=device.id)
        return attrs

    def create(self, device: Device) -> Device:
        """Store a new device. Raises Conflict if the id exists."""
        device = normalize(device)
        e = Expr()
        try:
            self._t.put(self._attrs(device), condition=f"attribute_not_exists({e.n('pk')})", expr=e)
        except ConditionFailed as err:
            raise Conflict(f"device {device.id!r} exists") from err
        return device

    def get(self, device_id: str) -> Device | None:
        item = self._t.get(self._pk(device_id), META)
        return None if item is None else load_record(Device, item)

    def update(self, device: Device, expected_version: int) -> Device:
        """Replace the device if its stored version is ``expected_version``; the stored one
        has ``version`` = expected + 1. Raises NotFound, Conflict."""
        stored = normalize(device).model_copy(update={"version": expected_version + 1})
        e = Expr()
        condition = f"attribute_exists({e.n('pk')}) AND {e.n('version')} = {e.v(expected_version)}"
        try:
            self._t.put(self._attrs(stored), condition=condition, expr=e)
        except ConditionFailed as err:
            if err.old is None:
                raise NotFound(f"device {device.id!r} does not exist") from err
            raise Conflict(
                f"device {device.id!r} is at version {err.old.get('version')}, "
                f"not {expected_version}: read it again and retry"
            ) from err
        return stored

    def touch(
        self,
        device_id: str,
        seen_at: datetime,
        *,
        health: dict[str, Any] | None = None,
        firmware_version: str | None = None,
    ) -> Device:
        """Record a heartbeat with one conditional UpdateItem (no read-modify-write race):
        when ``seen_at`` is not older than the stored ``last_seen``, set ``last_seen`` (and
        ``health``/``firmware_version`` if given); otherwise (a late message) only bump
        ``version``. ``updated_at`` (the last edit) is kept. Raises NotFound."""
        seen_at = utc(seen_at, name="seen_at")
        pk = self._pk(device_id)
        e = Expr()
        sets = [
            f"{e.n('last_seen')} = {e.v(seen_at)}",
            f"{e.n('version')} = {e.n('version')} + {e.v(1)}",
        ]
        if health is not None:
            sets.append(f"{e.n('health')} = {e.v(health)}")
        if firmware_version is not None:
            sets.append(f"{e.n('firmware_version')} = {e.v(firmware_version)}")
        condition = (
            f"attribute_exists({e.n('pk')}) AND "
            f"({e.is_null('last_seen')} OR {e.n('last_seen')} <= {e.v(seen_at)})"
        )
        try:
            item = self._t.update(pk, META, "SET " + ", ".join(sets), e, condition=condition)
        except ConditionFailed as err:
            if err.old is None:
                raise NotFound(f"device {device_id!r} does not exist") from err
            # A late heartbeat: last_seen only grows, so it stays newer; bump the version.
            e = Expr()
            try:
                item = self._t.update(
                    pk,
                    META,
                    f"SET {e.n('version')} = {e.n('version')} + {e.v(1)}",
                    e,
                    condition=f"attribute_exists({e.n('pk')})",
                )
            except ConditionFailed as gone:
                raise NotFound(f"device {device_id!r} does not exist") from gone
        return load_record(Device, item)

    def delete(self, device_id: str) -> bool:
        """Remove the device (its events, telemetry, commands and rules are kept)."""
        return self._t.delete(self._pk(device_id), META) is not None

    def list(
        self, query: DeviceQuery | None = None, *, limit: int = 100, cursor: str | None = None
    ) -> Page[Device]:
        """Devices matching every given filter of ``query``, by id. ``site`` is a key
        condition (GSI2); the other filters are FilterExpressions over the id-ordered index
        (``search``: ``contains`` on the lower-cased name/id — a scan of the fleet's
        partition, fine for fleets of thousands of devices).

        Raises ValueError for a bad limit or cursor, or a box whose min exceeds its max.
        """
        q = query or DeviceQuery()
        e = Expr()
        filters: list[str] = []
        if q.search:
            needle = e.v(q.search.casefold())
            filters.append(
                f"contains({e.n('name_lc')}, {needle}) OR contains({e.n('id_lc')}, {needle})"
            )
        if q.kind is not None:
            filters.append(f"{e.n('kind')} = {e.v(q.kind)}")
        if q.tag is not None:
            filters.append(f"contains({e.n('tags')}, {e.v(q.tag)})")
        if q.parent_id is not None:
            filters.append(f"{e.n('parent_id')} = {e.v(q.parent_id)}")
        if q.pending is not None:
            filters.append(f"{e.n('pending')} = {e.v(q.pending)}")
        if q.box is not None:
            b = q.box
            if b.min_lat > b.max_lat or b.min_lon > b.max_lon:
                raise ValueError(
                    "bounding box: min_lat must not exceed max_lat, nor min_lon max_lon"
                )
            lat, lon = e.n("location.lat"), e.n("location.lon")
            filters.append(
                f"{lat} BETWEEN {e.v(float(b.min_lat))} AND {e.v(float(b.max_lat))} AND "
                f"{lon} BETWEEN {e.v(float(b.min_lon))} AND {e.v(float(b.max_lon))}"
            )
        if q.site is not None:
            index, partition = "GSI2", f"DEVSITE#{q.site}"
        else:
            index, partition = "GSI1", "DEVICES"
        items, next_cursor = self._t.page(
            Query(index, partition, expr=e, filter=and_all(filters)),
            scope="devices",
            limit=limit,
            cursor=cursor,
        )
        return Page([load_record(Device, i) for i in items], next_cursor)


class DynamoDeviceEventStore:
    """:class:`aios.store.port.DeviceEventStore` on DynamoDB.

    Item ``DEVEVT#<device_id>`` / ``<event id>`` (so the same id is stored once), ``GSI1`` =
    the device's events by ``<time>#<id>``.
    """

    def __init__(self, table: Table) -> None:
        self._t = table

    def append(self, event: DeviceEvent) -> None:
        """Store the event (same id twice keeps the first)."""
        event = normalize(event)
        attrs = record_attrs(event)
        attrs.update(
            pk=f"DEVEVT#{event.device_id}",
            sk=event.id,
            entity="device_event",
            gsi1pk=f"DEVEVT#{event.device_id}",
            gsi1sk=time_key(event.time, event.id),
        )
        e = Expr()
        try:
            self._t.put(attrs, condition=f"attribute_not_exists({e.n('pk')})", expr=e)
        except ConditionFailed:
            return

    def list(
        self,
        device_id: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[DeviceEvent]:
        """The device's events, newest first (ties by id), ``since <= time < until``."""
        items, next_cursor = self._t.page(
            Query("GSI1", f"DEVEVT#{device_id}", sort=time_range(since, until), forward=False),
            scope="device_events",
            limit=limit,
            cursor=cursor,
        )
        return Page([load_record(DeviceEvent, i) for i in items], next_cursor)


# --------------------------------------------------------------------------- telemetry


class DynamoTelemetryStore:
    """:class:`aios.store.port.TelemetryStore` on DynamoDB, in time-bucketed items.

    A sample is the item ``TEL#<device_id>#<metric>#<YYYY-MM-DD>`` (its UTC day) /
    ``<ISO time>``, expiring (TTL ``expires_at_epoch``) ``retention_days`` after its time.
    ``TELLATEST#<device_id>`` / ``<metric>`` keeps the newest sample of each metric (updated
    only when newer) and ``first_time``, the oldest sample's time: a query reads the device's
    metrics from there and then only the day buckets between the first and the newest
    sample that overlap the asked range. The latest item expires (TTL) with its newest
    sample, so a series whose samples all expired goes too.

    Retention. TTL deletes each sample ``retention_days`` after its time, for free (no write
    capacity) but asynchronously: AWS sweeps expired items typically within days, and until
    then reads return them. :meth:`prune` therefore hides instead of deleting: it raises the
    table-wide cutoff item ``TELPRUNED`` / ``#META`` (attribute ``before``; it never goes
    down), and :meth:`query` and :meth:`latest` read it (one GetItem) and return no sample
    older — samples older than the cutoff appended later included. Deleting explicitly
    would cost a write per sample and an index to enumerate every series; the storage of
    hidden samples is reclaimed by TTL. Keep ``retention_days`` and the pruning age equal.
    """

    def __init__(
        self, table: Table, *, retention_days: float, clock: Callable[[], datetime]
    ) -> None:
        self._t = table
        self._retention = timedelta(days=retention_days)
        self._clock = clock

    @staticmethod
    def _bucket(device_id: str, metric: str, day: str) -> str:
        return f"TEL#{device_id}#{metric}#{day}"

    def append(self, points: Sequence[TelemetryPoint]) -> None:
        """Store samples (BatchWriteItem, 25 per request); a second sample of the same
        (device, metric, time) replaces the first. Then, per (device, metric), raise the
        latest item to the newest sample if it is newer and lower ``first_time``."""
        latest: dict[tuple[str, str], TelemetryPoint] = {}
        oldest: dict[tuple[str, str], datetime] = {}
        by_key: dict[tuple[str, str], dict[str, Any]] = {}
        for point in points:
            p = normalize(point)
            iso = to_iso(p.time)
            attrs = record_attrs(p)
            attrs.update(
                pk=self._bucket(p.device_id, p.metric, iso[:10]),
                sk=iso,
                entity="telemetry",
                **{TTL_ATTRIBUTE: int((p.time + self._retention).timestamp())},
            )
            by_key[(attrs["pk"], iso)] = attrs  # the later of two equal keys wins
            series = (p.device_id, p.metric)
            if series not in latest or p.time >= latest[series].time:
                latest[series] = p
            if series not in oldest or p.time < oldest[series]:
                oldest[series] = p.time
        self._t.batch_put(list(by_key.values()))
        for (device_id, metric), newest in latest.items():
            self._raise_latest(newest, oldest[(device_id, metric)])

    def _raise_latest(self, newest: TelemetryPoint, first: datetime) -> None:
        pk, sk = f"TELLATEST#{newest.device_id}", newest.metric
        e = Expr()
        sets = [
            f"{e.n(name)} = {e.v(getattr(newest, name))}"
            for name in ("device_id", "metric", "time", "value", "unit")
        ]
        sets.append(f"{e.n('entity')} = {e.v('telemetry_latest')}")
        expires = int((newest.time + self._retention).timestamp())
        sets.append(f"{e.n(TTL_ATTRIBUTE)} = {e.v(expires)}")
        sets.append(f"{e.n('first_time')} = if_not_exists({e.n('first_time')}, {e.v(first)})")
        newer = f"attribute_not_exists({e.n('pk')}) OR {e.n('time')} <= {e.v(newest.time)}"
        with suppress(ConditionFailed):  # refused: a newer sample is the latest already
            self._t.update(pk, sk, "SET " + ", ".join(sets), e, condition=newer)
        e = Expr()
        with suppress(ConditionFailed):  # refused: an older sample is the first already
            self._t.update(
                pk,
                sk,
                f"SET {e.n('first_time')} = {e.v(first)}",
                e,
                condition=f"{e.n('first_time')} > {e.v(first)}",
            )

    def _series(self, device_id: str) -> tuple[builtins.list[dict[str, Any]], datetime | None]:
        """The device's latest items whose newest sample is not pruned, and the cutoff."""
        cutoff = self._cutoff()
        series = builtins.list(self._t.query_all(Query(None, f"TELLATEST#{device_id}")))
        if cutoff is not None:
            series = [s for s in series if from_iso(s["time"]) >= cutoff]
        return series, cutoff

    def _cutoff(self) -> datetime | None:
        """The highest ``before`` pruned so far (None: never pruned)."""
        item = self._t.get(PRUNED_PK, META)
        return None if item is None else from_iso(str(item["before"]))

    def prune(self, before: datetime) -> int:
        """Hide the samples (every device) whose ``time < before``: raise the cutoff item
        to ``before`` (conditional: only upwards). Returns 0: TTL deletes the items (see the
        class docstring). Raises ValueError for a naive ``before``."""
        before = utc(before, name="before")
        e = Expr()
        update = f"SET {e.n('before')} = {e.v(before)}, {e.n('entity')} = {e.v('telemetry_cutoff')}"
        lower = f"attribute_not_exists({e.n('pk')}) OR {e.n('before')} < {e.v(before)}"
        with suppress(ConditionFailed):  # refused: a later cutoff is in force already
            self._t.update(PRUNED_PK, META, update, e, condition=lower)
        return 0

    def query(
        self,
        device_id: str,
        *,
        metric: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
        cursor: str | None = None,
    ) -> Page[TelemetryPoint]:
        """Samples oldest first (by time, then metric), ``since <= time < until``.

        Without ``since``, the window starts ``retention_days`` (plus a day) before the
        newest sample or now, whichever is earlier: older samples have expired. The day
        buckets of each metric are read in order with a key condition on the time; a page
        stops at ``limit`` samples and its cursor is the (time, metric) of the last one.
        Raises ValueError for a bad limit or cursor.
        """
        check_limit(limit)
        scope = f"dynamodb:telemetry:{device_id}:{metric or '*'}"
        after: tuple[datetime, str] | None = None
        if cursor is not None:
            key = decode_cursor(cursor, scope)
            try:
                after = (from_iso(key[0]), str(key[1]))
            except (TypeError, ValueError, IndexError, KeyError) as err:
                raise ValueError(
                    "invalid cursor: pass the next_cursor of the previous page of the same "
                    "list unchanged"
                ) from err
        since = None if since is None else utc(since, name="since")
        until = None if until is None else utc(until, name="until")
        stored, cutoff = self._series(device_id)
        series = [s for s in stored if metric is None or s["metric"] == metric]
        if not series:
            return Page([])
        if since is None:
            anchor = min(self._clock(), max(from_iso(s["time"]) for s in series))
            since = anchor - self._retention - timedelta(days=1)
        if cutoff is not None:
            since = max(since, cutoff)
        # Per metric, the inclusive time range still to read.
        ranges: dict[str, tuple[datetime, datetime]] = {}
        for s in series:
            name = str(s["metric"])
            lo = max(since, from_iso(s["first_time"]))
            hi = from_iso(s["time"])
            if until is not None:
                hi = min(hi, until - ONE_MICROSECOND)
            if after is not None:
                lo = max(lo, after[0] if name > after[1] else after[0] + ONE_MICROSECOND)
            if lo <= hi:
                ranges[name] = (lo, hi)
        want = limit + 1
        found: builtins.list[TelemetryPoint] = []
        if ranges:
            day = min(lo for lo, _ in ranges.values()).date()
            last_day = max(hi for _, hi in ranges.values()).date()
            while day <= last_day and len(found) < want:
                found.extend(self._read_day(device_id, day, ranges, want - len(found)))
                day += timedelta(days=1)
        items = found[:limit]
        next_cursor = None
        if len(found) > limit:
            last = items[-1]
            next_cursor = encode_cursor(scope, [to_iso(last.time), last.metric])
        return Page(items, next_cursor)

    def _read_day(
        self,
        device_id: str,
        day: date,
        ranges: dict[str, tuple[datetime, datetime]],
        needed: int,
    ) -> builtins.list[TelemetryPoint]:
        """The first ``needed`` samples of one UTC day across the metrics, by (time, metric)."""
        day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        day_end = day_start + timedelta(days=1) - ONE_MICROSECOND
        merged: builtins.list[TelemetryPoint] = []
        for name, (series_lo, series_hi) in sorted(ranges.items()):
            lo, hi = max(series_lo, day_start), min(series_hi, day_end)
            if lo > hi:
                continue
            query = Query(
                None,
                self._bucket(device_id, name, day_start.date().isoformat()),
                sort=SortRange(lo=to_iso(lo), hi=to_iso(hi)),
            )
            items = self._t.query_all(query, page_size=needed)
            merged += [load_record(TelemetryPoint, i) for i in islice(items, needed)]
        merged.sort(key=lambda p: (p.time, p.metric))
        return merged[:needed]

    def latest(self, device_id: str) -> dict[str, TelemetryPoint]:
        """The newest sample of each metric of the device (none older than the cutoff)."""
        series, _ = self._series(device_id)
        return {str(s["metric"]): load_record(TelemetryPoint, s) for s in series}


# --------------------------------------------------------------------------- commands


class DynamoCommandStore:
    """:class:`aios.store.port.CommandStore` on DynamoDB.

    Item ``CMD#<request_id>`` / ``#META``; ``GSI1`` = the device's commands by
    ``<requested_at>#<id>``; ``GSI2`` (sparse, only while pending) = pending commands by
    ``<deadline>#<id>``.
    """

    def __init__(self, table: Table) -> None:
        self._t = table

    @staticmethod
    def _pk(request_id: str) -> str:
        return f"CMD#{request_id}"

    def create(self, command: Command) -> Command:
        """Raises Conflict if the request id exists."""
        command = normalize(command)
        attrs = record_attrs(command)
        attrs.update(
            pk=self._pk(command.request_id),
            sk=META,
            entity="command",
            gsi1pk=f"CMDDEV#{command.device_id}",
            gsi1sk=time_key(command.requested_at, command.request_id),
        )
        if command.status is CommandStatus.PENDING:
            attrs.update(gsi2pk="CMDPENDING", gsi2sk=time_key(command.deadline, command.request_id))
        e = Expr()
        try:
            self._t.put(attrs, condition=f"attribute_not_exists({e.n('pk')})", expr=e)
        except ConditionFailed as err:
            raise Conflict(f"command {command.request_id!r} exists") from err
        return command

    def get(self, request_id: str) -> Command | None:
        item = self._t.get(self._pk(request_id), META)
        return None if item is None else load_record(Command, item)

    def complete(
        self,
        request_id: str,
        status: CommandStatus,
        *,
        at: datetime,
        response: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> Command:
        """Record the outcome of a pending command (condition: ``status = pending``) and take
        it off the pending index. Raises ValueError for ``status`` pending; NotFound;
        Conflict if it is no longer pending."""
        status = CommandStatus(status)
        if status is CommandStatus.PENDING:
            raise ValueError("complete a command with succeeded, failed or timed_out")
        at = utc(at, name="at")
        e = Expr()
        update = (
            f"SET {e.n('status')} = {e.v(status)}, {e.n('responded_at')} = {e.v(at)}, "
            f"{e.n('response')} = {e.v(response)}, {e.n('error')} = {e.v(error)} "
            f"REMOVE {e.n('gsi2pk')}, {e.n('gsi2sk')}"
        )
        condition = (
            f"attribute_exists({e.n('pk')}) AND {e.n('status')} = {e.v(CommandStatus.PENDING)}"
        )
        try:
            item = self._t.update(self._pk(request_id), META, update, e, condition=condition)
        except ConditionFailed as err:
            if err.old is None:
                raise NotFound(f"command {request_id!r} does not exist") from err
            raise Conflict(
                f"command {request_id!r} is {err.old.get('status')}, no longer pending"
            ) from err
        return load_record(Command, item)

    def list(self, device_id: str, *, limit: int = 100, cursor: str | None = None) -> Page[Command]:
        """The device's commands, newest first."""
        items, next_cursor = self._t.page(
            Query("GSI1", f"CMDDEV#{device_id}", forward=False),
            scope="commands",
            limit=limit,
            cursor=cursor,
        )
        return Page([load_record(Command, i) for i in items], next_cursor)

    def list_pending(self, *, limit: int = 1000) -> builtins.list[Command]:
        """Commands still pending (any device), oldest deadline first."""
        items, _ = self._t.page(
            Query("GSI2", "CMDPENDING"), scope="commands_pending", limit=limit, cursor=None
        )
        return [load_record(Command, i) for i in items]


# --------------------------------------------------------------------------- alerts


class DynamoAlertStore:
    """:class:`aios.store.port.AlertStore` on DynamoDB.

    Rule ``RULE#<id>`` / ``#META`` (``GSI1`` = rules of a device by id, ``GSI2`` = all rules
    by id). Alert ``ALERT#<id>`` / ``#META`` (``GSI1`` = a device's alerts, ``GSI2`` = alerts
    in a state, ``GSI3`` = all alerts; each by ``<raised_at>#<id>``). The marker
    ``ALERTACTIVE#<device_id>#<rule_id>`` / ``#META`` names the active alert of (device,
    rule); raising writes it with ``attribute_not_exists`` in the same transaction as the
    alert, clearing deletes it — so at most one alert is active per (device, rule).
    """

    def __init__(self, table: Table) -> None:
        self._t = table

    # ----------------------------------------------------------------- rules

    def put_rule(self, rule: AlertRule) -> AlertRule:
        """Create or replace a rule."""
        rule = normalize(rule)
        attrs = record_attrs(rule)
        attrs.update(
            pk=f"RULE#{rule.id}",
            sk=META,
            entity="alert_rule",
            gsi1pk=f"RULEDEV#{rule.device_id}",
            gsi1sk=rule.id,
            gsi2pk="RULES",
            gsi2sk=rule.id,
        )
        self._t.put(attrs)
        return rule

    def get_rule(self, rule_id: str) -> AlertRule | None:
        item = self._t.get(f"RULE#{rule_id}", META)
        return None if item is None else load_record(AlertRule, item)

    def delete_rule(self, rule_id: str) -> bool:
        return self._t.delete(f"RULE#{rule_id}", META) is not None

    def list_rules(self, device_id: str | None = None) -> builtins.list[AlertRule]:
        """Rules of one device, or all rules; by id."""
        query = (
            Query("GSI2", "RULES") if device_id is None else Query("GSI1", f"RULEDEV#{device_id}")
        )
        return [load_record(AlertRule, i) for i in self._t.query_all(query)]

    # ----------------------------------------------------------------- alerts

    @staticmethod
    def _marker(device_id: str, rule_id: str) -> str:
        return f"ALERTACTIVE#{device_id}#{rule_id}"

    def _attrs(self, alert: Alert) -> dict[str, Any]:
        attrs = record_attrs(alert)
        key = time_key(alert.raised_at, alert.id)
        attrs.update(
            pk=f"ALERT#{alert.id}",
            sk=META,
            entity="alert",
            gsi1pk=f"ALERTDEV#{alert.device_id}",
            gsi1sk=key,
            gsi2pk=f"ALERTSTATE#{AlertState(alert.state).value}",
            gsi2sk=key,
            gsi3pk="ALERTS",
            gsi3sk=key,
        )
        return attrs

    def raise_alert(self, alert: Alert) -> bool:
        """Store ``alert`` and the (device, rule) marker in one transaction, both with
        ``attribute_not_exists``; return whether it was raised (False: an alert of (device,
        rule) is active, or the id is taken). Raises ValueError if it is not active."""
        if alert.state is not AlertState.ACTIVE:
            raise ValueError("raise an alert in state 'active'")
        alert = normalize(alert)
        em, ea = Expr(), Expr()
        marker = {
            "pk": self._marker(alert.device_id, alert.rule_id),
            "sk": META,
            "entity": "alert_active",
            "alert_id": alert.id,
        }
        try:
            self._t.transact(
                [
                    self._t.tx_put(
                        marker, condition=f"attribute_not_exists({em.n('pk')})", expr=em
                    ),
                    self._t.tx_put(
                        self._attrs(alert), condition=f"attribute_not_exists({ea.n('pk')})", expr=ea
                    ),
                ]
            )
        except TransactionCanceled as err:
            if err.failed(0) or err.failed(1):
                return False
            raise
        return True

    def clear(self, device_id: str, rule_id: str, *, at: datetime) -> Alert | None:
        """Clear the active alert of (device, rule) at ``at``: delete the marker and mark
        the alert cleared in one transaction; return it, or None if none was active."""
        at = utc(at, name="at")
        marker_pk = self._marker(device_id, rule_id)
        for _ in range(3):  # another writer may clear (and raise again) in between
            marker = self._t.get(marker_pk, META)
            if marker is None:
                return None
            alert_id = str(marker["alert_id"])
            current = self.get(alert_id)
            em, ea = Expr(), Expr()
            delete_marker = self._t.tx_delete(
                marker_pk, META, condition=f"{em.n('alert_id')} = {em.v(alert_id)}", expr=em
            )
            if current is None or current.state is not AlertState.ACTIVE:
                with suppress(TransactionCanceled):  # a marker left without its alert: drop it
                    self._t.transact([delete_marker])
                return None
            cleared = current.model_copy(update={"state": AlertState.CLEARED, "cleared_at": at})
            condition = f"{ea.n('state')} = {ea.v(AlertState.ACTIVE)}"
            try:
                self._t.transact(
                    [
                        delete_marker,
                        self._t.tx_put(self._attrs(cleared), condition=condition, expr=ea),
                    ]
                )
            except TransactionCanceled as err:
                if err.failed(0) or err.failed(1):
                    continue
                raise
            return cleared
        raise Conflict(f"the alert of device {device_id!r}, rule {rule_id!r} keeps changing")

    def acknowledge(self, alert_id: str, *, by: str, at: datetime) -> Alert:
        """Mark acknowledged by ``by`` at ``at`` (condition: not acknowledged yet); an
        acknowledged alert is returned unchanged. Raises NotFound."""
        at = utc(at, name="at")
        e = Expr()
        update = f"SET {e.n('acknowledged_by')} = {e.v(by)}, {e.n('acknowledged_at')} = {e.v(at)}"
        condition = f"attribute_exists({e.n('pk')}) AND {e.is_null('acknowledged_at')}"
        try:
            item = self._t.update(f"ALERT#{alert_id}", META, update, e, condition=condition)
        except ConditionFailed as err:
            if err.old is None:
                raise NotFound(f"alert {alert_id!r} does not exist") from err
            return load_record(Alert, err.old)
        return load_record(Alert, item)

    def get(self, alert_id: str) -> Alert | None:
        item = self._t.get(f"ALERT#{alert_id}", META)
        return None if item is None else load_record(Alert, item)

    def list(
        self,
        *,
        state: AlertState | None = None,
        device_id: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[Alert]:
        """Alerts matching the filters (``raised_at >= since``), newest ``raised_at`` first
        (ties by id). Raises ValueError for a bad limit or cursor."""
        e = Expr()
        filters: list[str] = []
        if device_id is not None:
            index, partition = "GSI1", f"ALERTDEV#{device_id}"
            if state is not None:
                filters.append(f"{e.n('state')} = {e.v(AlertState(state))}")
        elif state is not None:
            index, partition = "GSI2", f"ALERTSTATE#{AlertState(state).value}"
        else:
            index, partition = "GSI3", "ALERTS"
        items, next_cursor = self._t.page(
            Query(
                index,
                partition,
                sort=time_range(since, None),
                expr=e,
                filter=and_all(filters),
                forward=False,
            ),
            scope="alerts",
            limit=limit,
            cursor=cursor,
        )
        return Page([load_record(Alert, i) for i in items], next_cursor)
