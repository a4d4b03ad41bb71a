"""Building blocks of the DynamoDB adapter (:mod:`aios.store.dynamodb`).

- :func:`table_definition` / :func:`create_table`: the one table (``pk``/``sk`` string keys,
  four overloaded global secondary indexes ``GSI1``…``GSI4`` keyed on ``gsiNpk``/``gsiNsk``,
  on-demand billing, TTL on ``expires_at_epoch``).
- Attribute codec: records are stored as top-level attributes (their pydantic fields) beside
  the key attributes. Floats become ``Decimal`` (DynamoDB numbers), nested in maps and lists
  too; times become the sortable ISO-8601 UTC strings of :mod:`aios.store.codec`; on the way
  out numbers become ``int`` when integral, else ``float``.
- :class:`Table`: single-item operations with conditions, transactions, and keyset paging
  whose cursor resumes right after the last item returned.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar, cast

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from pydantic import BaseModel

from aios.store.codec import check_limit, decode_cursor, encode_cursor, normalize, to_iso
from aios.store.port import Conflict, StoreError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

M = TypeVar("M", bound=BaseModel)

TTL_ATTRIBUTE = "expires_at_epoch"
"""Epoch seconds after which DynamoDB's TTL sweeper may delete the item."""

INDEX_NAMES: tuple[str, ...] = ("GSI1", "GSI2", "GSI3", "GSI4")
"""The overloaded global secondary indexes; ``GSIn`` is keyed on ``gsinpk``/``gsinsk``."""

BATCH_WRITE_MAX = 25
"""Items per BatchWriteItem request (DynamoDB's limit)."""

CREATE_TIMEOUT_SECONDS = 300.0
"""How long :func:`create_table` waits for the new table to become active."""

_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


def index_keys(index: str | None) -> tuple[str, str]:
    """The (partition, sort) key attribute names of the table (``None``) or of an index."""
    if index is None:
        return ("pk", "sk")
    if index not in INDEX_NAMES:
        raise ValueError(f"unknown index {index!r}; expected one of {INDEX_NAMES}")
    n = index[3:]
    return (f"gsi{n}pk", f"gsi{n}sk")


