"""Device messages from AWS IoT Core topic rules into the fleet.

One handler per kind of topic, each the target of a topic rule whose SQL is::

    SELECT *, topic() AS mqtt_topic FROM 'dt/aios/+/heartbeat'     -> heartbeat
    SELECT *, topic() AS mqtt_topic FROM 'dt/aios/+/telemetry'     -> telemetry
    SELECT *, topic() AS mqtt_topic FROM 'dt/aios/+/events'        -> events
    SELECT *, topic() AS mqtt_topic FROM 'cmd/aios/+/res'          -> command_responses

The event is the message's JSON object plus ``mqtt_topic``. The handler removes
``mqtt_topic``, checks that the topic is of its kind and hands the message to
:func:`aios.fleet.ingest.handle_message`, the function the local MQTT ingester calls: same
validation, same rules. It returns the :class:`~aios.fleet.ingest.Outcome` as a dict
(``reason``, ``kind``, ``device_id``, ``detail``, ``accepted``, ``duplicate``).

- Idempotency: QoS 1 delivers at least once, and a rule action may be retried. Each message
  is processed once per ``(topic, message_id)``, with Powertools ``idempotent_function`` on
  the ``IdempotencyTable`` (``AIOS_IDEMPOTENCY_TABLE``); a repeated message returns the first
  outcome with ``duplicate: true``. A message without a ``message_id`` is refused by the
  validation without being recorded.
- A refused message (bad topic, invalid, unknown device…; one nested deeper than the API
  reads or larger than a message may be is refused before the idempotency layer, whose
  deep copy it would break) is logged with topic, reason,
  size and a detail made of field paths and error types — never the payload or a value
  from it — and counted (``RefusedMessages``); it is not raised: raising would only make
  the same message fail again. A store failure (``error``) raises :class:`IngestFailed`:
  the invocation fails, Lambda retries the (asynchronous) invocation and then hands the
  event to the function's on-failure destination (the rule's own error action covers a
  failed invoke only). No idempotency record is kept for a failed message.
- The events handler also hands device events to the runs waiting for them
  (``aios.cloud.dispatch.device_events_hook``, when that module is installed); the
  telemetry handler hands accepted telemetry to the runs whose sensor nodes listen to its
  device (``aios.cloud.dispatch.device_telemetry_hook``), inside the idempotent part: a
  redelivered message starts no second execution. An execution that could not be started
  fails the invocation (:class:`IngestFailed`), so the message is retried.
- Metrics (namespace ``AIOS``, dimension ``kind``): ``IngestedMessages``,
  ``RefusedMessages``, ``DuplicateMessages``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import idempotent_function
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord

from aios.api.body import MAX_BODY_DEPTH
from aios.cloud.services import cloud_services, environment_key
from aios.domain import json_depth
from aios.fleet.ingest import Outcome, handle_message
from aios.fleet.service import FleetService
from aios.messages import MAX_PAYLOAD_BYTES, TopicKind, parse_topic
from aios.services import Services
from functions._common import entry, idempotency_config, logger, metrics, persistence_layer

TOPIC_FIELD = "mqtt_topic"
"""The field the topic rules' SQL adds with the message's topic (``topic() AS mqtt_topic``)."""

IDEMPOTENCY_KEY = "[topic, payload.message_id]"
"""JMESPath of the idempotency key in the data given to the idempotent function."""


class IngestFailed(RuntimeError):
    """The message could not be stored (the store failed): the invocation fails so that the
    message is retried, then sent to the function's on-failure destination. The text names
    the error type only."""


def services() -> Services:
    """The ports of this container (built at the first message, per environment): the
    store, the IoT link (desired configurations) and the run dispatch hook."""
    return _services(environment_key())


@functools.cache
def _services(key: tuple[tuple[str, str], ...]) -> Services:
    built = cloud_services(with_launcher=False, with_jwt_secret=False)
    try:
        from aios.cloud.dispatch import device_events_hook
    except ModuleNotFoundError as err:
        if err.name not in ("aios.cloud.dispatch", "aios.cloud"):
            raise
    else:
        built.device_event_hooks.append(device_events_hook(built))
    return built


def telemetry_hook() -> Callable[[str, bytes], Any] | None:
    """The hook handing accepted telemetry to the runs whose sensor nodes listen to its
    device (``aios.cloud.dispatch.device_telemetry_hook``), or ``None`` when that module
    is not installed."""
    return _telemetry_hook(environment_key())


@functools.cache
def _telemetry_hook(key: tuple[tuple[str, str], ...]) -> Callable[[str, bytes], Any] | None:
    try:
        from aios.cloud.dispatch import device_telemetry_hook
    except ModuleNotFoundError as err:
        if err.name not in ("aios.cloud.dispatch", "aios.cloud"):
            raise
        return None
    return device_telemetry_hook(services())


def fleet() -> FleetService:
    """The fleet service of this container."""
    return _fleet(environment_key())


@functools.cache
def _fleet(key: tuple[tuple[str, str], ...]) -> FleetService:
    return FleetService(services())


def _as_dict(outcome: Outcome) -> dict[str, Any]:
    return {
        "reason": outcome.reason,
        "kind": outcome.kind.value if outcome.kind is not None else None,
        "device_id": outcome.device_id,
        "detail": outcome.detail,
        "accepted": outcome.accepted,
        "duplicate": False,
    }


def _store(topic: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Hand one message to the fleet; raise :class:`IngestFailed` when the store failed."""
    data = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    outcome = handle_message(fleet(), topic, data)
    if outcome.reason == "error":
        raise IngestFailed(f"{outcome.kind} from {outcome.device_id} not stored: {outcome.detail}")
    if outcome.accepted and outcome.kind is TopicKind.TELEMETRY:
        _to_runs(topic, data, outcome.device_id)
    return _as_dict(outcome)


