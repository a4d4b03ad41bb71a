"""The event tier's state store in the cloud: :class:`aios.events.state.StateStore` on the
service's DynamoDB table (:mod:`aios.store.dynamodb`).

Items: ``pk = STATE#<namespace>``, ``sk = <key>``; the value is kept as JSON text in
``value`` (so any JSON value round-trips exactly, floats included), with a revision
counter ``rev`` and, when the value expires, the table's TTL attribute
``expires_at_epoch`` (epoch seconds). DynamoDB's TTL sweeper deletes expired items
eventually (typically within days), so every read and every conditional write also treats
an item whose ``expires_at_epoch`` has passed as absent.

Writes that decide something are conditional: :meth:`DynamoStateStore.put_if_absent` is
one ``PutItem`` with ``attribute_not_exists(pk) OR expires_at_epoch <= now``;
:meth:`DynamoStateStore.update` reads the item, computes the new value and writes it on
condition that ``rev`` did not move (optimistic concurrency), retrying on a conflict. Two
Lambda invocations racing on a key therefore cannot both win.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import ClientError

from aios.store._dynamo_base import TTL_ATTRIBUTE

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

PREFIX = "STATE#"
"""Partition-key prefix of state items (beside the store's own entity prefixes)."""

UPDATE_TIMEOUT_SECONDS = 20.0
"""How long :meth:`DynamoStateStore.update` keeps trying its conditional write before giving
up (many writers on one key take turns; each turn is one read and one write)."""

BACKOFF_BASE_SECONDS = 0.002
BACKOFF_CAP_SECONDS = 0.05
"""After a lost race, :meth:`DynamoStateStore.update` waits a random time up to
``min(cap, base × 2^attempt)`` ("full jitter", AWS Architecture Blog, *Exponential Backoff
and Jitter*), so writers racing on one key spread out instead of colliding again."""

Clock = Callable[[], float]


class StateConflict(RuntimeError):
    """A key kept changing under :meth:`DynamoStateStore.update`."""


def _conditional_failed(err: ClientError) -> bool:
    return err.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _expiry(now: float, ttl_seconds: float | None) -> int | None:
    if ttl_seconds is None:
        return None
    if not math.isfinite(ttl_seconds) or ttl_seconds <= 0:
        raise ValueError(
            f"ttl_seconds must be a positive number of seconds (None: never expires), "
            f"got {ttl_seconds}"
        )
    # rounded up: a value never expires before its TTL has passed
    return math.ceil(now + ttl_seconds)


class DynamoStateStore:
    """Namespaced JSON values with expiry in the service's DynamoDB table.

    Args:
        table_name: the DataTable (:func:`aios.store.dynamodb.table_definition`).
        client: a boto3 DynamoDB client (default: one from the AWS environment).
        clock: epoch seconds (``time.time``; tests pass their own).

    Raises:
        ValueError: empty table name; a TTL that is not a positive finite number.
        botocore.exceptions.ClientError: DynamoDB errors other than a refused condition.
    """

    def __init__(
        self, table_name: str, *, client: DynamoDBClient | None = None, clock: Clock = time.time
    ) -> None:
        if not table_name:
            raise ValueError("table_name must name the DynamoDB table of the state store")
        self.table_name = table_name
        self.client = client if client is not None else boto3.client("dynamodb")
        self._clock = clock

    @staticmethod
    def _key(namespace: str, key: str) -> dict[str, Any]:
        return {"pk": {"S": PREFIX + namespace}, "sk": {"S": key}}

    def _read(self, namespace: str, key: str, now: float) -> tuple[Any, int] | None:
        """Return ``(value, rev)`` of a live item, or ``None`` when absent or expired."""
        item = self.client.get_item(
            TableName=self.table_name, Key=self._key(namespace, key), ConsistentRead=True
        ).get("Item")
        if item is None:
            return None
        expires = item.get(TTL_ATTRIBUTE)
        if expires is not None and float(expires["N"]) <= now:
            return None
        return json.loads(item["value"]["S"]), int(item.get("rev", {"N": "0"})["N"])

    def _item(
        self, namespace: str, key: str, value: Any, *, rev: int, now: float, ttl: float | None
    ) -> dict[str, Any]:
        item: dict[str, Any] = {
            **self._key(namespace, key),
            "entity": {"S": "state"},
            "value": {"S": json.dumps(value, allow_nan=False)},
            "rev": {"N": str(rev)},
        }
        expires = _expiry(now, ttl)
        if expires is not None:
            item[TTL_ATTRIBUTE] = {"N": str(expires)}
        return item

    def get(self, namespace: str, key: str) -> Any | None:
        """Return the value, or ``None`` when absent or expired."""
        found = self._read(namespace, key, self._clock())
        return None if found is None else found[0]

    def put(self, namespace: str, key: str, value: Any, ttl_seconds: float | None = None) -> None:
        """Store ``value`` (unconditionally); it expires ``ttl_seconds`` from now."""
        now = self._clock()
        item = self._item(namespace, key, value, rev=0, now=now, ttl=ttl_seconds)
        self.client.update_item(
            TableName=self.table_name,
            Key=self._key(namespace, key),
            UpdateExpression="SET #v = :v, entity = :e, rev = if_not_exists(rev, :zero) + :one"
            + (", #x = :x" if TTL_ATTRIBUTE in item else " REMOVE #x"),
            ExpressionAttributeNames={"#v": "value", "#x": TTL_ATTRIBUTE},
            ExpressionAttributeValues={
                ":v": item["value"],
                ":e": item["entity"],
                ":zero": {"N": "0"},
                ":one": {"N": "1"},
                **({":x": item[TTL_ATTRIBUTE]} if TTL_ATTRIBUTE in item else {}),
            },
        )

    def put_if_absent(
        self, namespace: str, key: str, value: Any, ttl_seconds: float | None = None
    ) -> bool:
        """Store ``value`` only if the key is absent or expired; return whether it was stored."""
        now = self._clock()
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=self._item(namespace, key, value, rev=1, now=now, ttl=ttl_seconds),
                ConditionExpression="attribute_not_exists(pk) OR #x <= :now",
                ExpressionAttributeNames={"#x": TTL_ATTRIBUTE},
                ExpressionAttributeValues={":now": {"N": repr(float(now))}},
            )
        except ClientError as err:
            if _conditional_failed(err):
                return False
            raise
        return True

    def update(
        self,
        namespace: str,
        key: str,
        fn: Callable[[Any | None], Any],
        ttl_seconds: float | None = None,
    ) -> Any:
        """Atomically replace the value with ``fn(old)`` (``old`` is ``None`` if absent or
        expired); ``fn`` may be called again when another writer got there first.

        Returns:
            The new value.

        Raises:
            StateConflict: the key kept changing for :data:`UPDATE_TIMEOUT_SECONDS`.
        """
        deadline = time.monotonic() + UPDATE_TIMEOUT_SECONDS
        attempt = 0
        while attempt == 0 or time.monotonic() < deadline:
            if attempt:
                cap = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** min(attempt, 16))
                time.sleep(random.uniform(0, cap))
            attempt += 1
            now = self._clock()
            found = self._read(namespace, key, now)
            old, rev = (None, 0) if found is None else found
            new = fn(old)
            item = self._item(namespace, key, new, rev=rev + 1, now=now, ttl=ttl_seconds)
            if found is None:
                condition = "attribute_not_exists(pk) OR #x <= :now"
                values: dict[str, Any] = {":now": {"N": repr(float(now))}}
                names = {"#x": TTL_ATTRIBUTE}
            else:
                condition = "#r = :rev"
                values = {":rev": {"N": str(rev)}}
                names = {"#r": "rev"}
            try:
                self.client.put_item(
                    TableName=self.table_name,
                    Item=item,
                    ConditionExpression=condition,
                    ExpressionAttributeValues=values,
                    ExpressionAttributeNames=names,
                )
            except ClientError as err:
                if _conditional_failed(err):
                    continue
                raise
            return new
        raise StateConflict(
            f"state {namespace!r}/{key!r} kept changing; gave up after {attempt} attempts in "
            f"{UPDATE_TIMEOUT_SECONDS:g} s"
        )

    def delete(self, namespace: str, key: str) -> None:
        """Remove the key (no error if absent)."""
        self.client.delete_item(TableName=self.table_name, Key=self._key(namespace, key))
