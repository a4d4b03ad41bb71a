"""The pipeline task functions: one Lambda function per event-tier node type (logical id
``<Type>V<major>Function``), the node type in ``AIOS_NODE_TYPE``, all with this handler.

The event is the payload of a compiled Task (:mod:`aios.cloud.tasks`); the result is the
node's JSON result. A node's ``TaskError`` is raised as an exception named by its ASL error
(``Aios.Transient`` / ``Aios.Permanent``), which Lambda reports as ``errorType`` and the
state machine's ``Retry`` and ``Catch`` match.

Idempotent: a call repeated with the same execution, node, phase and event (Lambda's own
retry of an invocation, a redelivered call) returns the first call's result without acting
again (Powertools idempotency on ``AIOS_IDEMPOTENCY_TABLE``). Failures are not remembered,
so the state machine's ``Retry`` runs the node again.
"""

from __future__ import annotations

import contextvars
import functools
import os
from typing import Any

from aios.cloud import env
from aios.cloud.launcher import table_from_url
from aios.cloud.services import cloud_services, environment_key
from aios.cloud.tasks import TaskRunner, cloud_task_services
from functions._common import entry, idempotent, logger


@functools.cache
def _runner(_key: tuple[tuple[str, str], ...]) -> TaskRunner:
    from aios.nodes import CATALOG

    type_id = os.environ.get(env.NODE_TYPE, "")
    node_type = CATALOG.get(type_id)
    if node_type is None or node_type.event_role is None:
        raise RuntimeError(f"{env.NODE_TYPE}={type_id!r} is not an event-tier node type")
    services = cloud_services(with_launcher=False, with_jwt_secret=False)
    task_services, recorder = cloud_task_services(
        services,
        table=table_from_url(services.settings.database_url),
        bucket=os.environ.get(env.MEDIA_BUCKET) or None,
    )
    return TaskRunner(node_type, task_services, recorder)


def runner() -> TaskRunner:
    """The container's task runner (one per environment)."""
    return _runner(environment_key())


_invocation: contextvars.ContextVar[Any] = contextvars.ContextVar("invocation")
"""The Lambda context of the invocation being served (its remaining time bounds the waits
of fleet commands)."""


def _remaining_seconds() -> float:
    context = _invocation.get(None)
    getter = getattr(context, "get_remaining_time_in_millis", None)
    return float(getter()) / 1000 if callable(getter) else float("inf")


def _run(payload: dict[str, Any]) -> Any:
    logger.info(
        "pipeline task",
        extra={"node_id": payload.get("node_id"), "node_type": payload.get("node_type")},
    )
    return runner().run(payload, remaining_seconds=_remaining_seconds)


@entry
def handler(event: dict[str, Any], context: Any) -> Any:
    """Run one Task call of the function's node type (see the module doc)."""
    run = idempotent(
        _run, keyword="payload", key="[execution, node_id, phase, event]", context=context
    )
    token = _invocation.set(context)
    try:
        return run(payload=event)
    finally:
        _invocation.reset(token)