def _to_runs(topic: str, data: bytes, device_id: str | None) -> None:
    """Hand accepted telemetry to the listening runs; raise :class:`IngestFailed` when an
    execution could not be started (the retry starts only what is missing: each event is
    claimed per run and node)."""
    hook = telemetry_hook()
    if hook is None:
        return
    try:
        hook(topic, data)
    except Exception as err:
        raise IngestFailed(
            f"telemetry of {device_id} not handed to its runs: {type(err).__name__}"
        ) from err


def _process(message: dict[str, Any]) -> dict[str, Any]:
    return _store(message["topic"], message["payload"])


def _mark_duplicate(response: Any, data_record: DataRecord) -> Any:
    """Powertools response hook: the outcome of a message processed before."""
    if isinstance(response, dict):
        return {**response, "duplicate": True}
    return response


def _idempotent_store(topic: str, payload: dict[str, Any], context: Any) -> dict[str, Any]:
    config = idempotency_config(IDEMPOTENCY_KEY)
    config.response_hook = _mark_duplicate
    config.register_lambda_context(context)
    process = idempotent_function(
        _process,
        data_keyword_argument="message",
        persistence_store=persistence_layer(),
        config=config,
    )
    result: dict[str, Any] = process(message={"topic": topic, "payload": payload})
    return result


def _refused(
    kind: TopicKind, reason: str, detail: str, device_id: str | None = None
) -> dict[str, Any]:
    return _as_dict(Outcome(reason, kind, device_id, detail))


def _size(event: Any) -> int:
    try:
        return len(json.dumps(event, separators=(",", ":")))
    except (TypeError, ValueError, RecursionError):
        return -1