def table_definition(table_name: str) -> dict[str, Any]:
    """The ``CreateTable`` keyword arguments of the store's table.

    The single source of the table's shape: the deployment template is derived from (and
    checked against) it. Shape: ``{"TableName", "KeySchema", "AttributeDefinitions",
    "GlobalSecondaryIndexes", "BillingMode": "PAY_PER_REQUEST"}``; every key attribute is a
    string; every index projects all attributes. TTL is not part of ``CreateTable``: see
    :func:`create_table`.
    """
    if not table_name:
        raise ValueError("table_name must be a non-empty DynamoDB table name")
    attributes = ["pk", "sk"]
    indexes: list[dict[str, Any]] = []
    for name in INDEX_NAMES:
        hash_key, range_key = index_keys(name)
        attributes += [hash_key, range_key]
        indexes.append(
            {
                "IndexName": name,
                "KeySchema": [
                    {"AttributeName": hash_key, "KeyType": "HASH"},
                    {"AttributeName": range_key, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        )
    return {
        "TableName": table_name,
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"} for a in attributes],
        "GlobalSecondaryIndexes": indexes,
        "BillingMode": "PAY_PER_REQUEST",
    }


def create_table(client: DynamoDBClient, table_name: str) -> None:
    """Create the store's table (:func:`table_definition`), wait until it is active, and
    enable TTL on ``expires_at_epoch``. Raises botocore's ``ClientError`` (e.g.
    ``ResourceInUseException`` if the table exists); TimeoutError if the table is not
    active within :data:`CREATE_TIMEOUT_SECONDS`."""
    client.create_table(**table_definition(table_name))
    deadline = time.monotonic() + CREATE_TIMEOUT_SECONDS
    while client.describe_table(TableName=table_name)["Table"].get("TableStatus") != "ACTIVE":
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"table {table_name!r} not active after {CREATE_TIMEOUT_SECONDS:.0f} s"
            )
        time.sleep(1.0)
    client.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
    )


# --------------------------------------------------------------------------- codec


def to_dynamo(value: Any) -> Any:
    """``value`` as boto3's serializer takes it: floats → ``Decimal``, datetimes → sortable
    ISO strings, enums → their values, tuples → lists, recursively.

    Raises ValueError for NaN/infinite floats (DynamoDB numbers are finite), TypeError for
    types JSON has no form for (as :func:`json.dumps` does).
    """
    if value is None or isinstance(value, bool | int | Decimal):
        return value
    if isinstance(value, Enum):
        return to_dynamo(value.value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"DynamoDB cannot store the number {value!r}; use a finite value")
        return Decimal(repr(value))
    if isinstance(value, datetime):
        return to_iso(value)
    if isinstance(value, Mapping):
        return {str(k): to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_dynamo(v) for v in value]
    raise TypeError(f"cannot store a {type(value).__name__} in DynamoDB; use JSON values")


def from_dynamo(value: Any) -> Any:
    """The JSON-like value of a deserialized attribute: ``Decimal`` → ``int`` when its
    representation is integral, else ``float``; sets → sorted lists; recursively."""
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and exponent >= 0:
            return int(value)
        return float(value)
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(from_dynamo(v) for v in value)
    return value


def serialize(value: Any) -> dict[str, Any]:
    """One DynamoDB ``AttributeValue`` (``{"S": …}``, ``{"M": …}``…) of a Python value."""
    return cast("dict[str, Any]", _SERIALIZER.serialize(to_dynamo(value)))


def encode_item(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """A DynamoDB item of plain attributes."""
    return {k: serialize(v) for k, v in attrs.items()}


def decode_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """Plain attributes of a DynamoDB item."""
    return {k: from_dynamo(_DESERIALIZER.deserialize(v)) for k, v in item.items()}


def record_attrs(record: BaseModel) -> dict[str, Any]:
    """The stored attributes of a record: its fields, times in UTC (ValueError if naive)."""
    return normalize(record).model_dump(mode="python")


def load_record(model: type[M], attrs: Mapping[str, Any]) -> M:
    """The record of ``model`` whose fields are among ``attrs`` (key attributes ignored),
    with ``datetime.UTC`` times."""
    record = model.model_validate({f: attrs[f] for f in model.model_fields if f in attrs})
    changes = {
        f: v.astimezone(UTC)
        for f in model.model_fields
        if isinstance(v := getattr(record, f), datetime) and v.tzinfo is not UTC
    }
    return record.model_copy(update=changes) if changes else record


# --------------------------------------------------------------------------- expressions


class Expr:
    """Placeholders of one request's expressions: ``n("status")`` → ``#n0``, dotted paths
    map each part (``n("location.lat")`` → ``#n1.#n2``); ``v(3)`` → ``:v0``."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}
        self._values: dict[str, Any] = {}

    def n(self, path: str) -> str:
        parts = []
        for part in path.split("."):
            placeholder = self._names.get(part)
            if placeholder is None:
                placeholder = f"#n{len(self._names)}"
                self._names[part] = placeholder
            parts.append(placeholder)
        return ".".join(parts)

    def v(self, value: Any) -> str:
        placeholder = f":v{len(self._values)}"
        self._values[placeholder] = to_dynamo(value)
        return placeholder

    def is_null(self, attr: str) -> str:
        """Condition: ``attr`` is absent or stored as NULL (a ``None`` field)."""
        name = self.n(attr)
        return f"(attribute_not_exists({name}) OR attribute_type({name}, {self.v('NULL')}))"

    def kwargs(self, encode: Callable[[Any], Any]) -> dict[str, Any]:
        """``ExpressionAttributeNames``/``Values`` of the request, values passed through
        ``encode`` (the table's attribute-value form)."""
        out: dict[str, Any] = {}
        if self._names:
            out["ExpressionAttributeNames"] = {v: k for k, v in self._names.items()}
        if self._values:
            out["ExpressionAttributeValues"] = {k: encode(v) for k, v in self._values.items()}
        return out


def and_all(parts: Sequence[str]) -> str | None:
    """The conjunction of conditions, or None if there are none."""
    return " AND ".join(f"({p})" for p in parts) if parts else None


# --------------------------------------------------------------------------- errors


class ConditionFailed(Exception):
    """A conditional write was refused; ``old`` is the stored item (None: absent)."""

    def __init__(self, old: dict[str, Any] | None) -> None:
        super().__init__("the conditional request failed")
        self.old = old


class TransactionCanceled(Conflict):
    """A transaction was refused; ``reasons[i]`` is the code of its i-th action
    (``"None"``, ``"ConditionalCheckFailed"``, ``"TransactionConflict"``…). A Conflict: one
    not mapped by its caller (another transaction on the same items) is worth a retry."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(f"DynamoDB cancelled the transaction ({', '.join(reasons)}): retry")
        self.reasons = reasons

    def failed(self, index: int) -> bool:
        return index < len(self.reasons) and self.reasons[index] == "ConditionalCheckFailed"


def _error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


# --------------------------------------------------------------------------- table


@dataclass(frozen=True)
class SortRange:
    """A sort-key condition: ``lo <= sk <= hi`` (either side optional), or ``begins_with``."""

    lo: str | None = None
    hi: str | None = None
    prefix: str | None = None


@dataclass
class Query:
    """One keyed query: partition ``partition`` of ``index`` (None: the table), an optional
    sort-key range and filter (written with ``expr``'s placeholders)."""

    index: str | None
    partition: str
    sort: SortRange = field(default_factory=SortRange)
    expr: Expr = field(default_factory=Expr)
    filter: str | None = None
    forward: bool = True

    @property
    def empty(self) -> bool:
        """Whether the sort-key range is empty (DynamoDB refuses ``BETWEEN`` of a higher
        lower bound instead of returning nothing)."""
        s = self.sort
        return s.lo is not None and s.hi is not None and s.lo > s.hi

    def kwargs(self, table_name: str, encode: Callable[[Any], Any]) -> dict[str, Any]:
        """The Query request (values in ``encode``'s attribute-value form)."""
        hash_key, range_key = index_keys(self.index)
        e = self.expr
        key = f"{e.n(hash_key)} = {e.v(self.partition)}"
        s = self.sort
        if s.prefix is not None:
            key += f" AND begins_with({e.n(range_key)}, {e.v(s.prefix)})"
        elif s.lo is not None and s.hi is not None:
            key += f" AND {e.n(range_key)} BETWEEN {e.v(s.lo)} AND {e.v(s.hi)}"
        elif s.lo is not None:
            key += f" AND {e.n(range_key)} >= {e.v(s.lo)}"
        elif s.hi is not None:
            key += f" AND {e.n(range_key)} <= {e.v(s.hi)}"
        out: dict[str, Any] = {
            "TableName": table_name,
            "KeyConditionExpression": key,
            "ScanIndexForward": self.forward,
        }
        if self.index is not None:
            out["IndexName"] = self.index
        else:
            out["ConsistentRead"] = True
        if self.filter:
            out["FilterExpression"] = self.filter
        out.update(e.kwargs(encode))
        return out


class Table:
    """The store's table through a DynamoDB client; values in and out are plain Python
    (see :func:`to_dynamo` / :func:`from_dynamo`).

    ``python_values``: the client is a resource's (``resource.meta.client``), which takes and
    returns Python values itself; otherwise it is a low-level client taking and returning
    typed attribute values (``{"S": …}``).
    """

    def __init__(self, client: DynamoDBClient, name: str, *, python_values: bool = False) -> None:
        self.client = client
        self.name = name
        self._python_values = python_values

    # ----------------------------------------------------------------- codec

    def encode(self, value: Any) -> Any:
        """One value in the client's attribute-value form."""
        return to_dynamo(value) if self._python_values else serialize(value)

    def _encode_item(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        return {k: self.encode(v) for k, v in attrs.items()}

    def _decode_item(self, item: Mapping[str, Any]) -> dict[str, Any]:
        if self._python_values:
            return {k: from_dynamo(v) for k, v in item.items()}
        return decode_item(item)

    # ----------------------------------------------------------------- single items

    def key(self, pk: str, sk: str) -> dict[str, Any]:
        return {"pk": self.encode(pk), "sk": self.encode(sk)}

    def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        """The item (strongly consistent read), or None."""
        kwargs = {"TableName": self.name, "Key": self.key(pk, sk), "ConsistentRead": True}
        resp = self._call("get_item", kwargs)
        item = resp.get("Item")
        return self._decode_item(item) if item else None

    def put(
        self, attrs: Mapping[str, Any], *, condition: str | None = None, expr: Expr | None = None
    ) -> None:
        """Write the whole item. Raises ConditionFailed (with the stored item)."""
        kwargs: dict[str, Any] = {"TableName": self.name, "Item": self._encode_item(attrs)}
        self._conditional(kwargs, condition, expr)
        self._call("put_item", kwargs)

    def update(
        self,
        pk: str,
        sk: str,
        update: str,
        expr: Expr,
        *,
        condition: str | None = None,
    ) -> dict[str, Any]:
        """Apply ``update`` (an UpdateExpression); return the item after it.
        Raises ConditionFailed (with the stored item)."""
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "Key": self.key(pk, sk),
            "UpdateExpression": update,
            "ReturnValues": "ALL_NEW",
        }
        self._conditional(kwargs, condition, expr)
        resp = self._call("update_item", kwargs)
        return self._decode_item(resp["Attributes"])

    def delete(
        self, pk: str, sk: str, *, condition: str | None = None, expr: Expr | None = None
    ) -> dict[str, Any] | None:
        """Delete the item; return it as it was (None: it did not exist).
        Raises ConditionFailed (with the stored item)."""
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "Key": self.key(pk, sk),
            "ReturnValues": "ALL_OLD",
        }
        self._conditional(kwargs, condition, expr)
        resp = self._call("delete_item", kwargs)
        old = resp.get("Attributes")
        return self._decode_item(old) if old else None

    def _conditional(
        self, kwargs: dict[str, Any], condition: str | None, expr: Expr | None
    ) -> None:
        if condition is not None:
            kwargs["ConditionExpression"] = condition
            kwargs["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        if expr is not None:
            kwargs.update(expr.kwargs(self.encode))

    def _call(self, operation: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Call the client's ``operation`` (e.g. ``"put_item"``), translating its errors:
        ConditionFailed, TransactionCanceled, ValueError for a request DynamoDB finds invalid
        (e.g. an item over 400 KB), StoreError for the rest (throttled after retries, no
        table…)."""
        try:
            resp: dict[str, Any] = getattr(self.client, operation)(**kwargs)
        except ClientError as err:
            code = _error_code(err)
            response = cast("dict[str, Any]", err.response)
            message = str(response.get("Error", {}).get("Message", ""))
            if code == "ConditionalCheckFailedException":
                # Error bodies are not transformed, even by a resource's client: typed form.
                old = response.get("Item")
                raise ConditionFailed(decode_item(old) if old else None) from err
            if code == "TransactionCanceledException":
                reasons: list[dict[str, Any]] = response.get("CancellationReasons", [])
                raise TransactionCanceled([str(r.get("Code", "None")) for r in reasons]) from err
            if code == "ValidationException":
                raise ValueError(f"DynamoDB refused the request: {message}") from err
            raise StoreError(f"DynamoDB {operation} failed: {code}: {message}") from err
        return resp

    # ----------------------------------------------------------------- transactions

    def tx_put(
        self, attrs: Mapping[str, Any], *, condition: str | None = None, expr: Expr | None = None
    ) -> dict[str, Any]:
        """A TransactWriteItems ``Put`` action."""
        action: dict[str, Any] = {"TableName": self.name, "Item": self._encode_item(attrs)}
        self._tx_conditional(action, condition, expr)
        return {"Put": action}

    def tx_update(
        self, pk: str, sk: str, update: str, expr: Expr, *, condition: str | None = None
    ) -> dict[str, Any]:
        """A TransactWriteItems ``Update`` action."""
        action: dict[str, Any] = {
            "TableName": self.name,
            "Key": self.key(pk, sk),
            "UpdateExpression": update,
        }
        self._tx_conditional(action, condition, expr)
        return {"Update": action}

    def tx_delete(
        self, pk: str, sk: str, *, condition: str | None = None, expr: Expr | None = None
    ) -> dict[str, Any]:
        """A TransactWriteItems ``Delete`` action."""
        action: dict[str, Any] = {"TableName": self.name, "Key": self.key(pk, sk)}
        self._tx_conditional(action, condition, expr)
        return {"Delete": action}

    def _tx_conditional(
        self, action: dict[str, Any], condition: str | None, expr: Expr | None
    ) -> None:
        if condition is not None:
            action["ConditionExpression"] = condition
        if expr is not None:
            action.update(expr.kwargs(self.encode))

    def transact(self, actions: Sequence[dict[str, Any]]) -> None:
        """Apply all actions or none. Raises TransactionCanceled with per-action reasons."""
        self._call("transact_write_items", {"TransactItems": list(actions)})

    # ----------------------------------------------------------------- batches

    def batch_put(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Write items unconditionally, 25 per request, retrying unprocessed ones.
        Items of one request must have distinct keys (the caller deduplicates)."""
        self._batch([{"PutRequest": {"Item": self._encode_item(a)}} for a in items])

    def batch_delete(self, keys: Sequence[tuple[str, str]]) -> None:
        """Delete items by (pk, sk), 25 per request, retrying unprocessed ones."""
        self._batch([{"DeleteRequest": {"Key": self.key(pk, sk)}} for pk, sk in keys])

    def _batch(self, requests: list[dict[str, Any]]) -> None:
        for start in range(0, len(requests), BATCH_WRITE_MAX):
            pending: list[dict[str, Any]] = requests[start : start + BATCH_WRITE_MAX]
            delay = 0.05
            while pending:
                kwargs: dict[str, Any] = {"RequestItems": {self.name: pending}}
                resp = self._call("batch_write_item", kwargs)
                pending = list(resp.get("UnprocessedItems", {}).get(self.name, []))
                if pending:
                    # Throttled: back off exponentially (AWS SDK guidance for BatchWriteItem).
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)

    # ----------------------------------------------------------------- queries

    def query_all(self, query: Query, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every item of the query, page after page (``page_size``: items per request)."""
        if query.empty:
            return
        kwargs = query.kwargs(self.name, self.encode)
        if page_size is not None:
            kwargs["Limit"] = page_size
        while True:
            resp = self._call("query", kwargs)
            for item in resp.get("Items", []):
                yield self._decode_item(item)
            last = resp.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

    def count(self, query: Query) -> int:
        """How many items the query matches."""
        if query.empty:
            return 0
        kwargs = query.kwargs(self.name, self.encode)
        kwargs["Select"] = "COUNT"
        total = 0
        while True:
            resp = self._call("query", kwargs)
            total += int(resp.get("Count", 0))
            last = resp.get("LastEvaluatedKey")
            if not last:
                return total
            kwargs["ExclusiveStartKey"] = last

    def page(
        self, query: Query, *, scope: str, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Up to ``limit`` items from after ``cursor``, and the cursor of the next page
        (None: this is the last).

        With a filter, DynamoDB may return fewer items than asked per request; this keeps
        querying until ``limit`` items (plus one, to know whether more follow) or the end.
        The cursor is the key of the last item *returned*, so the next page resumes right
        after it (not after the last key DynamoDB evaluated, which would skip items).
        Raises ValueError for a bad limit or a cursor of another list.
        """
        check_limit(limit)
        if query.empty:
            return [], None
        key_names = {"pk", "sk", *(index_keys(query.index) if query.index else ())}
        full_scope = f"dynamodb:{scope}:{query.index or 'table'}:{query.partition}"
        kwargs = query.kwargs(self.name, self.encode)
        if cursor is not None:
            kwargs["ExclusiveStartKey"] = self._start_key(cursor, full_scope, key_names)
        want = limit + 1
        found: list[dict[str, Any]] = []
        while len(found) < want:
            if query.filter is None:
                kwargs["Limit"] = want - len(found)
            resp = self._call("query", kwargs)
            for item in resp.get("Items", []):
                found.append(self._decode_item(item))
                if len(found) == want:
                    break
            last = resp.get("LastEvaluatedKey")
            if not last:
                break
            kwargs["ExclusiveStartKey"] = last
        items = found[:limit]
        next_cursor = None
        if len(found) > limit:
            last_item = items[-1]
            next_cursor = encode_cursor(full_scope, {k: last_item[k] for k in sorted(key_names)})
        return items, next_cursor

    def _start_key(self, cursor: str, scope: str, key_names: set[str]) -> dict[str, Any]:
        key = decode_cursor(cursor, scope)
        if (
            not isinstance(key, dict)
            or set(key) != key_names
            or not all(isinstance(v, str) for v in key.values())
        ):
            raise ValueError(
                "invalid cursor: pass the next_cursor of the previous page of the same list "
                "unchanged"
            )
        return {k: self.encode(v) for k, v in key.items()}
