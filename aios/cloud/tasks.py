"""Pipeline task functions: one event-tier node type per Lambda function, run exactly as
the local engine runs it (:meth:`aios.events.runtime.EventTier._invoke`).

The payload is what a compiled Task's ``Parameters`` send
(:meth:`aios.events.compiler._Builder.task`)::

    {"node_id", "node_type", "config", "event", "context", "execution", "phase"?}

:class:`TaskRunner` validates ``config`` with the node type's model, builds the node's
implementation with cloud :class:`~aios.events.task.TaskServices` (kept per configuration
for the container's life, as the local engine keeps a node between executions) and calls
``run`` with a :class:`~aios.events.task.TaskRequest` whose context carries ``execution``
and ``phase`` as the local engine sets them.

Errors: a :class:`~aios.events.task.TaskError` becomes an exception whose class name is the
ASL error name (``Aios.Transient``, ``Aios.Permanent``…): the Lambda Python runtime reports
an unhandled exception's ``type(err).__name__`` as ``errorType`` (awslambdaric
``build_fault_result``), which is what Step Functions' ``Retry``/``Catch`` match. Any
other exception reaches Step Functions with its own class name (the Tasks' ``Catch`` on
``States.ALL`` records it).

Cloud services (:func:`cloud_task_services`): the state store is
:class:`aios.cloud.state.DynamoStateStore` on the DataTable; secrets are the environment
(``AIOS_SECRET_<NAME>``), then the integration secrets of the store (Secrets Manager when
``AIOS_INTEGRATION_SECRET_PREFIX`` is set); blobs are :class:`aios.cloud.s3.S3BlobStore`
on ``AIOS_MEDIA_BUCKET`` (a temporary folder without it); the dashboard's recorder stores
events in the DataTable as the local runs do (:class:`StoreRecorder`); fleet commands (a
PLC write to a fleet PLC) go through :class:`aios.fleet.commands.FleetCommands` on the
function's IoT Core link, their answers read from the DataTable, where the
command-response function records them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aios.catalog.base import NodeType
from aios.domain import EventRecord
from aios.events.task import (
    PERMANENT,
    TRANSIENT,
    Event,
    EventTask,
    FolderBlobStore,
    TaskError,
    TaskRequest,
    TaskServices,
)
from aios.fleet.commands import time_budget
from aios.runs.service import channel, publish
from aios.services import Services
from aios.store.secrets import secret_chain

log = logging.getLogger(__name__)

TASK_ERROR = "Aios.TaskError"


def _named(name: str, doc: str) -> type[Exception]:
    """An exception class whose ``__name__`` is the ASL error ``name``."""
    cls = type(name, (Exception,), {"__doc__": doc, "__module__": __name__})
    cls.__qualname__ = name
    return cls


AiosTransient = _named(TRANSIENT, "A task failure worth retrying (Retry matches it).")
AiosPermanent = _named(PERMANENT, "A task failure retrying cannot fix (straight to Catch).")
AiosTaskError = _named(TASK_ERROR, "A task failure of another kind, or a bad payload.")
_BY_NAME: dict[str, type[Exception]] = {
    TRANSIENT: AiosTransient,
    PERMANENT: AiosPermanent,
    TASK_ERROR: AiosTaskError,
}


def lambda_error(err: TaskError) -> Exception:
    """The exception to raise from a handler so that Lambda's ``errorType`` is
    ``err.error`` (an unknown name becomes ``Aios.TaskError``)."""
    cls = _BY_NAME.get(err.error)
    if cls is None:
        cls = _named(err.error, "A task failure") if err.error.startswith("Aios.") else None
        cls = cls or AiosTaskError
        _BY_NAME[err.error] = cls
    return cls(err.message)


class StoreRecorder:
    """The dashboard nodes' recorder in the cloud: the event is stored as the run's
    :class:`~aios.domain.EventRecord` (id :func:`aios.runs.local.stored_event_id`, severity
    and ``data.dashboard`` of the dashboard), published on ``pipelines/{pipeline_id}`` and
    ``notifications``. The run comes from the execution's context (``run_id``,
    ``pipeline_id``: added by :mod:`aios.cloud.dispatch`); set :attr:`context` before each
    task call."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._local = threading.local()

    @property
    def context(self) -> Mapping[str, Any]:
        """The context of the task being run."""
        value = getattr(self._local, "context", None)
        return value if isinstance(value, Mapping) else {}

    @context.setter
    def context(self, value: Mapping[str, Any]) -> None:
        self._local.context = value

    def record(self, event: Event, *, node_id: str, panel: str, severity: str) -> None:
        """Store and publish one recorded event (once per run and event id)."""
        from aios.runs.local import stored_event_id

        run_id = self.context.get("run_id")
        pipeline_id = self.context.get("pipeline_id")
        if not isinstance(run_id, str) or not isinstance(pipeline_id, str):
            log.warning("dashboard %s: no run in the execution's context; not stored", node_id)
            return
        event_id = str(event.get("event_id") or "")
        if not event_id:
            event_id = hashlib.sha256(json.dumps(event, sort_keys=True).encode()).hexdigest()
        dashboard = {"node_id": node_id, "panel": panel, "severity": severity}
        fields = {"event_id", "event_type", "time", "source_id"}
        data = {k: v for k, v in event.items() if k not in fields}
        data.update({"event_id": event_id, "dashboard": dashboard})
        if isinstance(event.get("time"), str):
            data["event_time"] = event["time"]
        source = event.get("source_id")
        record = EventRecord(
            id=stored_event_id(run_id, event_id),
            pipeline_id=pipeline_id,
            run_id=run_id,
            node_id=str(event.get("node_id") or self.context.get("entry") or node_id),
            source_id=None if source is None else str(source),
            type=str(event.get("event_type") or "event"),
            time=self.services.clock(),
            severity=severity,
            data=data,
        )
        if not self.services.store.events.put(record):
            return
        body = record.model_dump(mode="json")
        message = {"type": "event", "pipeline_id": pipeline_id, "run_id": run_id, "event": body}
        publish(self.services.feed, channel(pipeline_id), message)
        publish(
            self.services.feed,
            "notifications",
            {
                "type": "pipeline.event",
                "pipeline_id": pipeline_id,
                "pipeline_name": str(self.context.get("pipeline") or ""),
                "run_id": run_id,
                "event": body,
            },
        )


