"""The cloud's run launcher: Play and Stop through the lifecycle state machine.

:class:`StepFunctionsLauncher` is the :class:`aios.services.RunLauncher` of the API
function. ``start`` starts an execution of ``LifecycleStateMachine`` named after the run id
(Step Functions refuses a second execution of that name, so a retried Play cannot start a
run twice) with input ``{"run_id", "pipeline_id", "revision"}`` (and ``api_url`` when
``AIOS_API_URL`` is set); the machine does the rest (:mod:`aios.cloud.lifecycle`) and
writes the run's progress to its record.

``stop`` answers the task token the machine's ``AwaitStop`` state keeps in the state store
(namespace :data:`aios.cloud.lifecycle.STOP_NAMESPACE`) with SendTaskSuccess. A run that is
not waiting yet (still deploying, or its GPU worker starting) gets a stop request recorded
in the same item instead, atomically with respect to the machine storing its token: the
``AwaitStop`` step answers its own token at once when it finds the request (and also when
the run's record says ``stopping``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from aios.cloud import env
from aios.cloud.lifecycle import API_URL, RUN_STATE_TTL_SECONDS, STOP_NAMESPACE, answer_stop
from aios.domain import Run
from aios.events.state import StateStore
from aios.services import RunLauncher, Services

log = logging.getLogger(__name__)


class StepFunctionsLauncher:
    """Starts and stops runs with the lifecycle state machine.

    Args:
        state_machine_arn: ``LifecycleStateMachine``'s ARN.
        state: the state store shared with the lifecycle function.
        sfn: a boto3 Step Functions client (default: one from the AWS environment).
        api_url: the API's base URL as connectors reach it (edge media target), if known.
    """

    def __init__(
        self,
        state_machine_arn: str,
        state: StateStore,
        *,
        sfn: Any | None = None,
        api_url: str | None = None,
    ) -> None:
        if sfn is None:
            import boto3

            sfn = boto3.client("stepfunctions")
        self.state_machine_arn = state_machine_arn
        self.state = state
        self.sfn = sfn
        self.api_url = api_url

    def start(self, run: Run, document: dict[str, Any]) -> None:
        """Start the lifecycle execution of ``run`` (``document`` is read again by the
        machine from the stored revision).

        Raises:
            botocore.exceptions.ClientError: Step Functions refused (the service records
                the run failed with the message); ``ExecutionAlreadyExists`` is not an
                error when the execution is the run's own (a retried call).
        """
        data: dict[str, Any] = {
            "run_id": run.id,
            "pipeline_id": run.pipeline_id,
            "revision": run.revision,
        }
        if self.api_url:
            data["api_url"] = self.api_url
        try:
            self.sfn.start_execution(
                stateMachineArn=self.state_machine_arn, name=run.id, input=json.dumps(data)
            )
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
                raise
            log.info("run %s: its lifecycle execution exists already", run.id)
        log.info("run %s: lifecycle execution started", run.id)

    def deliver(
        self,
        run_id: str,
        node_id: str,
        event: dict[str, Any],
        *,
        remember_seconds: float = 0.0,
    ) -> str | None:
        """Start an execution of the run's event machine with ``event`` entering at
        ``node_id`` (:class:`aios.services.EventInputs`; see
        :class:`aios.cloud.dispatch.CloudRunInputs`). Returns the execution's ARN, or
        ``None`` for an event already delivered within ``remember_seconds``.

        Raises:
            aios.services.InputUnavailable: the run cannot take events.
        """
        from aios.cloud.dispatch import CloudRunInputs

        return CloudRunInputs(self.state, sfn=self.sfn).deliver(
            run_id, node_id, event, remember_seconds=remember_seconds
        )

    def stop(self, run_id: str) -> None:
        """Ask the run's lifecycle to stop (see the module doc); returns at once."""

        def change(old: Any) -> Any:
            return {**(old if isinstance(old, Mapping) else {}), "stop_requested": True}

        record = self.state.update(STOP_NAMESPACE, run_id, change, RUN_STATE_TTL_SECONDS)
        token = record.get("token") if isinstance(record, Mapping) else None
        if isinstance(token, str) and token:
            answer_stop(self.sfn, token, "stop requested")
            log.info("run %s: stop sent to its lifecycle", run_id)
        else:
            log.info("run %s: stop recorded; the lifecycle stops once it waits", run_id)


def launcher_from_environment(services: Services) -> RunLauncher | None:
    """The launcher of a cloud function: ``None`` when ``AIOS_LIFECYCLE_STATE_MACHINE_ARN``
    is unset (the API then answers 503 for Play and Stop).

    The state store is :class:`aios.cloud.state.DynamoStateStore` on the DataTable of
    ``AIOS_DATABASE_URL``.

    Raises:
        ValueError: ``AIOS_DATABASE_URL`` is not a ``dynamodb://`` URL.
    """
    arn = os.environ.get(env.LIFECYCLE_STATE_MACHINE_ARN)
    if not arn:
        return None
    from aios.cloud.state import DynamoStateStore

    return StepFunctionsLauncher(
        arn,
        DynamoStateStore(table_from_url(services.settings.database_url)),
        api_url=os.environ.get(API_URL) or None,
    )


def table_from_url(url: str | None) -> str:
    """The table of a ``dynamodb://TABLE`` database URL.

    Raises:
        ValueError: another kind of URL, or no table.
    """
    if not url or not url.startswith("dynamodb://") or not url.removeprefix("dynamodb://"):
        raise ValueError(f"{env.DATABASE_URL} must be dynamodb://TABLE in the cloud, got {url!r}")
    return url.removeprefix("dynamodb://")
