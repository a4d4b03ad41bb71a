"""Runs pipelines in threads of this process: the run launcher of ``aios up``.

Each run gets a thread that does what ``aios run`` does — the stream tier
(:class:`~aios.runtime.stream.StreamRunner`) over the pipeline's cameras and files, its
events feeding the event tier (:class:`~aios.events.runtime.EventTier`) on the local ASL
engine — and, for pipelines without video (webhook, sensor data and timer inputs), the
event tier alone until Stop. Files of a run live under ``<data_dir>/runs/<run_id>/``:
``media/`` (snapshots and clips) and ``executions.jsonl`` (one event-tier execution per
line). State kept between executions and runs (cooldowns, storage, webhook idempotency
keys) is one SQLite file, ``<data_dir>/state.sqlite``, shared by the runs. Secrets come
from ``AIOS_SECRET_<NAME>`` variables, then ``settings.secrets_file``.

What a run writes to the service:

- Its status: ``running`` at the first frame (pipelines with video) or once the event
  inputs listen (pipelines without); ``succeeded`` when its video sources end and its
  executions have finished; ``stopped`` after Stop (see below); ``failed`` with the
  error (the message names the node) when a node fails.
- Its counters, about once a second while they change (conditional writes, retried on
  Conflict), also published as ``run.counters`` on ``pipelines/{pipeline_id}``::

      {"frames": {"camera": 412}, "fps": {"camera": 9.8}, "dropped_frames": {"camera": 0},
       "events": {"restricted": 7, "door": 2},
       "executions": {"succeeded": 9, "failed": 0, "dropped": 0, "abandoned": 0},
       "actions": {"siren": {"sent": 1, "throttled": 2}}, "events_stored": 9,
       "elapsed_seconds": 41.2}

  ``frames``/``fps``/``dropped_frames`` per video source (``fps`` over the last interval);
  ``events`` per node that emits them (stream-tier nodes, event-tier inputs);
  ``executions`` by outcome (``dropped``/``abandoned``: see Stop below);
  ``actions`` per action node, by result status (from each execution's output).
- Its events, as :class:`~aios.domain.EventRecord` in ``store.events``. ``id`` is
  :func:`stored_event_id` of the run and the event's own idempotency key (kept as
  ``data.event_id``): a duplicate delivery within the run is stored once, and playing the
  same input again (a second run of a file) stores its events again, under the new run.
  ``time`` is when the service recorded the event (its clock); the event's own time — the
  capture time of a live camera, the media clock of a file (``start_time`` + position,
  also ``data.media_time_seconds``), a device's or a sender's clock — is kept as
  ``data.event_time``. So "events of the last 24 hours" are the events this service
  recorded in the last 24 hours, even for replayed recordings whose clock is years old,
  and a device clock that is wrong cannot hide or misdate events. An event recorded by a
  dashboard node is stored when the dashboard records it, with the dashboard's severity
  and ``data.dashboard = {"node_id", "panel", "severity"}``; every other event when its
  execution ends, with severity ``info`` (pipelines without an event tier: when emitted).
  Each event is published once per run as ``{"type": "event", ...}`` on
  ``pipelines/{pipeline_id}``. Events recorded by a dashboard are the alert-like ones —
  the dashboard node is how a pipeline says "show people this" — and are also published
  on ``notifications`` as ``{"type": "pipeline.event", "pipeline_id", "pipeline_name",
  "run_id", "event"}``. A snapshot or clip of the run is named by its key relative to the
  data folder, not by a path of this machine: ``data.snapshot =
  "runs/<run_id>/media/snapshots/<event_id>.jpg"`` (``data.clip``: ``media/clips/…mp4``),
  with the API path that serves it in ``data.snapshot_url`` / ``data.clip_url``
  (``/api/v1/runs/<run_id>/media/<kind>/<name>``; see :mod:`aios.runs.media`). The run's
  ``executions.jsonl`` keeps the events as the pipeline saw them (file paths).

Stop: the sources stop at once (video workers, webhook servers, subscriptions, timers), so
no new event enters the run. Executions already queued or running get
``stop_grace_seconds`` (default :data:`STOP_GRACE_SECONDS`) from the Stop request to
finish. Those still unfinished then are given up and the run is marked ``stopped`` at
once: queued ones are dropped (counted ``executions.dropped``); running ones
(``executions.abandoned``) go on in the background, but every later task they reach
fails with ``Aios.Cancelled`` instead of acting — a PLC pulse's restore excepted, so an
output is never left on — and their records still reach ``executions.jsonl`` (their
events are stored then, not counted in the run's final counters). A sender or PLC that
does not answer therefore delays Stop by the grace period at most.

Fleet cameras (``aios/camera.device@1``): a pipeline whose video inputs are cameras of
the fleet runs its stream tier on their connector, not here (:mod:`aios.runs.edge`): the
run pushes a stream plan per camera to the connector's desired configuration, takes the
events the connector publishes (handed over by the ingester through
``services.device_event_hooks``) into its event tier as if its own stream tier had
produced them, and removes the plans when it ends. It is ``running`` once the connector
reports a plan running or its first event arrives; its counters have no ``frames``
(the frames are counted at the edge).

At most ``max_concurrent`` runs are active at once; :meth:`LocalRunLauncher.start` over the
limit raises :class:`~aios.runs.service.RunCapacityExceeded` (the service then records the
run ``failed`` with that message, so the refusal is visible in the run history).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aios.catalog.base import Tier
from aios.domain import EventRecord, Run, RunStatus
from aios.events.compiler import CompileError
from aios.events.engine import ExecutionRecord
from aios.events.envelope import parse_time
from aios.events.runtime import EventTier, ExecutionLog, action_results
from aios.events.state import SqliteStateStore
from aios.events.task import Event, FolderBlobStore, TaskServices
from aios.pipeline.validation import ValidatedPipeline, validate_pipeline
from aios.runs.edge import EdgeStreams, prune_stale_plans, runs_at_edge
from aios.runs.media import media_key, media_url, valid_media_name
from aios.runs.service import (
    LauncherUnavailable,
    RunCapacityExceeded,
    publish,
    status_message,
    update_run,
)
from aios.runs.service import channel as pipeline_channel
from aios.runtime.batch import clip_buffer_seconds
from aios.runtime.events import StreamEvent, event_key
from aios.runtime.evidence import EvidenceRecorder
from aios.runtime.stream import StreamRunner
from aios.services import Services
from aios.store.secrets import secret_chain
from aios.vision.types import Frame

if TYPE_CHECKING:
    from aios.messages import DeviceEventItem

log = logging.getLogger(__name__)

_EVENT_FIELDS = frozenset({"event_id", "event_type", "time", "source_id"})
_PRODUCERS_KEPT = 10_000
"""Recent events whose producing node (and whether they were published) is remembered."""


def source_devices(pipeline: ValidatedPipeline) -> dict[str, str]:
    """Input nodes that name a fleet device (``config.device_id``, e.g. a fleet camera),
    by node id: a stored event's ``source_id`` is then that device, the device the event is
    about, and the node id is kept in ``data.source_node``."""
    found: dict[str, str] = {}
    for node in pipeline.document.nodes:
        device_id = node.config.get("device_id") if isinstance(node.config, dict) else None
        if isinstance(device_id, str) and device_id:
            found[node.id] = device_id
    return found


STOP_GRACE_SECONDS = 5.0
"""Seconds after Stop that executions in flight get to finish before the run is marked
``stopped`` without them (a send's timeout and first retries fit; an unreachable PLC's
full retry schedule, minutes, does not)."""

_DRAIN_POLL_SECONDS = 0.05


def stored_event_id(run_id: str, event_id: str) -> str:
    """Return the :class:`~aios.domain.EventRecord` id of event ``event_id`` of run ``run_id``.

    ``evt_`` + 32 hex digits of :func:`~aios.runtime.events.event_key` (SHA-256) of both:
    stable within a run (a duplicate delivery is stored once), distinct between runs (the
    stream tier's keys repeat when the same file is played again).
    """
    return "evt_" + event_key("run-event", run_id, event_id)


class _Recorder:
    """The dashboard nodes' recorder of one run: stores and publishes what they record."""

    def __init__(self, run: LocalRun) -> None:
        self.run = run

    def record(self, event: Event, *, node_id: str, panel: str, severity: str) -> None:
        """Store the event with the dashboard's panel and severity."""
        self.run.store_event(
            event,
            severity=severity,
            dashboard={"node_id": node_id, "panel": panel, "severity": severity},
        )


class _StoreSink:
    """The stream runner's sink when a pipeline has no event tier: store each event."""

    def __init__(self, run: LocalRun) -> None:
        self.run = run

    def write(self, event: StreamEvent) -> None:
        """Store one event that left the stream tier."""
        self.run.store_event(event.model_dump(mode="json"))

    def close(self) -> None:
        """Nothing to release."""


class LocalRun:
    """One run in this process: its thread, its runner and event tier, its counters.

    Built by :meth:`LocalRunLauncher.start`; read it with :meth:`LocalRunLauncher.handle`.

    Attributes:
        run: the run record as it was started.
        pipeline: the validated revision being run.
        folder: ``<data_dir>/runs/<run_id>``.
        runner: the stream tier (``None`` for pipelines without video or whose video is
            analysed at the edge, or until built).
        tier: the event tier (``None`` for pipelines without one, or until built).
        edge: the stream plans of a pipeline whose cameras are fleet cameras (``None``
            otherwise, or until built).
        finished: set when the run's thread has ended and the final status is written.
    """

    def __init__(
        self,
        launcher: LocalRunLauncher,
        run: Run,
        pipeline: ValidatedPipeline,
    ) -> None:
        self.launcher = launcher
        self.services = launcher.services
        self.run = run
        self.pipeline_id = run.pipeline_id
        self.pipeline = pipeline
        self._source_devices = source_devices(pipeline)
        self.folder = launcher.data_dir / "runs" / run.id
        self.media_dir = self.folder / "media"
        self.runner: StreamRunner | None = None
        self.tier: EventTier | None = None
        self.edge: EdgeStreams | None = None
        self.finished = threading.Event()
        self._edge_done = threading.Event()
        self._edge_error: str | None = None
        self._edge_waiting: str | None = None
        self._edge_events: Counter[str] = Counter()
        self._stop_requested = threading.Event()
        self._stop_asked_at: float | None = None
        self._dropped = 0
        self._abandoned = 0
        self._published: OrderedDict[str, None] = OrderedDict()
        self._started = threading.Event()
        self._wake = threading.Event()
        self._ending = threading.Event()
        self._lock = threading.Lock()
        self._input_events: Counter[str] = Counter()
        self._executions: Counter[str] = Counter()
        self._actions: dict[str, Counter[str]] = {}
        self._stored = 0
        self._producers: OrderedDict[str, str] = OrderedDict()
        self._last_frames: dict[str, int] = {}
        self._last_tick = time.monotonic()
        self._began = time.monotonic()
        self._last_counters: dict[str, Any] | None = None
        self._thread = threading.Thread(target=self._main, name=f"run-{run.id}", daemon=True)
        self._monitor = threading.Thread(
            target=self._watch, name=f"run-{run.id}-counters", daemon=True
        )

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start the run's thread and its counter writer; return at once."""
        self._thread.start()
        self._monitor.start()

    def request_stop(self) -> None:
        """Ask the run to stop (sources first, then executions in flight); return at once.

        Executions in flight get ``launcher.stop_grace_seconds`` from the first request.
        """
        if self._stop_asked_at is None:
            self._stop_asked_at = time.monotonic()
        self._stop_requested.set()
        self._edge_done.set()
        runner = self.runner
        if runner is not None:
            runner.stop()

    @property
    def stop_requested(self) -> bool:
        """Whether Stop was asked for."""
        return self._stop_requested.is_set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the run to end; return whether it did within ``timeout`` seconds."""
        return self.finished.wait(timeout)

    def webhook_urls(self) -> dict[str, str]:
        """Return the URL each webhook input of the run listens on, by node id."""
        tier = self.tier
        if tier is None:
            return {}
        urls: dict[str, str] = {}
        for nid, source in tier.sources.items():
            with contextlib.suppress(RuntimeError):
                url = getattr(source, "url", None)
                if isinstance(url, str):
                    urls[nid] = url
        return urls

    def _main(self) -> None:
        error: BaseException | None = None
        recorders: dict[str, EvidenceRecorder] = {}
        executions = ExecutionLog(self.folder / "executions.jsonl")
        try:
            self.tier = self._event_tier(executions)
            has_video = bool(self.pipeline.video_inputs())
            if has_video and runs_at_edge(self.pipeline):
                self.edge = self.launcher.edge_streams(self)
            elif has_video:

                def make_evidence(source_id: str) -> EvidenceRecorder:
                    recorder = EvidenceRecorder(
                        self.media_dir,
                        source_id,
                        buffer_seconds=clip_buffer_seconds(self.pipeline, source_id),
                    )
                    recorders[source_id] = recorder
                    return recorder

                def on_frame(source_id: str, frame: Frame, *_: Any) -> None:
                    recorders[source_id].on_frame(frame)

                self.runner = StreamRunner(
                    self.pipeline,
                    self.tier if self.tier is not None else _StoreSink(self),
                    evidence=make_evidence,
                    on_frame=on_frame,
                    on_progress=self._on_frame,
                )
                if self._stop_requested.is_set():
                    self.runner.stop()
            if self.tier is not None and not self._stop_requested.is_set():
                self.tier.start_sources()
            if self.edge is not None:
                if not self._stop_requested.is_set():
                    self.edge.start(self.pipeline)
                self._edge_done.wait()
                if self._edge_error is not None:
                    raise RuntimeError(self._edge_error)
            elif self.runner is not None:
                self.runner.run()
            else:
                self._started.set()
                self._wake.set()
                self._stop_requested.wait()
        except BaseException as err:
            error = err
        finally:
            if self.runner is not None:
                self.runner.stop()
            if self.edge is not None:
                self.edge.stop()
            draining = False
            if self.tier is not None:
                try:
                    draining = self._close_tier(self.tier, executions)
                except Exception as err:
                    log.exception("run %s: closing the event tier failed", self.run.id)
                    error = error or err
            for recorder in recorders.values():
                try:
                    recorder.close()  # finishes clips still recording
                except Exception:
                    log.exception("run %s: finishing clips failed", self.run.id)
            if not draining:
                executions.close()
            self._finish(error)

    def _close_tier(self, tier: EventTier, executions: ExecutionLog) -> bool:
        """Stop the inputs and wait for the executions: all of them when the sources ended,
        until the grace period after Stop ends otherwise. Return whether some were given
        up (they end in a background thread, which then closes the tier and the log)."""
        tier.stop_sources()
        grace = self.launcher.stop_grace_seconds
        while tier.pending:
            asked = self._stop_asked_at
            if asked is not None and time.monotonic() >= asked + grace:
                break
            time.sleep(_DRAIN_POLL_SECONDS)
        if not tier.pending:
            tier.close()
            return False
        dropped, running = tier.cancel()
        with self._lock:
            self._dropped, self._abandoned = dropped, running
        log.warning(
            "run %s: %d execution(s) still running %.0f s after Stop were abandoned "
            "(their further tasks are refused), %d queued dropped",
            self.run.id,
            running,
            grace,
            dropped,
        )

        def drain() -> None:
            try:
                tier.close()
            except Exception:
                log.exception("run %s: closing the event tier failed", self.run.id)
            finally:
                executions.close()
                log.info("run %s: abandoned executions have ended", self.run.id)

        self.launcher.drain_in_background(self.run.id, drain)
        return True

    def _event_tier(self, executions: ExecutionLog) -> EventTier | None:
        if not any(r.node_type.manifest.tier is Tier.EVENT for r in self.pipeline.nodes.values()):
            return None
        from aios.fleet.commands import FleetCommands
        from aios.fleet.service import FleetService

        task_services = TaskServices(
            secrets=secret_chain(self.services.store.secrets, self.services.settings.secrets_file),
            state=self.launcher.state_store(),
            blobs=FolderBlobStore(self.media_dir),
            recorder=_Recorder(self),
            now=self.services.clock,
            # fleet PLCs (aios/plc_write@1 with device_id): commands through their connector
            device_commands=FleetCommands(FleetService(self.services)),
        )
        timezone = str(self.pipeline.document.metadata.get("timezone") or "UTC")

        def on_execution(record: ExecutionRecord) -> None:
            executions.write(record)
            self._on_execution(record)

        try:
            return EventTier(
                self.pipeline,
                task_services,
                timezone=timezone,
                on_execution=on_execution,
                on_event=self._on_event,
            )
        except CompileError as err:
            raise RuntimeError(f"the event tier cannot be compiled: {err}") from err

    def _finish(self, error: BaseException | None) -> None:
        self._ending.set()
        self._wake.set()
        self._monitor.join(timeout=10)
        if error is not None:
            status, message = RunStatus.FAILED, str(error) or type(error).__name__
            log.error("run %s of pipeline %s failed: %s", self.run.id, self.pipeline_id, message)
        elif self._stop_requested.is_set():
            status, message = RunStatus.STOPPED, None
        else:
            status, message = RunStatus.SUCCEEDED, None
        counters = self.counters()
        now = self.services.clock()

        def change(run: Run) -> Run | None:
            if not run.status.active:
                return None
            return run.model_copy(
                update={
                    "status": status,
                    "error": message,
                    "stopped_at": now,
                    "counters": counters,
                }
            )

        try:
            final = update_run(self.services.store, self.run.id, change)
            if final is not None:
                log.info(
                    "run %s of pipeline %s %s", self.run.id, self.run.pipeline_id, status.value
                )
                publish(self.services.feed, self.channel, status_message(final))
        except Exception:
            log.exception("run %s: writing its final status failed", self.run.id)
        finally:
            self.launcher.forget(self.run.id)
            self.finished.set()

    # --- observing ---------------------------------------------------------------------

    @property
    def channel(self) -> str:
        """The feed channel of the run: ``pipelines/{pipeline_id}``."""
        return pipeline_channel(self.run.pipeline_id)

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self.run.id

    def take_edge_event(self, event: StreamEvent) -> None:
        """Take one event of the stream tier that ran on a connector, as the run's own
        stream tier's: into the event tier (or stored when there is none), counted."""
        with self._lock:
            self._edge_events[event.node_id] += 1
        tier = self.tier
        if tier is None:
            self.store_event(event.model_dump(mode="json"))
            return
        try:
            tier.write(event)
        except RuntimeError as err:  # the tier is closing (Stop): no new executions
            log.info("run %s: edge event %s not run: %s", self.run.id, event.event_id, err)
        self._wake.set()

    def edge_started(self) -> None:
        """The connector runs the run's stream tier: mark the run running."""
        self._on_frame("", None)

    def edge_waiting(self, reason: str | None) -> None:
        """The connector has the plan but cannot run it yet (its camera is down): shown as
        ``counters.waiting`` until the stream tier runs; ``None`` clears it."""
        self._edge_waiting = reason

    def edge_failed(self, message: str) -> None:
        """The connector cannot run the stream tier: end the run ``failed`` with ``message``."""
        if self._edge_error is None:
            self._edge_error = message
        self._edge_done.set()

    def _on_frame(self, _source_id: str, _frame: Frame | None) -> None:
        if not self._started.is_set():
            self._started.set()
            self._wake.set()

    def _on_event(self, event: Event, entry: str) -> None:
        event_id = str(event.get("event_id", ""))
        producer = str(event.get("node_id") or entry)
        with self._lock:
            if self.tier is not None and entry in self.tier.sources:
                self._input_events[entry] += 1
            if event_id:
                self._producers[event_id] = producer
                while len(self._producers) > _PRODUCERS_KEPT:
                    self._producers.popitem(last=False)

    def _on_execution(self, record: ExecutionRecord) -> None:
        with self._lock:
            self._executions["succeeded" if record.status == "SUCCEEDED" else "failed"] += 1
            for key, result in action_results(record.output):
                self._actions.setdefault(key, Counter())[str(result.get("status"))] += 1
        data = record.input if isinstance(record.input, dict) else {}
        event = data.get("event")
        if isinstance(event, dict):
            self.store_event(event)

    def store_event(
        self,
        event: Mapping[str, Any],
        *,
        severity: str = "info",
        dashboard: dict[str, str] | None = None,
    ) -> bool:
        """Store one event of the run (once per run: see the module doc), publish it once.

        Returns whether it was stored now (``False`` for a duplicate delivery). The event
        is published unless this run published it already, whatever the store answered. A
        store or feed failure is logged, not raised (the execution that recorded it goes on).
        """
        try:
            event_id = str(event.get("event_id") or "")
            if not event_id:
                event_id = event_key("event", json.dumps(dict(event), sort_keys=True, default=str))
            with self._lock:
                producer = self._producers.get(event_id)
            node_id = str(
                event.get("node_id") or producer or (dashboard or {}).get("node_id") or "unknown"
            )
            data = {k: v for k, v in event.items() if k not in _EVENT_FIELDS}
            data["event_id"] = event_id
            own_time = parse_time(event.get("time"))
            if own_time is not None:
                data["event_time"] = own_time.isoformat()
            if dashboard is not None:
                data["dashboard"] = dashboard
            self._media_references(data)
            source_id = event.get("source_id")
            if source_id is not None and str(source_id) in self._source_devices:
                data["source_node"] = str(source_id)
                source_id = self._source_devices[str(source_id)]
            record = EventRecord(
                id=stored_event_id(self.run.id, event_id),
                pipeline_id=self.run.pipeline_id,
                run_id=self.run.id,
                node_id=node_id,
                source_id=None if source_id is None else str(source_id),
                type=str(event.get("event_type") or "event"),
                time=self.services.clock(),
                severity=severity,
                data=data,
            )
            stored = self.services.store.events.put(record)
            with self._lock:
                if stored:
                    self._stored += 1
                first = record.id not in self._published
                if first:
                    self._published[record.id] = None
                    while len(self._published) > _PRODUCERS_KEPT:
                        self._published.popitem(last=False)
            if not first:
                return stored
            body = record.model_dump(mode="json")
            publish(
                self.services.feed,
                self.channel,
                {
                    "type": "event",
                    "pipeline_id": self.run.pipeline_id,
                    "run_id": self.run.id,
                    "event": body,
                },
            )
            if dashboard is not None:
                publish(
                    self.services.feed,
                    "notifications",
                    {
                        "type": "pipeline.event",
                        "pipeline_id": self.run.pipeline_id,
                        "pipeline_name": self.pipeline.document.name,
                        "run_id": self.run.id,
                        "event": body,
                    },
                )
            return stored
        except Exception:
            log.exception("run %s: storing event %s failed", self.run.id, event.get("event_id"))
            return False

    def _media_references(self, data: dict[str, Any]) -> None:
        """Replace ``data.snapshot`` / ``data.clip`` paths of this run's media folder by
        their keys and add ``snapshot_url`` / ``clip_url`` (see :mod:`aios.runs.media`).
        Other values (not a file of this run's media) are left as they are."""
        for field, kind in (("snapshot", "snapshots"), ("clip", "clips")):
            value = data.get(field)
            if not isinstance(value, str) or not value:
                continue
            try:
                relative = Path(value).relative_to(self.media_dir)
            except ValueError:
                continue
            if len(relative.parts) != 2 or relative.parts[0] != kind:
                continue
            name = relative.parts[1]
            if not valid_media_name(kind, name):
                continue
            data[field] = media_key(self.run.id, kind, name)
            data[f"{field}_url"] = media_url(self.run.id, kind, name)

    # --- counters ----------------------------------------------------------------------

    def counters(self) -> dict[str, Any]:
        """Return the run's counters now (shape in the module doc)."""
        now = time.monotonic()
        frames: dict[str, int] = {}
        fps: dict[str, float] = {}
        dropped: dict[str, int] = {}
        events: dict[str, int] = {}
        runner = self.runner
        if runner is not None:
            elapsed = max(now - self._last_tick, 1e-6)
            for worker in runner.workers:
                sid = worker.source_node.id
                count = worker.stats.frames
                frames[sid] = count
                fps[sid] = round((count - self._last_frames.get(sid, 0)) / elapsed, 2)
                dropped[sid] = int(getattr(worker.frame_source, "dropped_frames", 0) or 0)
                self._last_frames[sid] = count
            events = {nid: s.events for nid, s in runner.summary.nodes.items() if s.events}
        self._last_tick = now
        with self._lock:
            events.update(self._edge_events)
            events.update(self._input_events)
            executions = {"succeeded": 0, "failed": 0} | dict(self._executions)
            executions |= {"dropped": self._dropped, "abandoned": self._abandoned}
            actions = {k: dict(v) for k, v in sorted(self._actions.items())}
            stored = self._stored
        counters: dict[str, Any] = {
            "frames": frames,
            "fps": fps,
            "dropped_frames": dropped,
            "events": dict(sorted(events.items())),
            "executions": executions,
            "actions": actions,
            "events_stored": stored,
            "elapsed_seconds": round(now - self._began, 1),
        }
        waiting = self._edge_waiting
        if waiting is not None and not self._started.is_set():
            counters["waiting"] = waiting
        return counters

    def _watch(self) -> None:
        """Mark the run running when its sources start; write counters every interval."""
        interval = self.launcher.counters_interval
        marked_running = False
        while not self._ending.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            if self._ending.is_set():
                return
            try:
                if not marked_running and self._started.is_set():
                    marked_running = True
                    self._mark_running()
                self._write_counters()
            except Exception:
                log.exception("run %s: writing counters failed", self.run.id)

    def _mark_running(self) -> None:
        def change(run: Run) -> Run | None:
            if run.status is not RunStatus.STARTING:
                return None
            return run.model_copy(update={"status": RunStatus.RUNNING})

        running = update_run(self.services.store, self.run.id, change)
        if running is not None:
            log.info("run %s of pipeline %s running", self.run.id, self.run.pipeline_id)
            publish(self.services.feed, self.channel, status_message(running))

    def _write_counters(self) -> None:
        counters = self.counters()
        comparable = {k: v for k, v in counters.items() if k not in ("elapsed_seconds", "fps")}
        if comparable == self._last_counters:
            return
        self._last_counters = comparable

        def change(run: Run) -> Run | None:
            if not run.status.active:
                return None
            return run.model_copy(update={"counters": counters})

        if update_run(self.services.store, self.run.id, change) is None:
            return
        publish(
            self.services.feed,
            self.channel,
            {
                "type": "run.counters",
                "pipeline_id": self.run.pipeline_id,
                "run_id": self.run.id,
                "counters": counters,
            },
        )


def default_api_url(host: str, port: int) -> str:
    """``http://host:port`` of the API (an address for every interface becomes the
    loopback one; an IPv6 address is bracketed)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class LocalRunLauncher:
    """Runs pipelines in threads of this process (implements
    :class:`aios.services.RunLauncher`).

    Args:
        services: the process's ports (store, settings, clock, feed).
        data_dir: folder of run files and of the shared state file.
        max_concurrent: runs active at once (``settings.max_concurrent_streams``).
        counters_interval: seconds between counter writes.
        stop_grace_seconds: seconds after Stop that executions in flight get to finish
            before the run is marked ``stopped`` without them (module doc, "Stop").
        api_url: base URL of this service's API as connectors reach it, where they upload
            the media of runs on fleet cameras (default: :func:`default_api_url` of the
            settings' host and port).

    The launcher adds :meth:`receive_device_events` to ``services.device_event_hooks``.

    Raises:
        ValueError: a limit or interval that is not positive (the message names it).
    """

    def __init__(
        self,
        services: Services,
        *,
        data_dir: Path,
        max_concurrent: int,
        counters_interval: float = 1.0,
        stop_grace_seconds: float = STOP_GRACE_SECONDS,
        api_url: str | None = None,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent}")
        if counters_interval <= 0:
            raise ValueError(f"counters_interval must be positive, got {counters_interval}")
        if stop_grace_seconds < 0:
            raise ValueError(f"stop_grace_seconds must not be negative, got {stop_grace_seconds}")
        self.stop_grace_seconds = stop_grace_seconds
        self._draining: dict[str, threading.Thread] = {}
        self.services = services
        self.data_dir = data_dir
        self.max_concurrent = max_concurrent
        self.counters_interval = counters_interval
        self._runs: dict[str, LocalRun] = {}
        self._lock = threading.Lock()
        self._state: SqliteStateStore | None = None
        self._closed = False
        self.api_url = api_url or default_api_url(services.settings.host, services.settings.port)
        self._jwt_secret: bytes | None = None
        services.device_event_hooks.append(self.receive_device_events)

    def edge_streams(self, run: LocalRun) -> EdgeStreams:
        """The stream plans of ``run``, whose cameras are fleet cameras."""
        from aios.api.auth import issue_upload_grant, load_jwt_secret
        from aios.fleet.service import FleetService

        settings = self.services.settings
        with self._lock:
            if self._jwt_secret is None:
                self._jwt_secret = load_jwt_secret(settings)
            secret = self._jwt_secret

        def grant(connector_id: str) -> str:
            return issue_upload_grant(
                secret,
                run_id=run.run_id,
                connector_id=connector_id,
                issuer=settings.jwt_issuer,
                now=self.services.clock(),
            )

        return EdgeStreams(
            run, self.services, FleetService(self.services), api_url=self.api_url, grant=grant
        )

    def prune_edge_plans(self) -> dict[str, list[str]]:
        """Remove the stream plans of runs that are not active from the connectors'
        desired configurations (:func:`aios.runs.edge.prune_stale_plans`); call it at start,
        after the runs left active by a previous process were recovered."""
        from aios.fleet.service import FleetService

        return prune_stale_plans(self.services, FleetService(self.services))

    def receive_device_events(self, device_id: str, items: list[DeviceEventItem]) -> None:
        """Give device events to the runs whose stream tier runs at the edge (the hook of
        :data:`aios.services.DeviceEventsHook`): stream events to the run their
        ``data.run_id`` names, connectors' ``config.reported`` to the runs on them."""
        with self._lock:
            edges = [r.edge for r in self._runs.values() if r.edge is not None]
        if not edges:
            return
        for item in items:
            for edge in edges:
                try:
                    edge.receive(device_id, item)
                except Exception:
                    log.exception("run %s: taking an edge event failed", edge.host.run_id)

    def state_store(self) -> SqliteStateStore:
        """Return the state store shared by runs (``<data_dir>/state.sqlite``)."""
        with self._lock:
            if self._state is None:
                self._state = SqliteStateStore(self.data_dir / "state.sqlite")
            return self._state

    def start(self, run: Run, document: dict[str, Any]) -> None:
        """Start running ``document`` for ``run`` in a background thread; return at once.

        Raises:
            RunCapacityExceeded: ``max_concurrent`` runs are active already.
            LauncherUnavailable: the launcher is shut down (:meth:`shutdown`).
            aios.pipeline.validation.PipelineInvalid: the document does not validate.
            RuntimeError: the run is running already.
        """
        from aios.nodes import CATALOG

        pipeline = validate_pipeline(document, CATALOG)
        with self._lock:
            if self._closed:
                raise LauncherUnavailable(
                    "the service is shutting down; start the pipeline once it is back"
                )
            if run.id in self._runs:
                raise RuntimeError(f"run '{run.id}' is running already")
            if len(self._runs) >= self.max_concurrent:
                raise RunCapacityExceeded(
                    f"{len(self._runs)} pipeline runs are active, the most this machine runs "
                    f"at once (AIOS_MAX_CONCURRENT_STREAMS={self.max_concurrent}); stop one "
                    "or raise the limit"
                )
            local = LocalRun(self, run, pipeline)
            self._runs[run.id] = local
        local.start()

    def stop(self, run_id: str) -> None:
        """Ask the run to stop; return at once (it is marked ``stopped`` when it has).

        A run that is active in the store but not running in this process (nothing can
        stop it any more) is marked ``stopped`` at once.
        """
        with self._lock:
            local = self._runs.get(run_id)
        if local is not None:
            local.request_stop()
            return
        now = self.services.clock()

        def change(run: Run) -> Run | None:
            if not run.status.active:
                return None
            return run.model_copy(update={"status": RunStatus.STOPPED, "stopped_at": now})

        stopped = update_run(self.services.store, run_id, change)
        if stopped is not None:
            log.warning("run %s was not running in this process; marked stopped", run_id)
            publish(
                self.services.feed, pipeline_channel(stopped.pipeline_id), status_message(stopped)
            )

    def handle(self, run_id: str) -> LocalRun | None:
        """Return the run if it is running in this process."""
        with self._lock:
            return self._runs.get(run_id)

    def active_run_ids(self) -> list[str]:
        """Return the ids of the runs running in this process."""
        with self._lock:
            return sorted(self._runs)

    def drain_in_background(self, run_id: str, drain: Callable[[], None]) -> None:
        """Run ``drain`` (a run's abandoned executions ending) in a thread that
        :meth:`shutdown` waits for before closing the shared state."""

        def main() -> None:
            try:
                drain()
            finally:
                with self._lock:
                    self._draining.pop(run_id, None)

        thread = threading.Thread(target=main, name=f"run-{run_id}-drain", daemon=True)
        with self._lock:
            self._draining[run_id] = thread
        thread.start()

    def draining_run_ids(self) -> list[str]:
        """Return the ids of stopped runs whose abandoned executions are still ending."""
        with self._lock:
            return sorted(self._draining)

    def forget(self, run_id: str) -> None:
        """Drop an ended run (called by the run itself)."""
        with self._lock:
            self._runs.pop(run_id, None)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop every run and wait for them (graceful shutdown of ``aios up``).

        New starts are refused from now on; each run is marked ``stopping``, then
        ``stopped`` when its workers have stopped, clips finished and executions in
        flight done or given up (as by Stop: module doc). Abandoned executions get what
        is left of ``timeout`` to end; the shared state is closed only if they did. A run
        still going after ``timeout`` seconds is left to
        :meth:`aios.runs.service.PipelineRuns.recover` of the next start.
        """
        with self._lock:
            self._closed = True
            runs = list(self._runs.values())

        def to_stopping(run: Run) -> Run | None:
            if run.status not in (RunStatus.STARTING, RunStatus.RUNNING):
                return None
            return run.model_copy(update={"status": RunStatus.STOPPING})

        for local in runs:
            try:
                stopping = update_run(self.services.store, local.run.id, to_stopping)
                if stopping is not None:
                    publish(self.services.feed, local.channel, status_message(stopping))
            except Exception:
                log.exception("run %s: marking it stopping failed", local.run.id)
            local.request_stop()
        deadline = time.monotonic() + timeout
        ended = True
        for local in runs:
            if not local.join(max(0.0, deadline - time.monotonic())):
                ended = False
                log.warning("run %s did not stop within %.0f s", local.run.id, timeout)
        with self._lock:
            draining = list(self._draining.items())
        for run_id, thread in draining:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                ended = False
                log.warning(
                    "abandoned executions of run %s did not end within %.0f s", run_id, timeout
                )
        if ended:
            with self._lock:
                state, self._state = self._state, None
            if state is not None:
                state.close()
