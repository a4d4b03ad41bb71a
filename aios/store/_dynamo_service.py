"""The service's stores on DynamoDB: pipelines, runs, events, users, refresh tokens, audit,
settings.

Keys and indexes are listed in :mod:`aios.store.dynamodb`.
"""

from __future__ import annotations

import builtins
from datetime import datetime, timedelta
from typing import Any

from aios.domain import (
    AuditEntry,
    EventRecord,
    PipelineRecord,
    PipelineRevision,
    RefreshToken,
    Run,
    RunStatus,
    User,
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
from aios.store._dynamo_fleet import META, time_key, time_range
from aios.store.codec import from_iso, normalize, utc
from aios.store.port import (
    MAX_SECRET_BYTES,
    Conflict,
    EventQuery,
    NotFound,
    Page,
    SecretInfo,
    secret_hint,
)

REFRESH_TOKEN_TTL_GRACE = timedelta(days=1)
"""How long after its expiry a refresh token may be swept by TTL (an expired token is
refused anyway; the grace keeps reuse of a just-expired one recognisable)."""


def _not_exists(e: Expr) -> str:
    return f"attribute_not_exists({e.n('pk')})"


# --------------------------------------------------------------------------- pipelines


class DynamoPipelineStore:
    """:class:`aios.store.port.PipelineStore` on DynamoDB.

    Partition ``PIPELINE#<id>``: the record at ``#META`` (``GSI1`` = all pipelines by id)
    and each revision at ``REV#<revision, 10 digits>`` (so a query of the partition lists
    revisions in order). A revision's document is one item: at most 400 KB.
    """

    def __init__(self, table: Table) -> None:
        self._t = table

    @staticmethod
    def _pk(pipeline_id: str) -> str:
        return f"PIPELINE#{pipeline_id}"

    @staticmethod
    def _rev_sk(revision: int) -> str:
        return f"REV#{revision:010d}"

    def _record_attrs(self, record: PipelineRecord) -> dict[str, Any]:
        attrs = record_attrs(record)
        attrs.update(
            pk=self._pk(record.id),
            sk=META,
            entity="pipeline",
            name_lc=record.name.casefold(),
            id_lc=record.id.casefold(),
            gsi1pk="PIPELINES",
            gsi1sk=record.id,
        )
        return attrs

    def _revision_attrs(self, revision: PipelineRevision) -> dict[str, Any]:
        attrs = record_attrs(revision)
        attrs.update(
            pk=self._pk(revision.pipeline_id),
            sk=self._rev_sk(revision.revision),
            entity="pipeline_revision",
        )
        return attrs

    def create(self, record: PipelineRecord, document: dict[str, Any]) -> PipelineRecord:
        """Store a new pipeline (``latest_revision`` 1) and its revision 1 in one
        transaction. Raises Conflict if the id exists."""
        record = normalize(record).model_copy(update={"latest_revision": 1})
        revision = PipelineRevision(
            pipeline_id=record.id,
            revision=1,
            document=document,
            created_by=record.created_by,
            created_at=record.created_at,
        )
        e1, e2 = Expr(), Expr()
        try:
            self._t.transact(
                [
                    self._t.tx_put(self._record_attrs(record), condition=_not_exists(e1), expr=e1),
                    self._t.tx_put(
                        self._revision_attrs(revision), condition=_not_exists(e2), expr=e2
                    ),
                ]
            )
        except TransactionCanceled as err:
            if err.failed(0) or err.failed(1):
                raise Conflict(f"pipeline {record.id!r} exists") from err
            raise
        return record

    def get(self, pipeline_id: str) -> PipelineRecord | None:
        item = self._t.get(self._pk(pipeline_id), META)
        return None if item is None else load_record(PipelineRecord, item)

    def add_revision(
        self,
        pipeline_id: str,
        document: dict[str, Any],
        *,
        expected_revision: int,
        name: str | None = None,
        description: str | None = None,
        created_by: str | None = None,
        at: datetime,
    ) -> PipelineRecord:
        """Store revision ``expected_revision + 1`` and make it the latest, in one
        transaction conditioned on ``latest_revision = expected_revision``. Raises NotFound;
        Conflict if ``expected_revision`` is not the latest."""
        at = utc(at, name="at")
        number = expected_revision + 1
        revision = PipelineRevision(
            pipeline_id=pipeline_id,
            revision=number,
            document=document,
            created_by=created_by,
            created_at=at,
        )
        e = Expr()
        sets = [
            f"{e.n('latest_revision')} = {e.v(number)}",
            f"{e.n('updated_at')} = {e.v(at)}",
        ]
        if name is not None:
            checked = PipelineRecord(name=name)  # the record's own rules (length)
            sets.append(f"{e.n('name')} = {e.v(checked.name)}")
            sets.append(f"{e.n('name_lc')} = {e.v(checked.name.casefold())}")
        if description is not None:
            sets.append(f"{e.n('description')} = {e.v(description)}")
        condition = (
            f"attribute_exists({e.n('pk')}) AND {e.n('latest_revision')} = {e.v(expected_revision)}"
        )
        er = Expr()
        try:
            self._t.transact(
                [
                    self._t.tx_update(
                        self._pk(pipeline_id),
                        META,
                        "SET " + ", ".join(sets),
                        e,
                        condition=condition,
                    ),
                    self._t.tx_put(
                        self._revision_attrs(revision), condition=_not_exists(er), expr=er
                    ),
                ]
            )
        except TransactionCanceled as err:
            if not (err.failed(0) or err.failed(1)):
                raise
            current = self.get(pipeline_id)
            if current is None:
                raise NotFound(f"pipeline {pipeline_id!r} does not exist") from err
            raise Conflict(
                f"pipeline {pipeline_id!r} is at revision {current.latest_revision}, not "
                f"{expected_revision}: reload it and save again"
            ) from err
        stored = self.get(pipeline_id)
        if stored is None:
            raise NotFound(f"pipeline {pipeline_id!r} was deleted while saving")
        return stored

    def get_revision(self, pipeline_id: str, revision: int) -> PipelineRevision | None:
        if revision < 1:
            return None
        item = self._t.get(self._pk(pipeline_id), self._rev_sk(revision))
        return None if item is None else load_record(PipelineRevision, item)

    def list_revisions(
        self, pipeline_id: str, *, limit: int = 100, cursor: str | None = None
    ) -> Page[PipelineRevision]:
        """Newest revision first."""
        items, next_cursor = self._t.page(
            Query(None, self._pk(pipeline_id), sort=SortRange(prefix="REV#"), forward=False),
            scope="pipeline_revisions",
            limit=limit,
            cursor=cursor,
        )
        return Page([load_record(PipelineRevision, i) for i in items], next_cursor)

    def delete(self, pipeline_id: str) -> bool:
        """Remove the pipeline (its record first, then its revisions); runs and events are
        kept. True if it existed."""
        pk = self._pk(pipeline_id)
        existed = self._t.delete(pk, META) is not None
        revisions = [(pk, str(i["sk"])) for i in self._t.query_all(Query(None, pk))]
        self._t.batch_delete(revisions)
        return existed

    def list(
        self, *, search: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> Page[PipelineRecord]:
        """Pipelines by id; ``search`` is a case-insensitive substring of the name or id
        (``contains`` on the lower-cased attributes)."""
        e = Expr()
        filters: list[str] = []
        if search:
            needle = e.v(search.casefold())
            filters.append(
                f"contains({e.n('name_lc')}, {needle}) OR contains({e.n('id_lc')}, {needle})"
            )
        items, next_cursor = self._t.page(
            Query("GSI1", "PIPELINES", expr=e, filter=and_all(filters)),
            scope="pipelines",
            limit=limit,
            cursor=cursor,
        )
        return Page([load_record(PipelineRecord, i) for i in items], next_cursor)


# --------------------------------------------------------------------------- runs


class DynamoRunStore:
    """:class:`aios.store.port.RunStore` on DynamoDB.

    Item ``RUN#<id>`` / ``#META``; ``GSI1`` = a pipeline's runs by ``<started_at>#<id>``;
    ``GSI2`` (sparse: only while starting, running or stopping) = active runs.
    """

    def __init__(self, table: Table) -> None:
        self._t = table

    @staticmethod
    def _pk(run_id: str) -> str:
        return f"RUN#{run_id}"

    def _attrs(self, run: Run) -> dict[str, Any]:
        attrs = record_attrs(run)
        key = time_key(run.started_at, run.id)
        attrs.update(
            pk=self._pk(run.id),
            sk=META,
            entity="run",
            gsi1pk=f"RUNPL#{run.pipeline_id}",
            gsi1sk=key,
        )
        if RunStatus(run.status).active:
            attrs.update(gsi2pk="RUNACTIVE", gsi2sk=key)
        return attrs

    def create(self, run: Run) -> Run:
        """Raises Conflict if the id exists."""
        run = normalize(run)
        e = Expr()
        try:
            self._t.put(self._attrs(run), condition=_not_exists(e), expr=e)
        except ConditionFailed as err:
            raise Conflict(f"run {run.id!r} exists") from err
        return run

    def get(self, run_id: str) -> Run | None:
        item = self._t.get(self._pk(run_id), META)
        return None if item is None else load_record(Run, item)

    def update(self, run: Run, expected_version: int) -> Run:
        """Replace the run if its stored version is ``expected_version`` (stored with
        ``version`` = expected + 1). Raises NotFound, Conflict."""
        stored = normalize(run).model_copy(update={"version": expected_version + 1})
        e = Expr()
        condition = f"attribute_exists({e.n('pk')}) AND {e.n('version')} = {e.v(expected_version)}"
        try:
            self._t.put(self._attrs(stored), condition=condition, expr=e)
        except ConditionFailed as err:
            if err.old is None:
                raise NotFound(f"run {run.id!r} does not exist") from err
            raise Conflict(
                f"run {run.id!r} is at version {err.old.get('version')}, not {expected_version}"
            ) from err
        return stored

    def list(self, pipeline_id: str, *, limit: int = 100, cursor: str | None = None) -> Page[Run]:
        """The pipeline's runs, newest ``started_at`` first."""
        items, next_cursor = self._t.page(
            Query("GSI1", f"RUNPL#{pipeline_id}", forward=False),
            scope="runs",
            limit=limit,
            cursor=cursor,
        )
        return Page([load_record(Run, i) for i in items], next_cursor)

    def list_active(self) -> builtins.list[Run]:
        """Runs starting, running or stopping (any pipeline), oldest ``started_at`` first."""
        return [load_record(Run, i) for i in self._t.query_all(Query("GSI2", "RUNACTIVE"))]


# --------------------------------------------------------------------------- events


class DynamoEventStore:
    """:class:`aios.store.port.EventStore` on DynamoDB.

    Item ``EVENT#<id>`` / ``#META``, each index by ``<time>#<id>``: ``GSI1`` = a pipeline's
    events, ``GSI2`` = all events (one partition: about 1,000 writes/s, DynamoDB's
    per-partition ceiling; beyond that, shard the key), ``GSI3`` = a source's events,
    ``GSI4`` = a run's events.
    """

    def __init__(self, table: Table) -> None:
        self._t = table

    def put(self, event: EventRecord) -> bool:
        """Store the event unless its id is stored (``attribute_not_exists``); return
        whether it was new."""
        event = normalize(event)
        key = time_key(event.time, event.id)
        attrs = record_attrs(event)
        attrs.update(
            pk=f"EVENT#{event.id}",
            sk=META,
            entity="event",
            gsi1pk=f"EVTPL#{event.pipeline_id}",
            gsi1sk=key,
            gsi2pk="EVENTS",
            gsi2sk=key,
        )
        if event.source_id is not None:
            attrs.update(gsi3pk=f"EVTSRC#{event.source_id}", gsi3sk=key)
        if event.run_id is not None:
            attrs.update(gsi4pk=f"EVTRUN#{event.run_id}", gsi4sk=key)
        e = Expr()
        try:
            self._t.put(attrs, condition=_not_exists(e), expr=e)
        except ConditionFailed:
            return False
        return True

    def get(self, event_id: str) -> EventRecord | None:
        item = self._t.get(f"EVENT#{event_id}", META)
        return None if item is None else load_record(EventRecord, item)

    def acknowledge(self, event_id: str, *, by: str, at: datetime) -> EventRecord:
        """Mark acknowledged by ``by`` at ``at`` (condition: not acknowledged yet); an
        acknowledged event is returned unchanged. Raises NotFound."""
        at = utc(at, name="at")
        e = Expr()
        update = f"SET {e.n('acknowledged_by')} = {e.v(by)}, {e.n('acknowledged_at')} = {e.v(at)}"
        condition = f"attribute_exists({e.n('pk')}) AND {e.is_null('acknowledged_at')}"
        try:
            item = self._t.update(f"EVENT#{event_id}", META, update, e, condition=condition)
        except ConditionFailed as err:
            if err.old is None:
                raise NotFound(f"event {event_id!r} does not exist") from err
            return load_record(EventRecord, err.old)
        return load_record(EventRecord, item)

    def list(
        self, query: EventQuery | None = None, *, limit: int = 100, cursor: str | None = None
    ) -> Page[EventRecord]:
        """Events matching every given filter, newest ``time`` first (ties by id),
        ``since <= time < until``. The most selective given key picks the index (run,
        pipeline, source, else all); the other filters are FilterExpressions.
        Raises ValueError for a bad limit or cursor."""
        q = query or EventQuery()
        if q.run_id is not None:
            index, partition, keyed = "GSI4", f"EVTRUN#{q.run_id}", "run_id"
        elif q.pipeline_id is not None:
            index, partition, keyed = "GSI1", f"EVTPL#{q.pipeline_id}", "pipeline_id"
        elif q.source_id is not None:
            index, partition, keyed = "GSI3", f"EVTSRC#{q.source_id}", "source_id"
        else:
            index, partition, keyed = "GSI2", "EVENTS", ""
        e = Expr()
        filters = [
            f"{e.n(attr)} = {e.v(value)}"
            for attr, value in (
                ("pipeline_id", q.pipeline_id),
                ("run_id", q.run_id),
                ("type", q.type),
                ("source_id", q.source_id),
                ("severity", q.severity),
            )
            if value is not None and attr != keyed
        ]
        if q.acknowledged is True:
            filters.append(f"attribute_type({e.n('acknowledged_at')}, {e.v('S')})")
        elif q.acknowledged is False:
            filters.append(e.is_null("acknowledged_at")[1:-1])  # and_all parenthesises
        items, next_cursor = self._t.page(
            Query(
                index,
                partition,
                sort=time_range(q.since, q.until),
                expr=e,
                filter=and_all(filters),
                forward=False,
            ),
            scope="events",
            limit=limit,
            cursor=cursor,
        )
        return Page([load_record(EventRecord, i) for i in items], next_cursor)


# --------------------------------------------------------------------------- users


class DynamoUserStore:
    """:class:`aios.store.port.UserStore` on DynamoDB.

    Item ``USER#<id>`` / ``#META`` (``GSI1`` = all users by case-folded username, then id);
    the uniqueness item ``USERNAME#<case-folded username>`` / ``#META`` holds the user id,
    written with ``attribute_not_exists`` in the same transaction as the user, so usernames
    are unique and a lookup by username is two strongly consistent reads.
    """

    def __init__(self, table: Table) -> None:
        self._t = table

    @staticmethod
    def _pk(user_id: str) -> str:
        return f"USER#{user_id}"

    @staticmethod
    def _name_pk(username: str) -> str:
        return f"USERNAME#{username.casefold()}"

    def _attrs(self, user: User) -> dict[str, Any]:
        attrs = record_attrs(user)
        attrs.update(
            pk=self._pk(user.id),
            sk=META,
            entity="user",
            gsi1pk="USERS",
            gsi1sk=f"{user.username.casefold()}#{user.id}",
        )
        return attrs

    def _name_attrs(self, user: User) -> dict[str, Any]:
        return {
            "pk": self._name_pk(user.username),
            "sk": META,
            "entity": "username",
            "user_id": user.id,
        }

    def create(self, user: User) -> User:
        """Raises Conflict if the id or the username (case-insensitive) exists."""
        user = normalize(user)
        e1, e2 = Expr(), Expr()
        try:
            self._t.transact(
                [
                    self._t.tx_put(self._attrs(user), condition=_not_exists(e1), expr=e1),
                    self._t.tx_put(self._name_attrs(user), condition=_not_exists(e2), expr=e2),
                ]
            )
        except TransactionCanceled as err:
            if err.failed(0) or err.failed(1):
                raise Conflict(f"user {user.id!r} or username {user.username!r} exists") from err
            raise
        return user

    def get(self, user_id: str) -> User | None:
        item = self._t.get(self._pk(user_id), META)
        return None if item is None else load_record(User, item)

    def get_by_username(self, username: str) -> User | None:
        """Case-insensitive."""
        name = self._t.get(self._name_pk(username), META)
        if name is None:
            return None
        user = self.get(str(name["user_id"]))
        if user is None or user.username.casefold() != username.casefold():
            return None
        return user

    def update(self, user: User, expected_version: int) -> User:
        """Replace the user if its stored version is ``expected_version``; a new username
        moves its uniqueness item in the same transaction. Raises NotFound; Conflict on
        version, or if the new username is taken."""
        current = self.get(user.id)
        if current is None:
            raise NotFound(f"user {user.id!r} does not exist")
        if current.version != expected_version:
            raise Conflict(
                f"user {user.id!r} is at version {current.version}, not {expected_version}"
            )
        stored = normalize(user).model_copy(update={"version": expected_version + 1})
        e = Expr()
        condition = f"attribute_exists({e.n('pk')}) AND {e.n('version')} = {e.v(expected_version)}"
        actions = [self._t.tx_put(self._attrs(stored), condition=condition, expr=e)]
        renamed = current.username.casefold() != stored.username.casefold()
        if renamed:
            eo, en = Expr(), Expr()
            actions.append(
                self._t.tx_delete(
                    self._name_pk(current.username),
                    META,
                    condition=f"{eo.n('user_id')} = {eo.v(user.id)}",
                    expr=eo,
                )
            )
            actions.append(
                self._t.tx_put(self._name_attrs(stored), condition=_not_exists(en), expr=en)
            )
        try:
            self._t.transact(actions)
        except TransactionCanceled as err:
            if renamed and err.failed(2):
                raise Conflict(f"username {stored.username!r} is taken") from err
            if err.failed(0) or err.failed(1):
                if self.get(user.id) is None:
                    raise NotFound(f"user {user.id!r} does not exist") from err
                raise Conflict(
                    f"user {user.id!r} changed since version {expected_version}"
                ) from err
            raise
        return stored

    def delete(self, user_id: str) -> bool:
        """Remove the user and its username item (one transaction). True if it existed."""
        for _ in range(3):  # a concurrent rename moves the username item: read again
            current = self.get(user_id)
            if current is None:
                return False
            eu, en = Expr(), Expr()
            try:
                self._t.transact(
                    [
                        self._t.tx_delete(
                            self._pk(user_id),
                            META,
                            condition=f"{eu.n('version')} = {eu.v(current.version)}",
                            expr=eu,
                        ),
                        self._t.tx_delete(
                            self._name_pk(current.username),
                            META,
                            condition=f"{en.n('user_id')} = {en.v(user_id)}",
                            expr=en,
                        ),
                    ]
                )
            except TransactionCanceled as err:
                if err.failed(0) or err.failed(1):
                    continue
                raise
            return True
        raise Conflict(f"user {user_id!r} keeps changing; try again")

    def list(self, *, limit: int = 100, cursor: str | None = None) -> Page[User]:
        """By username (case-insensitive), then id."""
        items, next_cursor = self._t.page(
            Query("GSI1", "USERS"), scope="users", limit=limit, cursor=cursor
        )
        return Page([load_record(User, i) for i in items], next_cursor)

    def count(self) -> int:
        return self._t.count(Query("GSI1", "USERS"))


# --------------------------------------------------------------------------- refresh tokens


class DynamoRefreshTokenStore:
    """:class:`aios.store.port.RefreshTokenStore` on DynamoDB.

    Item ``REFRESH#<id>`` / ``#META`` (``GSI1`` = a family's tokens, ``GSI2`` = a user's
    tokens, by id), expiring by TTL a day after ``expires_at``; the item
    ``REFRESHHASH#<token_hash>`` / ``#META`` holds the token id, written in the same
    transaction (hashes are unique; lookup by hash is strongly consistent). A token is
    *live* while neither revoked nor replaced.
    """

    def __init__(self, table: Table) -> None:
        self._t = table

    @staticmethod
    def _pk(token_id: str) -> str:
        return f"REFRESH#{token_id}"

    @staticmethod
    def _hash_pk(token_hash: str) -> str:
        return f"REFRESHHASH#{token_hash}"

    def _put_actions(self, token: RefreshToken) -> builtins.list[dict[str, Any]]:
        expires = int((token.expires_at + REFRESH_TOKEN_TTL_GRACE).timestamp())
        attrs = record_attrs(token)
        attrs.update(
            pk=self._pk(token.id),
            sk=META,
            entity="refresh_token",
            gsi1pk=f"RTFAMILY#{token.family_id}",
            gsi1sk=token.id,
            gsi2pk=f"RTUSER#{token.user_id}",
            gsi2sk=token.id,
            **{TTL_ATTRIBUTE: expires},
        )
        pointer = {
            "pk": self._hash_pk(token.token_hash),
            "sk": META,
            "entity": "refresh_token_hash",
            "token_id": token.id,
            TTL_ATTRIBUTE: expires,
        }
        e1, e2 = Expr(), Expr()
        return [
            self._t.tx_put(attrs, condition=_not_exists(e1), expr=e1),
            self._t.tx_put(pointer, condition=_not_exists(e2), expr=e2),
        ]

    def put(self, token: RefreshToken) -> None:
        """Store a new token. Raises Conflict if its id or hash exists."""
        token = normalize(token)
        try:
            self._t.transact(self._put_actions(token))
        except TransactionCanceled as err:
            if err.failed(0) or err.failed(1):
                raise Conflict(f"refresh token {token.id!r} (or its hash) exists") from err
            raise

    def _get(self, token_id: str) -> RefreshToken | None:
        item = self._t.get(self._pk(token_id), META)
        return None if item is None else load_record(RefreshToken, item)

    def get_by_hash(self, token_hash: str) -> RefreshToken | None:
        pointer = self._t.get(self._hash_pk(token_hash), META)
        return None if pointer is None else self._get(str(pointer["token_id"]))

    def rotate(self, token_id: str, replacement: RefreshToken, *, at: datetime) -> bool:
        """Store ``replacement`` and mark ``token_id`` replaced by it, in one transaction
        conditioned on ``token_id`` being live; return whether it rotated (False: absent,
        revoked or replaced — reuse). Raises Conflict if the replacement's id or hash
        exists."""
        replacement = normalize(replacement)
        utc(at, name="at")
        e = Expr()
        condition = (
            f"attribute_exists({e.n('pk')}) AND {e.is_null('revoked_at')} AND "
            f"{e.is_null('replaced_by')}"
        )
        mark = self._t.tx_update(
            self._pk(token_id),
            META,
            f"SET {e.n('replaced_by')} = {e.v(replacement.id)}",
            e,
            condition=condition,
        )
        try:
            self._t.transact([mark, *self._put_actions(replacement)])
        except TransactionCanceled as err:
            if err.failed(0):
                return False
            if err.failed(1) or err.failed(2):
                raise Conflict(f"refresh token {replacement.id!r} (or its hash) exists") from err
            raise
        return True

    def _revoke(self, token_id: str, at: datetime) -> bool | None:
        """Revoke one token if not revoked; return whether it was live (None: it was
        revoked or absent already)."""
        e = Expr()
        try:
            item = self._t.update(
                self._pk(token_id),
                META,
                f"SET {e.n('revoked_at')} = {e.v(at)}",
                e,
                condition=f"attribute_exists({e.n('pk')}) AND {e.is_null('revoked_at')}",
            )
        except ConditionFailed:
            return None
        return item.get("replaced_by") is None

    def _revoke_all(self, query: Query, at: datetime) -> int:
        at = utc(at, name="at")
        live = 0
        for item in builtins.list(self._t.query_all(query)):
            if item.get("revoked_at") is None and self._revoke(str(item["id"]), at):
                live += 1
        return live

    def revoke(self, token_id: str, *, at: datetime) -> None:
        """Revoke the token (an absent or revoked one is left as it is)."""
        self._revoke(token_id, utc(at, name="at"))

    def revoke_family(self, family_id: str, *, at: datetime) -> int:
        """Revoke every token of the family; return how many were live."""
        return self._revoke_all(Query("GSI1", f"RTFAMILY#{family_id}"), at)

    def revoke_user(self, user_id: str, *, at: datetime) -> int:
        """Revoke every token of the user; return how many were live."""
        return self._revoke_all(Query("GSI2", f"RTUSER#{user_id}"), at)


# --------------------------------------------------------------------------- audit


class DynamoAuditStore:
    """:class:`aios.store.port.AuditStore` on DynamoDB.

    Item ``AUDIT#<id>`` / ``#META``, each index by ``<time>#<id>``: ``GSI1`` = all entries
    (one partition: audit is written per API write, far below its ceiling), ``GSI2`` = an
    actor's entries, ``GSI3`` = a target's entries.
    """

    def __init__(self, table: Table) -> None:
        self._t = table

    def append(self, entry: AuditEntry) -> None:
        """Store the entry (the same id twice keeps the first)."""
        entry = normalize(entry)
        key = time_key(entry.time, entry.id)
        attrs = record_attrs(entry)
        attrs.update(pk=f"AUDIT#{entry.id}", sk=META, entity="audit", gsi1pk="AUDIT", gsi1sk=key)
        if entry.actor_id is not None:
            attrs.update(gsi2pk=f"AUDITACTOR#{entry.actor_id}", gsi2sk=key)
        if entry.target_id is not None:
            attrs.update(gsi3pk=f"AUDITTARGET#{entry.target_id}", gsi3sk=key)
        e = Expr()
        try:
            self._t.put(attrs, condition=_not_exists(e), expr=e)
        except ConditionFailed:
            return

    def list(
        self,
        *,
        actor_id: str | None = None,
        target_type: str | None = None,
        target_id: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[AuditEntry]:
        """Entries matching the filters (``time >= since``), newest first (ties by id).
        Raises ValueError for a bad limit or cursor."""
        if target_id is not None:
            index, partition, keyed = "GSI3", f"AUDITTARGET#{target_id}", "target_id"
        elif actor_id is not None:
            index, partition, keyed = "GSI2", f"AUDITACTOR#{actor_id}", "actor_id"
        else:
            index, partition, keyed = "GSI1", "AUDIT", ""
        e = Expr()
        filters = [
            f"{e.n(attr)} = {e.v(value)}"
            for attr, value in (
                ("actor_id", actor_id),
                ("target_type", target_type),
                ("target_id", target_id),
            )
            if value is not None and attr != keyed
        ]
        items, next_cursor = self._t.page(
            Query(
                index,
                partition,
                sort=time_range(since, None),
                expr=e,
                filter=and_all(filters),
                forward=False,
            ),
            scope="audit",
            limit=limit,
            cursor=cursor,
        )
        return Page([load_record(AuditEntry, i) for i in items], next_cursor)


# --------------------------------------------------------------------------- settings


class DynamoSettingsStore:
    """:class:`aios.store.port.SettingsStore` on DynamoDB: item ``SETTING#<key>`` /
    ``#META`` with the JSON value in ``value`` (floats as numbers, nested)."""

    def __init__(self, table: Table) -> None:
        self._t = table

    def get(self, key: str) -> Any | None:
        """The value stored under ``key``, or None."""
        item = self._t.get(f"SETTING#{key}", META)
        return None if item is None else item.get("value")

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON-like: TypeError otherwise; ValueError for NaN) under
        ``key``."""
        self._t.put({"pk": f"SETTING#{key}", "sk": META, "entity": "setting", "value": value})


# --------------------------------------------------------------------------- secrets


class DynamoSecretStore:
    """:class:`aios.store.port.IntegrationSecretStore` on DynamoDB: items ``SECRETS`` /
    ``<name>`` (one partition: a site has tens of secrets), the value in ``value``.

    DynamoDB encrypts tables at rest; AWS Secrets Manager is the adapter meant for
    production in the cloud (the port is the same)."""

    PARTITION = "SECRETS"

    def __init__(self, table: Table) -> None:
        self._t = table

    @staticmethod
    def _info(item: dict[str, Any]) -> SecretInfo:
        return SecretInfo(
            name=str(item["sk"]),
            updated_at=from_iso(str(item["updated_at"])),
            updated_by=item.get("updated_by"),
            hint=item.get("hint"),
        )

    def get(self, name: str) -> str | None:
        item = self._t.get(self.PARTITION, name)
        return None if item is None else str(item["value"])

    def info(self, name: str) -> SecretInfo | None:
        item = self._t.get(self.PARTITION, name)
        return None if item is None else self._info(item)

    def put(self, name: str, value: str, *, by: str | None, at: datetime) -> SecretInfo:
        """Store (or replace) the secret. Raises ValueError (empty or too long)."""
        if not value:
            raise ValueError("a secret value cannot be empty")
        if len(value.encode("utf-8")) > MAX_SECRET_BYTES:
            raise ValueError(f"a secret value is at most {MAX_SECRET_BYTES} bytes")
        at = utc(at, name="at")
        info = SecretInfo(name=name, updated_at=at, updated_by=by, hint=secret_hint(value))
        self._t.put(
            {
                "pk": self.PARTITION,
                "sk": name,
                "entity": "secret",
                "value": value,
                "hint": info.hint,
                "updated_at": at,
                "updated_by": by,
            }
        )
        return info

    def delete(self, name: str) -> bool:
        return self._t.delete(self.PARTITION, name) is not None

    def list(self) -> builtins.list[SecretInfo]:
        return [self._info(i) for i in self._t.query_all(Query(None, self.PARTITION))]
