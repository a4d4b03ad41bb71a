"""``LifecycleTaskFunction``: the Task steps of the lifecycle state machine
(``stepfunctions/lifecycle.asl.json``).

The event is ``{"step": <name>, "data": <the execution's state data>}`` (plus ``detector``
for ``validate``, ``token`` for ``await_stop``, ``cluster`` for the clean-up steps); the
steps are
:class:`aios.cloud.lifecycle.Lifecycle`'s. Each step of a run runs once: Powertools
idempotency keyed on the run id, the step and the task token (a retried invocation after a
Lambda service error returns the first result). A failed step raises: Lambda reports the
exception's class name as ``errorType`` and the lifecycle's ``Catch`` records it on the run.
"""

from __future__ import annotations

import functools
from typing import Any

from aios.cloud.launcher import table_from_url
from aios.cloud.lifecycle import CloudResources, Lifecycle
from aios.cloud.services import cloud_services, environment_key
from aios.cloud.state import DynamoStateStore
from functions._common import entry, idempotent, logger


@functools.cache
def _lifecycle(_key: tuple[tuple[str, str], ...]) -> Lifecycle:
    services = cloud_services(with_launcher=False, with_jwt_secret=False)
    state = DynamoStateStore(table_from_url(services.settings.database_url))
    return Lifecycle(services, state, CloudResources.from_environment())


def lifecycle() -> Lifecycle:
    """The container's lifecycle (one per environment: tests run functions of several
    environments in one process)."""
    return _lifecycle(environment_key())


def _run_step(request: dict[str, Any]) -> dict[str, Any]:
    step = request.get("step")
    run_id = (request.get("data") or {}).get("run_id")
    logger.info("lifecycle step", extra={"step": step, "run_id": run_id})
    return lifecycle().handle(request)


@entry
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Run one lifecycle step (see the module doc)."""
    step = idempotent(
        _run_step, keyword="request", key="[data.run_id, step, token]", context=context
    )
    result: dict[str, Any] = step(request=event)
    return result
