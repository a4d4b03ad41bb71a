"""Runs a pipeline's event tier on one machine: compiled ASL on the local engine.

:class:`EventTier` compiles the pipeline, builds the event-tier node implementations once
(tasks keep their clients and models between executions), binds each Task placeholder to
them, and starts one execution per event — events that leave the stream tier (it is the
stream runner's event sink) and events from event-tier inputs (sensor data, webhooks,
timers). Executions run concurrently on a small thread pool, as Express executions do in
the cloud; :meth:`EventTier.close` waits for those in flight, and :meth:`EventTier.cancel`
lets a caller stop waiting for them.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from aios.catalog.base import EventRole
from aios.events.compiler import CompiledPipeline, compile_pipeline, task_placeholder
from aios.events.engine import ExecutionRecord, LocalEngine, TaskFailure
from aios.events.envelope import make_input
from aios.events.task import Event, EventSource, EventTask, TaskError, TaskRequest, TaskServices
from aios.pipeline.validation import ValidatedPipeline
from aios.runtime.events import EventSink, StreamEvent

log = logging.getLogger(__name__)

CANCELLED_ERROR = "Aios.Cancelled"
"""The error of a task refused after :meth:`EventTier.cancel` (not retried; ``Catch``
records it)."""

UNDO_PHASES = frozenset({"restore"})
"""Task phases that still run after :meth:`EventTier.cancel`: they undo what an earlier phase
of the same execution did (a PLC pulse's restore), so a cancelled execution never leaves an
output switched on."""


@dataclass
class EventTierSummary:
    """What the event tier did in one run."""

    executions: Counter[str] = field(default_factory=Counter)
    """Executions by status (SUCCEEDED, FAILED...)."""
    results: dict[str, Counter[str]] = field(default_factory=dict)
    """Per action node: results by status (sent, throttled, not_configured, failed...)."""

    def to_json(self) -> dict[str, Any]:
        """Return the summary as JSON-ready data."""
        return {
            "executions": dict(self.executions),
            "results": {k: dict(v) for k, v in sorted(self.results.items())},
        }


def action_results(output: Any) -> list[tuple[str, dict[str, Any]]]:
    """Collect every ``results.<key>`` entry (key, result) from an execution's output.

    Keys are node ids made path-safe; a pulse's second step is ``<node>_restore``.
    """
    found: list[tuple[str, dict[str, Any]]] = []

    def walk(value: Any) -> None:
        if isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            results = value.get("results")
            if isinstance(results, dict):
                for key, item in results.items():
                    if isinstance(item, dict) and "status" in item:
                        found.append((str(key), item))
                    else:
                        walk(item)
            walk(value.get("branches"))

    walk(output)
    return found


class ExecutionLog:
    """Writes one JSON line per execution (status, input, output, history)."""

    def __init__(self, path: Path | None = None, stream: IO[str] | None = None) -> None:
        self._path = path
        self._stream = stream
        self._lock = threading.Lock()

    def write(self, record: ExecutionRecord) -> None:
        """Append the record."""
        line = json.dumps(record.to_json(), ensure_ascii=False)
        with self._lock:
            if self._stream is None:
                if self._path is None:
                    return
                self._path.parent.mkdir(parents=True, exist_ok=True)
                self._stream = self._path.open("w", encoding="utf-8")
            self._stream.write(line + "\n")
            self._stream.flush()

    def close(self) -> None:
        """Close the file if this log opened it."""
        with self._lock:
            if self._path is not None and self._stream is not None:
                self._stream.close()
                self._stream = None


class EventTier:
    """The event tier of one pipeline, running locally.

    Args:
        pipeline: a validated pipeline (must have an event tier).
        services: stores, secrets, blobs and recorder the tasks are built with.
        timezone: the site's IANA time zone (time-of-day conditions).
        workers: executions run at once.
        on_execution: called with every finished execution record.
        on_event: called with every event and the node it enters at, just before its
            execution is queued (live feeds, counters); an exception it raises is logged
            and does not stop the execution.

    Raises:
        ValueError: the pipeline has no event tier.
        aios.events.compiler.CompileError: it cannot be compiled.
        RuntimeError: a node cannot be built (the message names it).
    """

    def __init__(
        self,
        pipeline: ValidatedPipeline,
        services: TaskServices,
        *,
        timezone: str = "UTC",
        workers: int = 4,
        on_execution: Callable[[ExecutionRecord], None] | None = None,
        on_event: Callable[[Event, str], None] | None = None,
    ) -> None:
        compiled = compile_pipeline(pipeline)
        if compiled is None:
            raise ValueError("the pipeline has no event-tier nodes")
        self.compiled: CompiledPipeline = compiled
        self.pipeline = pipeline
        self.services = services
        self.timezone = timezone
        self.on_execution = on_execution
        self.on_event = on_event
        self.summary = EventTierSummary()
        self._lock = threading.Lock()
        self.tasks: dict[str, EventTask] = {}
        for nid in compiled.task_nodes:
            rnode = pipeline.nodes[nid]
            try:
                impl = rnode.node_type.implementation(rnode.config, services)
            except Exception as err:
                raise RuntimeError(f"node '{nid}' ({rnode.node.type}) cannot start: {err}") from err
            self.tasks[nid] = impl
        bindings: dict[str, Callable[[Any], Any]] = {
            placeholder: self._invoke for placeholder in compiled.placeholders
        }
        self.engine = LocalEngine(compiled.definition, bindings, name=_slug(pipeline.document.name))
        self.sources: dict[str, EventSource] = {}
        for nid in compiled.sources:
            rnode = pipeline.nodes[nid]
            assert rnode.node_type.event_role is EventRole.SOURCE
            try:
                self.sources[nid] = rnode.node_type.implementation(rnode.config, services)
            except Exception as err:
                raise RuntimeError(f"node '{nid}' ({rnode.node.type}) cannot start: {err}") from err
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="execution")
        self._pending: set[Future[ExecutionRecord]] = set()
        self._closed = False
        self._cancelled = False
        self._sources_stopped = False
        self._released = False

    # --- tasks ---------------------------------------------------------------------------

    def _invoke(self, payload: Any) -> Any:
        if not isinstance(payload, dict) or "node_id" not in payload:
            raise TaskFailure("Aios.TaskError", "task payload without node_id")
        nid = str(payload["node_id"])
        if self._cancelled and payload.get("phase") not in UNDO_PHASES:
            raise TaskFailure(CANCELLED_ERROR, f"node '{nid}' not run: the pipeline was stopped")
        task = self.tasks.get(nid)
        if task is None:
            raise TaskFailure("Aios.TaskError", f"no task for node '{nid}'")
        context = dict(payload.get("context") or {})
        context["execution"] = payload.get("execution")
        if payload.get("phase") is not None:
            context["phase"] = payload["phase"]
        request = TaskRequest(node_id=nid, event=dict(payload.get("event") or {}), context=context)
        try:
            return task.run(request)
        except TaskError as err:
            raise TaskFailure(err.error, err.message) from err

    # --- executions ----------------------------------------------------------------------

    def submit(self, event: Event, entry: str) -> Future[ExecutionRecord]:
        """Start an execution for ``event`` entering at node ``entry``.

        Raises:
            RuntimeError: the tier is closed.
        """
        if self._closed:
            raise RuntimeError("the event tier is closed")
        if self.on_event is not None:
            try:
                self.on_event(event, entry)
            except Exception:
                log.exception("observing event %s failed", event.get("event_id"))
        data = make_input(
            event, pipeline=self.pipeline.document.name, entry=entry, timezone=self.timezone
        )
        name = f"{entry}-{str(event.get('event_id', ''))[:12]}-{uuid.uuid4().hex[:8]}"
        future = self._pool.submit(self._execute, data, name[:80])
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: Future[ExecutionRecord]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _execute(self, data: dict[str, Any], name: str) -> ExecutionRecord:
        record = self.engine.execute(data, name=name)
        with self._lock:
            self.summary.executions[record.status] += 1
            for key, result in action_results(record.output):
                counter = self.summary.results.setdefault(key, Counter())
                counter[str(result.get("status"))] += 1
        if record.status != "SUCCEEDED":
            log.warning("execution %s %s: %s %s", name, record.status, record.error, record.cause)
        if self.on_execution is not None:
            self.on_execution(record)
        return record

    # EventSink protocol: the stream runner writes events that leave the stream tier here.
    def write(self, event: StreamEvent) -> None:
        """Start an execution for a stream-tier event (entry: the node that emitted it)."""
        entry = event.node_id if event.node_id in self.compiled.entries else None
        if entry is None:
            log.warning("event %s from '%s' has no route", event.event_id, event.node_id)
            return
        self.submit(event.model_dump(mode="json"), entry)

    def start_sources(self) -> None:
        """Start the event-tier inputs; their events start executions."""
        for nid, source in self.sources.items():
            source.start(self._emitter(nid))

    def _emitter(self, entry: str) -> Callable[[Event], None]:
        def emit(event: Event) -> None:
            self.submit(event, entry)

        return emit

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the executions started so far have finished."""
        with self._lock:
            pending = list(self._pending)
        for future in pending:
            future.result(timeout=timeout)

    @property
    def pending(self) -> int:
        """Executions queued or running now."""
        with self._lock:
            return len(self._pending)

    def stop_sources(self) -> None:
        """Stop the event-tier inputs (no new events from them); calling again does nothing."""
        if self._sources_stopped:
            return
        self._sources_stopped = True
        for nid, source in self.sources.items():
            try:
                source.stop()
            except Exception:
                log.exception("stopping input %s failed", nid)

    def cancel(self) -> tuple[int, int]:
        """Stop inputs and stop waiting for executions; return at once.

        New events are refused (:meth:`submit` raises); executions queued but not started
        are dropped; executions in flight go on, but each later task they reach fails at
        once with :data:`CANCELLED_ERROR` (phases in :data:`UNDO_PHASES` excepted) — a task
        call already running, or a ``Retry``/``Wait`` interval already begun, is not
        interrupted. :meth:`close` still waits for them.

        Returns:
            ``(dropped, running)``: executions dropped, executions still in flight.
        """
        self.stop_sources()
        self._closed = True
        self._cancelled = True
        with self._lock:
            pending = list(self._pending)
        dropped = sum(1 for future in pending if future.cancel())
        self._pool.shutdown(wait=False, cancel_futures=True)
        return dropped, sum(1 for future in pending if not future.done())

    def close(self) -> None:
        """Stop inputs, wait for executions in flight, release the engine."""
        if self._released:
            return
        self.stop_sources()
        self._closed = True
        self._pool.shutdown(wait=True)
        self._released = True
        for task in self.tasks.values():
            closer = getattr(task, "close", None)
            if callable(closer):
                try:
                    closer()
                except Exception:
                    log.exception("closing a task failed")
        self.engine.close()


class SinkRecorder:
    """The dashboard's recorder for local runs: writes recorded events to an event sink.

    Stream-tier events are written as :class:`StreamEvent` with the dashboard's panel and
    severity in ``data.dashboard`` and ``outputs`` = the dashboard node; other events
    (sensor readings, webhooks, timers) as JSON objects with the same additions.
    """

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink

    def record(self, event: Event, *, node_id: str, panel: str, severity: str) -> None:
        """Write one recorded event."""
        tags = {"panel": panel, "severity": severity}
        data = {**(event.get("data") or {}), "dashboard": tags}
        fields = {**event, "data": data, "outputs": [node_id]}
        try:
            stream_event = StreamEvent.model_validate(fields)
        except ValueError:
            write_json = getattr(self.sink, "write_json", None)
            if callable(write_json):
                write_json(fields)
            return
        self.sink.write(stream_event)


def _slug(name: str) -> str:
    import re

    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")
    return (slug or "pipeline")[:80]


__all__ = [
    "CANCELLED_ERROR",
    "UNDO_PHASES",
    "EventTier",
    "EventTierSummary",
    "ExecutionLog",
    "SinkRecorder",
    "task_placeholder",
]