def cloud_task_services(
    services: Services, *, table: str, bucket: str | None
) -> tuple[TaskServices, StoreRecorder]:
    """The task services of a pipeline task function (see the module doc)."""
    from aios.cloud.state import DynamoStateStore

    blobs: Any
    if bucket:
        from aios.cloud.s3 import S3BlobStore

        blobs = S3BlobStore(bucket)
    else:
        blobs = FolderBlobStore(Path(tempfile.gettempdir()) / "aios-blobs")
    from aios.fleet.commands import FleetCommands
    from aios.fleet.service import FleetService

    recorder = StoreRecorder(services)
    task_services = TaskServices(
        secrets=secret_chain(services.store.secrets),
        state=DynamoStateStore(table),
        blobs=blobs,
        recorder=recorder,
        now=services.clock,
        # fleet PLCs: commands published on IoT Core (services.link), answers read from the
        # DataTable where the command-response function records them
        device_commands=FleetCommands(FleetService(services)),
    )
    return task_services, recorder


class TaskRunner:
    """Runs the nodes of one node type with the given task services.

    Args:
        node_type: the catalog entry of the function's node type.
        services: what the nodes are built with.
        recorder: the dashboard recorder inside ``services`` (its context is set per call).
    """

    MAX_CACHED = 64
    """Node instances kept (by node id and configuration) between invocations."""

    def __init__(
        self,
        node_type: NodeType[Any],
        services: TaskServices,
        recorder: StoreRecorder | None = None,
    ) -> None:
        self.node_type = node_type
        self.services = services
        self.recorder = recorder
        self._tasks: dict[str, EventTask] = {}

    def _task(self, node_id: str, config: Any) -> EventTask:
        text = json.dumps(config, sort_keys=True)
        key = hashlib.sha256(f"{node_id}\n{text}".encode()).hexdigest()
        task = self._tasks.get(key)
        if task is None:
            try:
                model = self.node_type.config_model.model_validate(config or {})
            except ValueError as err:
                raise AiosPermanent(f"node '{node_id}': invalid configuration: {err}") from None
            try:
                task = self.node_type.implementation(model, self.services)
            except Exception as err:  # a node that cannot start cannot run on a retry either
                raise AiosPermanent(f"node '{node_id}' cannot start: {err}") from None
            if len(self._tasks) >= self.MAX_CACHED:
                self._tasks.pop(next(iter(self._tasks)))
            self._tasks[key] = task
        return task

    def run(
        self,
        payload: Mapping[str, Any],
        *,
        remaining_seconds: Callable[[], float] | None = None,
    ) -> Any:
        """Run one Task call (payload: see the module doc); return the node's JSON result.

        ``remaining_seconds``: the seconds the invocation has left (the Lambda context's
        ``get_remaining_time_in_millis() / 1000``); fleet commands the node sends wait no
        longer (:func:`aios.fleet.commands.time_budget`).

        Raises:
            AiosTransient / AiosPermanent / AiosTaskError: the node's TaskError, by name;
                ``Aios.TaskError`` also for a payload of another node type or without a
                node id.
        """
        node_id = payload.get("node_id")
        if not isinstance(node_id, str) or not node_id:
            raise AiosTaskError("task payload without node_id")
        node_type = payload.get("node_type")
        if node_type is not None and node_type != self.node_type.type_id:
            raise AiosTaskError(
                f"node '{node_id}' is a {node_type}; this function runs {self.node_type.type_id}"
            )
        task = self._task(node_id, payload.get("config"))
        context = dict(payload.get("context") or {})
        context["execution"] = payload.get("execution")
        if payload.get("phase") is not None:
            context["phase"] = payload["phase"]
        if self.recorder is not None:
            self.recorder.context = context
        request = TaskRequest(
            node_id=node_id, event=dict(payload.get("event") or {}), context=context
        )
        try:
            with time_budget(remaining_seconds):
                result = task.run(request)
        except TaskError as err:
            raise lambda_error(err) from None
        # the result must be JSON, as a Lambda's is
        return json.loads(json.dumps(result))