def ingest(kind: TopicKind, event: Any, context: Any) -> dict[str, Any]:
    """Take one topic rule event of ``kind`` (see the module docstring).

    Returns:
        The outcome as a dict.

    Raises:
        IngestFailed: the store failed (the message is to be retried or dead-lettered).
    """
    metrics.add_dimension(name="kind", value=kind.value)
    topic: Any = None
    if not isinstance(event, dict):
        result = _refused(kind, "bad_json", "the rule's event is not a JSON object")
    else:
        payload = dict(event)
        topic = payload.pop(TOPIC_FIELD, None)
        result = _check_topic(kind, topic) or _check_shape(kind, topic, payload)
        if result is None:
            assert isinstance(topic, str)
            message_id = payload.get("message_id")
            if isinstance(message_id, str) and message_id:
                result = _idempotent_store(topic, payload, context)
            else:  # refused by the validation; nothing to remember
                result = _store(topic, payload)
    if result["duplicate"]:
        metrics.add_metric(name="DuplicateMessages", unit=MetricUnit.Count, value=1)
        logger.info(
            "duplicate message ignored",
            extra={"topic": topic, "device_id": result["device_id"], "reason": result["reason"]},
        )
    elif result["accepted"]:
        metrics.add_metric(name="IngestedMessages", unit=MetricUnit.Count, value=1)
    else:
        metrics.add_metric(name="RefusedMessages", unit=MetricUnit.Count, value=1)
        logger.warning(
            "message not stored",
            extra={
                "topic": topic if isinstance(topic, str) else None,
                "reason": result["reason"],
                "detail": result["detail"],
                "bytes": _size(event),
            },
        )
    return result


def _check_shape(kind: TopicKind, topic: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    """A refusal when the message nests deeper than the API reads (:data:`MAX_BODY_DEPTH`)
    or is larger than a message may be (:data:`MAX_PAYLOAD_BYTES`), else ``None``.

    Checked before the idempotent call: Powertools deep-copies the data it is given, and a
    deep enough message (900 levels fit in 2 KB) would raise ``RecursionError`` there, fail
    the invocation and be retried then dead-lettered. The depth is measured without
    recursion (:func:`aios.domain.json_depth`), and first: serialising it could recurse too.
    """
    device_id = parse_topic(topic)[0]
    depth = json_depth(payload)
    if depth > MAX_BODY_DEPTH:
        return _refused(
            kind,
            "invalid",
            f"the message nests objects and arrays {depth} levels deep; at most "
            f"{MAX_BODY_DEPTH} are read",
            device_id,
        )
    size = _size(payload)
    if size > MAX_PAYLOAD_BYTES:
        return _refused(kind, "too_large", f"{size} bytes > {MAX_PAYLOAD_BYTES}", device_id)
    return None


def _check_topic(kind: TopicKind, topic: Any) -> dict[str, Any] | None:
    """A refusal when ``topic`` is not a topic of ``kind``, else ``None``."""
    if not isinstance(topic, str) or not topic:
        return _refused(
            kind, "bad_topic", f"no '{TOPIC_FIELD}' in the event (the rule's SQL must add it)"
        )
    try:
        device_id, topic_kind = parse_topic(topic)
    except ValueError as err:
        return _refused(kind, "bad_topic", str(err)[:300])
    if topic_kind is not kind:
        return _refused(
            kind,
            "bad_topic",
            f"a {topic_kind.value} topic given to the {kind.value} ingest function",
            device_id,
        )
    return None


@entry
def heartbeat(event: Any, context: Any) -> dict[str, Any]:
    """``dt/aios/+/heartbeat``: the device is seen, its health recorded."""
    return ingest(TopicKind.HEARTBEAT, event, context)


@entry
def telemetry(event: Any, context: Any) -> dict[str, Any]:
    """``dt/aios/+/telemetry``: samples into the time series."""
    return ingest(TopicKind.TELEMETRY, event, context)


@entry
def events(event: Any, context: Any) -> dict[str, Any]:
    """``dt/aios/+/events``: device events stored, and handed to the runs waiting for them."""
    return ingest(TopicKind.EVENTS, event, context)


@entry
def command_responses(event: Any, context: Any) -> dict[str, Any]:
    """``cmd/aios/+/res``: the answer of a command request completes its command."""
    return ingest(TopicKind.COMMAND_RESPONSE, event, context)
