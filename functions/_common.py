"""What every Lambda entry point of ``functions/`` shares: Powertools logger, metrics and
tracer, the idempotency persistence layer, and :func:`entry`, the decorator of handlers.

- ``logger``: structured JSON logs (service ``POWERTOOLS_SERVICE_NAME``, default
  ``aios-cloud``; in Lambda the library's ``aios.*`` loggers write through it too).
  Never log a token, a password or a message's payload values.
- ``metrics``: CloudWatch embedded metric format, namespace ``POWERTOOLS_METRICS_NAMESPACE``
  (default ``AIOS``); flushed by :func:`entry` at the end of each invocation.
- ``tracer``: AWS X-Ray (off outside Lambda, and with ``POWERTOOLS_TRACE_DISABLED=true``).
- :func:`persistence_layer`: the Powertools ``DynamoDBPersistenceLayer`` on the table named by
  ``AIOS_IDEMPOTENCY_TABLE`` (partition key ``id``, TTL attribute ``expiration``), one per
  container and table name.
- :func:`idempotency_config`: an ``IdempotencyConfig`` keyed on a JMESPath of the data.

Typical use::

    from functions._common import entry, idempotency_config, persistence_layer

    @entry
    def handler(event, context): ...
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

from aios.cloud import env

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "aios-cloud"
if SERVICE.split(".")[0] == "aios":
    # Powertools names its Python logger after the service: "aios" is the library's own
    # logger namespace, whose level and handlers must stay the library's.
    SERVICE = "aios-cloud"
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "AIOS"

IDEMPOTENCY_EXPIRES_SECONDS = 24 * 3600
"""How long a processed key is remembered (IoT Core redelivers QoS 1 messages within
minutes; Step Functions retries within the execution): one day covers both."""

# A function that adds no metric of its own (the API) is normal, not worth a warning.
warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)

# botocore's DEBUG lines show whole requests (secret values, tokens): the AWS SDK logs
# warnings and errors only, whatever level the root logger gets.
for _name in ("botocore", "boto3", "urllib3"):
    if logging.getLogger(_name).level < logging.INFO:
        logging.getLogger(_name).setLevel(logging.WARNING)

if os.environ.get("LAMBDA_TASK_ROOT"):
    # In Lambda, the library's loggers (aios.*) write structured JSON like ``logger``.
    logging.getLogger("aios")  # registered, so that its configuration can be copied
    copy_config_to_registered_loggers(source_logger=logger, include={"aios"})


def idempotency_config(
    event_key_jmespath: str = "",
    *,
    expires_after_seconds: int = IDEMPOTENCY_EXPIRES_SECONDS,
    raise_on_no_idempotency_key: bool = True,
) -> IdempotencyConfig:
    """An idempotency configuration whose key is ``event_key_jmespath`` of the data
    (``"message_id"``; empty: the whole data is hashed).

    Args:
        event_key_jmespath: JMESPath of the idempotency key in the decorated data.
        expires_after_seconds: how long a completed record is kept (seconds).
        raise_on_no_idempotency_key: a data without the key raises
            ``IdempotencyKeyError`` instead of running without idempotency.
    """
    return IdempotencyConfig(
        event_key_jmespath=event_key_jmespath,
        expires_after_seconds=expires_after_seconds,
        raise_on_no_idempotency_key=raise_on_no_idempotency_key and bool(event_key_jmespath),
    )


@functools.cache
def _persistence_layer(
    table_name: str, region: str | None, purpose: str
) -> DynamoDBPersistenceLayer:
    return DynamoDBPersistenceLayer(table_name=table_name)


def persistence_layer(purpose: str = "") -> DynamoDBPersistenceLayer:
    """The idempotency persistence layer on ``AIOS_IDEMPOTENCY_TABLE``: one per container,
    table, region and ``purpose``. Powertools configures a layer once, with the first
    configuration (key expression) it is used with: each idempotent function of a module
    needs a purpose of its own.

    Raises:
        RuntimeError: ``AIOS_IDEMPOTENCY_TABLE`` is not set.
    """
    table = os.environ.get(env.IDEMPOTENCY_TABLE)
    if not table:
        raise RuntimeError(f"{env.IDEMPOTENCY_TABLE} is not set: the idempotency table's name")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return _persistence_layer(table, region, purpose)


@functools.cache
def _idempotent(
    fn: Callable[..., Any], keyword: str, key: str, table: str, region: str | None
) -> tuple[Callable[..., Any], IdempotencyConfig]:
    config = idempotency_config(key)
    decorated = idempotent_function(
        data_keyword_argument=keyword,
        config=config,
        persistence_store=_persistence_layer(table, region, f"{fn.__module__}.{fn.__qualname__}"),
    )(fn)
    return decorated, config


def idempotent(
    fn: Callable[..., Any], *, keyword: str, key: str, context: Any
) -> Callable[..., Any]:
    """``fn`` made idempotent on the JMESPath ``key`` of its keyword argument ``keyword``
    (Powertools ``idempotent_function``, records in ``AIOS_IDEMPOTENCY_TABLE`` kept
    :data:`IDEMPOTENCY_EXPIRES_SECONDS`; only successful results are kept, so a failed call
    runs again), with the invocation's Lambda ``context`` registered (remaining time).

    Raises:
        RuntimeError: ``AIOS_IDEMPOTENCY_TABLE`` is not set.
    """
    table = os.environ.get(env.IDEMPOTENCY_TABLE)
    if not table:
        raise RuntimeError(f"{env.IDEMPOTENCY_TABLE} is not set: the idempotency table's name")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    decorated, config = _idempotent(fn, keyword, key, table, region)
    config.register_lambda_context(context)
    return decorated


class _LocalContext:
    """Stand-in Lambda context when a handler is called directly (tests, scripts)."""

    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")
    function_version = "$LATEST"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:local"
    aws_request_id = "local"
    log_group_name = "local"
    log_stream_name = "local"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 900_000


def entry(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Decorate a Lambda handler ``fn(event, context)``: Lambda context in every log line
    (state cleared per invocation), metrics flushed after each invocation (with a
    ``ColdStart`` metric), an X-Ray subsegment around the call. A ``None`` context (a direct
    call) is replaced by a stand-in."""
    wrapped = tracer.capture_lambda_handler(capture_response=False)(
        metrics.log_metrics(capture_cold_start_metric=True, raise_on_empty_metrics=False)(
            logger.inject_lambda_context(clear_state=True, log_event=False)(fn)
        )
    )

    @functools.wraps(fn)
    def handler(event: Any, context: Any = None) -> Any:
        return wrapped(event, context if context is not None else _LocalContext())

    return handler
