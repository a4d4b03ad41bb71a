"""Stream plans: the stream tier of pipelines the platform runs on this connector's cameras.

The platform pushes the plans in the retained desired configuration
(``cfg/aios/{connector_id}/desired``, key ``stream_plans``). Each plan binds the one video
input node of a pipeline to a camera of this connector; :class:`StreamPlanManager` runs
each plan's stream tier (:class:`aios.runtime.stream.StreamRunner`: motion gate, detection,
tracking, zones, lines, loitering, counting) in its own worker thread, fed by the camera's
:class:`~connector.cameras.CameraWorker`, and turns the events leaving the stream tier into
:class:`aios.messages.DeviceEventItem` for the camera (the daemon publishes them on the
connector's events topic with ``device_id`` = the camera id). :meth:`StreamPlanManager.apply`
reconciles: new plans start, changed plans (version or content) restart, removed plans
stop, the others are left untouched.

Detection runs on the CPU with onnxruntime. Plans that use the same model (file and input
size) share one onnxruntime session (:data:`SHARE_DETECTOR`). Measured with
``tests/bench/bench_shared_detector.py`` (YOLOv3-tiny 416, vtest.avi, 2 cores): one session
for N = 2–3 cameras gave 1.07–1.10× the total frames/s of one session each on a quiet
machine (within noise, 0.93–1.5×, on a loaded one), and each extra session costs ~75 MiB
of resident memory that sharing saves. Sharing is never slower beyond the noise and always
smaller, so it is on.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from aios.domain import DEVICE_ID_PATTERN
from aios.messages import DeviceEventItem
from aios.pipeline.document import PipelineDocument
from aios.pipeline.validation import PipelineInvalid, ValidatedPipeline, validate_pipeline
from aios.runs.media import RUN_ID, media_key, media_url
from aios.runtime.batch import clip_buffer_seconds
from aios.runtime.events import StreamEvent
from aios.runtime.evidence import EvidenceRecorder
from aios.runtime.stream import RunError, StreamRunner
from aios.vision.detector import Detector
from aios.vision.types import Frame
from connector.cameras import CameraWorker
from connector.media import MediaTarget, MediaUploader

log = logging.getLogger(__name__)

SHARE_DETECTOR = True
"""Plans using the same model run on one onnxruntime session (see the module docstring)."""

PLAN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
"""A plan id: 1–128 letters, digits, ``_ . -``, starting with a letter or digit (it names
the plan's media folder)."""

CAMERA_WAIT_SECONDS = 1.0
"""How often a plan whose camera is not configured looks for it again."""

CLIP_UPLOAD_MARGIN_SECONDS = 2.0
"""A clip is uploaded this long after its post-event seconds have passed."""

PlanState = Literal["running", "waiting_for_camera", "failed", "stopped"]
FrameListener = Callable[[Frame, Mapping[tuple[str, str], Any], Sequence[Any]], None]
"""Watches a plan's frames: the frame, its port values (detections among them) and the
plan's overlays (nodes drawing zones and lines with ``draw(image)``)."""

EVENT_SEVERITY: dict[str, Literal["info", "warning", "critical"]] = {
    "zone.enter": "warning",
    "line.cross": "info",
    "loitering": "warning",
    "zone.exit": "info",
    "count.changed": "info",
}
"""Severity of each stream event type unless the event's data gives one."""


class StreamPlan(BaseModel):
    """One entry of the desired configuration's ``stream_plans`` list.

    Attributes:
        plan_id: stable id of the plan (one per pipeline run and camera).
        version: increases with each change the platform makes (``revision`` accepted).
        camera_id: the camera of this connector the video input node is bound to.
        pipeline: the pipeline document; its stream tier runs here, with exactly one video
            input node (whose own source settings are ignored: the camera feeds it).
        run_id: the platform's run this plan belongs to (in every event's data).
        media: where snapshots and clips are uploaded (``None``: kept locally only).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    plan_id: str = Field(pattern=PLAN_ID_PATTERN)
    version: int = Field(ge=0, validation_alias=AliasChoices("version", "revision"))
    camera_id: str = Field(pattern=DEVICE_ID_PATTERN)
    pipeline: PipelineDocument
    run_id: str | None = Field(default=None, pattern=RUN_ID.pattern)
    media: MediaTarget | None = None

    def fingerprint(self) -> str:
        """SHA-256 of the plan's content: two plans run the same iff equal."""
        return hashlib.sha256(self.model_dump_json(by_alias=True).encode()).hexdigest()


def _catalog() -> Any:
    from aios.nodes import CATALOG

    return CATALOG


def validate_plan(plan: StreamPlan) -> tuple[ValidatedPipeline, str]:
    """Validate the plan's pipeline; return it and the id of its video input node.

    Raises:
        PipelineInvalid: the pipeline is not valid (every problem named).
        ValueError: the pipeline has no video input node, or more than one.
    """
    pipeline = validate_pipeline(plan.pipeline, _catalog())
    inputs = [r.id for r in pipeline.video_inputs()]
    if len(inputs) != 1:
        found = ", ".join(repr(i) for i in inputs) or "none"
        raise ValueError(
            f"a stream plan's pipeline needs exactly one video input node (bound to camera "
            f"{plan.camera_id!r}); found {found}"
        )
    return pipeline, inputs[0]


def parse_plans(config: Mapping[str, Any]) -> tuple[list[StreamPlan], list[str]]:
    """Read the ``stream_plans`` of a desired configuration.

    Returns:
        The valid plans, and one message per problem naming the plan's index and id and
        the field (``stream_plans[1] (plan 'p2'): pipeline.nodes.0.type: ...``). A plan with
        a problem is left out; an id used twice keeps the first. No ``stream_plans`` key:
        no plans.
    """
    raw = config.get("stream_plans")
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        return [], [f"stream_plans must be a list of plans, not {type(raw).__name__}"]
    plans: list[StreamPlan] = []
    errors: list[str] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        pid = entry.get("plan_id") if isinstance(entry, Mapping) else None
        where = f"stream_plans[{index}]" + (f" (plan {pid!r})" if isinstance(pid, str) else "")
        if not isinstance(entry, Mapping):
            errors.append(f"{where}: a plan is an object, not {type(entry).__name__}")
            continue
        try:
            plan = StreamPlan.model_validate(entry)
        except ValidationError as err:
            for e in err.errors(include_url=False):
                loc = ".".join(str(p) for p in e["loc"])
                msg = "unknown field" if e["type"] == "extra_forbidden" else e["msg"]
                errors.append(f"{where}: {loc}: {msg}")
            continue
        if plan.plan_id in seen:
            errors.append(f"{where}: plan_id {plan.plan_id!r} is used by an earlier plan")
            continue
        try:
            validate_plan(plan)
        except PipelineInvalid as err:
            errors.extend(f"{where}: pipeline: {issue}" for issue in err.issues)
            continue
        except ValueError as err:
            errors.append(f"{where}: pipeline: {err}")
            continue
        seen.add(plan.plan_id)
        plans.append(plan)
    return plans, errors


@dataclass
class PlanStatus:
    """What one plan is doing (reported to the platform).

    Attributes:
        state: ``running`` (frames flowing), ``waiting_for_camera`` (the camera is not
            configured, not yet streaming or down: ``error`` says why), ``failed`` (the
            pipeline could not start or a node failed: ``error``), ``stopped``.
        frames: frames processed since the plan (re)started.
        events: events emitted since the plan (re)started.
    """

    plan_id: str
    version: int
    camera_id: str
    state: PlanState
    frames: int = 0
    events: int = 0
    error: str | None = None


@dataclass
class PlanReport:
    """What :meth:`StreamPlanManager.apply` did, by plan id."""

    started: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _json_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    return value


def event_item(event: StreamEvent, plan: StreamPlan) -> DeviceEventItem:
    """Turn a stream event of ``plan`` into the device event the connector publishes.

    ``type`` is the event type, ``id`` the event's idempotency key, ``severity`` the
    event data's ``severity`` if valid, else :data:`EVENT_SEVERITY`. ``data`` carries the
    plan, run, pipeline, node, track, class, confidence, zone/line, direction, dwell, box
    (pixels, with the frame size) and media references (``kind``/``name``, and when the
    plan has a run the platform's media ``key`` and API ``url``, :mod:`aios.runs.media`).
    ``data.stream_event`` is the whole :class:`~aios.runtime.events.StreamEvent` as JSON,
    its ``snapshot``/``clip`` paths (files of this machine) replaced by media keys
    (``runs/<run_id>/media/<kind>/<name>``; ``<kind>/<name>`` for a plan without a run):
    the platform rebuilds the event from it and feeds it to the run's event tier as if
    its own stream tier had produced it (:mod:`aios.runs.edge`).

    Raises:
        pydantic.ValidationError: the event type does not match
            :data:`aios.messages.EVENT_TYPE_PATTERN` (a node bug).
    """
    extra = dict(event.data)
    severity = extra.pop("severity", None)
    if severity not in ("info", "warning", "critical"):
        severity = EVENT_SEVERITY.get(event.event_type, "info")
    data: dict[str, Any] = {
        "plan_id": plan.plan_id,
        "plan_version": plan.version,
        "run_id": plan.run_id,
        "pipeline": event.pipeline,
        "node_id": event.node_id,
        "node_type": event.node_type,
        "source_id": event.source_id,
        "frame_index": event.frame_index,
        "track_id": event.track_id,
        "class": event.class_name,
        "confidence": event.confidence,
        "zone": event.zone,
        "line": event.line,
        "direction": event.direction,
        "dwell_seconds": event.dwell_seconds,
        "bbox": _json_value(event.bbox),
        "frame_width": event.frame_width,
        "frame_height": event.frame_height,
        "outputs": list(event.outputs),
    }
    media: list[dict[str, str]] = []
    stream_event = event.model_dump(mode="json")
    for kind, field_name, path in (
        ("snapshots", "snapshot", event.snapshot),
        ("clips", "clip", event.clip),
    ):
        if path:
            ref = {"kind": kind, "name": Path(path).name}
            stream_event[field_name] = f"{kind}/{ref['name']}"
            if plan.run_id is not None:
                ref["key"] = media_key(plan.run_id, kind, ref["name"])
                ref["url"] = media_url(plan.run_id, kind, ref["name"])
                stream_event[field_name] = ref["key"]
            media.append(ref)
    data["stream_event"] = stream_event
    if media:
        data["media"] = media
    if extra:
        data["extra"] = extra
    data = {k: v for k, v in data.items() if v is not None}
    label = event.zone or event.line or ""
    message = f"{event.event_type}" + (f" {label}" if label else "")
    if event.class_name:
        message += f": {event.class_name}"
        if event.track_id is not None:
            message += f" #{event.track_id}"
    return DeviceEventItem(
        type=event.event_type,
        severity=severity,
        message=message,
        data=data,
        time=event.time,
        id=event.event_id,
    )


class _DetectorPool:
    """One onnxruntime session per model file and input size, shared by the plans."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, tuple[int, int]], Detector] = {}

    def share(self, runner: StreamRunner) -> int:
        """Point the runner's detection nodes at the shared sessions; return how many."""
        shared = 0
        for worker in runner.workers:
            for impl in worker.impls.values():
                detector = getattr(impl, "detector", None)
                if not isinstance(detector, Detector):
                    continue
                key = (str(detector.model_path.resolve()), detector.input_hw)
                with self._lock:
                    base = self._sessions.setdefault(key, detector)
                if base is detector:
                    continue
                detector.use_session_of(base)
                shared += 1
        return shared

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()


class _EventSink:
    """Collects a plan's events; flushed to the daemon once per frame."""

    def __init__(self, worker: _PlanWorker) -> None:
        self.worker = worker
        self.pending: list[StreamEvent] = []
        self.lock = threading.Lock()

    def write(self, event: StreamEvent) -> None:
        with self.lock:
            self.pending.append(event)

    def flush(self) -> None:
        with self.lock:
            events, self.pending = self.pending, []
        if events:
            self.worker.emit(events)

    def close(self) -> None:
        self.flush()


class _PlanWorker:
    """Runs one plan's stream tier in its own thread until stopped."""

    def __init__(self, manager: StreamPlanManager, plan: StreamPlan) -> None:
        self.manager = manager
        self.plan = plan
        self.fingerprint = plan.fingerprint()
        self.pipeline, self.input_id = validate_plan(plan)
        self.media_dir = manager.media_dir / plan.plan_id
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.runner: StreamRunner | None = None
        self.camera: CameraWorker | None = None
        self.state: PlanState = "waiting_for_camera"
        self.error: str | None = None
        self.frames = 0
        self.events = 0
        self.thread = threading.Thread(target=self._run, name=f"plan-{plan.plan_id}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float) -> None:
        self.stopping.set()
        with self.lock:
            runner = self.runner
        if runner is not None:
            runner.stop()
        self.thread.join(timeout)
        if self.thread.is_alive():
            log.warning("plan %s: worker still busy after stop", self.plan.plan_id)
        with self.lock:
            self.state = "stopped"

    def emit(self, events: list[StreamEvent]) -> None:
        items: list[DeviceEventItem] = []
        for event in events:
            try:
                items.append(event_item(event, self.plan))
            except ValidationError as err:
                log.error("plan %s: event %s dropped: %s", self.plan.plan_id, event.event_id, err)
                continue
            self._upload(event)
        if not items:
            return
        with self.lock:
            self.events += len(items)
        try:
            self.manager.emit_events(self.plan.camera_id, items)
        except Exception:
            log.exception("plan %s: emitting %d events failed", self.plan.plan_id, len(items))

    def _upload(self, event: StreamEvent) -> None:
        uploader = self.manager.uploader
        target = self.plan.media
        if uploader is None or target is None:
            return
        if event.snapshot:
            uploader.enqueue(Path(event.snapshot), "snapshots", target)
        if event.clip:
            post = self._clip_post_seconds(event.node_id)
            uploader.enqueue(
                Path(event.clip),
                "clips",
                target,
                not_before=time.monotonic() + post + CLIP_UPLOAD_MARGIN_SECONDS,
            )

    def _clip_post_seconds(self, node_id: str) -> float:
        node = self.pipeline.nodes.get(node_id)
        evidence = getattr(node.config, "evidence", None) if node is not None else None
        return float(getattr(evidence, "clip_post_seconds", 0.0))

    def status(self) -> PlanStatus:
        with self.lock:
            state, error = self.state, self.error
            camera = self.camera
        if state == "running" and camera is not None:
            health = camera.health()
            if health.state != "streaming":
                state = "waiting_for_camera"
                error = f"camera {self.plan.camera_id!r} is {health.state}" + (
                    f": {health.error}" if health.error else ""
                )
        return PlanStatus(
            plan_id=self.plan.plan_id,
            version=self.plan.version,
            camera_id=self.plan.camera_id,
            state=state,
            frames=self.frames,
            events=self.events,
            error=error,
        )

    def _set(self, state: PlanState, error: str | None) -> None:
        with self.lock:
            if not self.stopping.is_set():
                self.state, self.error = state, error

    def _run(self) -> None:
        plan = self.plan
        warned: str | None = None
        while not self.stopping.is_set():
            camera = self.manager.cameras(plan.camera_id)
            if camera is None or camera.stopped:
                why = (
                    f"camera {plan.camera_id!r} is not configured (or not enabled) on this "
                    "connector"
                    if camera is None
                    else f"camera {plan.camera_id!r} is stopped"
                )
                self._set("waiting_for_camera", why)
                if why != warned:  # once per cause, not every CAMERA_WAIT_SECONDS
                    log.warning("plan %s v%d waits: %s", plan.plan_id, plan.version, why)
                    warned = why
                self.stopping.wait(CAMERA_WAIT_SECONDS)
                continue
            warned = None
            with self.lock:
                self.camera = camera
            if not self._run_on(camera):
                return
            # The camera worker stopped (replaced or removed): look it up again.
            self.stopping.wait(0.2)

    def _run_on(self, camera: CameraWorker) -> bool:
        """Run the stream tier on ``camera`` until it or the plan stops; False: give up."""
        plan = self.plan
        recorder: EvidenceRecorder | None = None
        sink = _EventSink(self)

        def make_evidence(source_id: str) -> EvidenceRecorder:
            nonlocal recorder
            recorder = EvidenceRecorder(
                self.media_dir,
                source_id,
                buffer_seconds=clip_buffer_seconds(self.pipeline, source_id),
            )
            return recorder

        def on_frame(
            _source_id: str,
            frame: Frame,
            values: Mapping[tuple[str, str], Any],
            overlays: Sequence[Any],
        ) -> None:
            if recorder is not None:
                recorder.on_frame(frame)
            sink.flush()
            self.frames += 1
            for listener in self.manager.frame_listeners(plan.camera_id):
                try:
                    listener(frame, values, overlays)
                except Exception:
                    log.exception("plan %s: a frame listener failed", plan.plan_id)

        source = camera.subscribe(source_id=self.input_id)
        try:
            runner = StreamRunner(
                self.pipeline,
                sink,
                evidence=make_evidence,
                on_frame=on_frame,
                sources={self.input_id: source},
            )
            if self.manager.pool is not None:
                self.manager.pool.share(runner)
        except Exception as err:  # a node that cannot start (bad model, bad config)
            source.stop()
            self._set("failed", f"the pipeline cannot start: {err}")
            log.error("plan %s: %s", plan.plan_id, self.error)
            return False
        with self.lock:
            self.runner = runner
            if self.stopping.is_set():
                runner.stop()
        self._set("running", None)
        log.info("plan %s v%d: running on camera %s", plan.plan_id, plan.version, plan.camera_id)
        try:
            runner.run()
        except RunError as err:
            self._set("failed", str(err))
            log.error("plan %s: %s", plan.plan_id, err)
            return False
        finally:
            source.stop()
            sink.close()
            if recorder is not None:
                try:
                    recorder.close()
                except Exception:
                    log.exception("plan %s: finishing clips failed", plan.plan_id)
            with self.lock:
                self.runner = None
        return True


class StreamPlanManager:
    """Runs the stream plans pushed to this connector, one worker thread per plan.

    Args:
        cameras: looks a camera worker up by camera id (``None``: not configured or not
            enabled); called again whenever a plan's camera worker stops, so a camera that
            is replaced or added later is picked up.
        emit_events: called from plan threads with the camera id and the events of one
            frame; it must be thread-safe and not block for long (enqueue and return).
        media_dir: snapshots and clips go under ``media_dir/<plan_id>/``.
        uploader: uploads media of plans that name a target (started by the caller).
        share_detector: run plans using the same model on one onnxruntime session
            (default :data:`SHARE_DETECTOR`).
    """

    def __init__(
        self,
        cameras: Callable[[str], CameraWorker | None],
        emit_events: Callable[[str, list[DeviceEventItem]], None],
        *,
        media_dir: Path,
        uploader: MediaUploader | None = None,
        share_detector: bool = SHARE_DETECTOR,
    ) -> None:
        self.cameras = cameras
        self.emit_events = emit_events
        self.media_dir = Path(media_dir)
        self.uploader = uploader
        self.pool = _DetectorPool() if share_detector else None
        self._workers: dict[str, _PlanWorker] = {}
        self._failed: dict[str, PlanStatus] = {}
        self._lock = threading.Lock()
        self._listeners: dict[str, list[FrameListener]] = {}

    def add_frame_listener(self, camera_id: str, listener: FrameListener) -> Callable[[], None]:
        """Call ``listener(frame, port values, overlays)`` from the plan threads after each
        frame a plan processes on ``camera_id`` (the live view draws the plan's boxes, zones
        and lines with it). It must return quickly and change nothing it is given; an
        exception it raises is logged. Returns the function that removes it."""
        with self._lock:
            self._listeners.setdefault(camera_id, []).append(listener)

        def remove() -> None:
            with self._lock:
                listeners = self._listeners.get(camera_id, [])
                if listener in listeners:
                    listeners.remove(listener)
                if not listeners:
                    self._listeners.pop(camera_id, None)

        return remove

    def frame_listeners(self, camera_id: str) -> list[FrameListener]:
        """The listeners of ``camera_id``'s plans (a copy)."""
        with self._lock:
            return list(self._listeners.get(camera_id, ()))

    @property
    def workers(self) -> dict[str, threading.Thread]:
        """The worker thread of each plan, by plan id (a copy)."""
        with self._lock:
            return {pid: w.thread for pid, w in self._workers.items()}

    def apply(self, plans: Sequence[StreamPlan], timeout: float = 10.0) -> PlanReport:
        """Make the running plans match ``plans``.

        A plan not running is started; one whose version or content changed is stopped and
        started again; one no longer listed is stopped; the others keep running untouched.
        A plan whose pipeline does not validate is reported in ``failed`` (and in
        :meth:`status`); an older version of it keeps no worker.
        """
        report = PlanReport()
        wanted = {p.plan_id: p for p in plans}
        with self._lock:
            for pid in [p for p in self._workers if p not in wanted]:
                self._workers.pop(pid).stop(timeout)
                report.stopped.append(pid)
            for pid in [p for p in self._failed if p not in wanted]:
                del self._failed[pid]
            for pid, plan in wanted.items():
                current = self._workers.get(pid)
                if current is not None and current.fingerprint == plan.fingerprint():
                    report.unchanged.append(pid)
                    continue
                if current is not None:
                    self._workers.pop(pid).stop(timeout)
                try:
                    worker = _PlanWorker(self, plan)
                except (PipelineInvalid, ValueError) as err:
                    report.failed[pid] = str(err)
                    self._failed[pid] = PlanStatus(
                        plan.plan_id, plan.version, plan.camera_id, "failed", error=str(err)
                    )
                    if current is not None:
                        report.stopped.append(pid)
                    continue
                self._failed.pop(pid, None)
                self._workers[pid] = worker
                worker.start()
                (report.updated if current is not None else report.started).append(pid)
            if self.pool is not None and not self._workers:
                self.pool.clear()
        if report.started or report.updated or report.stopped or report.failed:
            log.info(
                "stream plans: started %s, updated %s, stopped %s, failed %s",
                report.started,
                report.updated,
                report.stopped,
                sorted(report.failed),
            )
        return report

    def status(self) -> list[PlanStatus]:
        """The state of every plan, running or failed, by plan id."""
        with self._lock:
            workers = list(self._workers.values())
            failed = list(self._failed.values())
        return sorted([w.status() for w in workers] + failed, key=lambda s: s.plan_id)

    def stop_all(self, timeout: float = 10.0) -> None:
        """Stop every plan (each waits up to ``timeout`` seconds)."""
        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
            self._failed.clear()
        for worker in workers:
            worker.stop(timeout)
        if self.pool is not None:
            self.pool.clear()
