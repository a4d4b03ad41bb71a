"""``aios run``: a whole pipeline on one machine — stream tier and event tier.

The stream tier runs over a file or camera; its events start executions of the compiled
event tier on the local ASL engine (conditions, actions...). Events recorded by dashboard
nodes go to the events file (one JSON object per line); every execution, with its action
results and history, goes to the executions file.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aios.catalog.base import Tier
from aios.events.compiler import CompileError
from aios.events.runtime import EventTier, ExecutionLog, SinkRecorder
from aios.events.secrets import ChainSecretStore, EnvSecretStore, FileSecretStore, SecretStore
from aios.events.state import MemoryStateStore, SqliteStateStore, StateStore
from aios.events.task import FolderBlobStore, TaskServices
from aios.pipeline.document import PipelineDocument, PipelineNode
from aios.pipeline.validation import PipelineInvalid, ValidatedPipeline, validate_pipeline
from aios.runtime.events import EventSink, JsonLinesSink
from aios.runtime.nodes import Overlay
from aios.runtime.stream import RunError, RunSummary, StreamRunner
from aios.vision.types import BGRImage, DetectionsFrame, Frame


class SourceOverrideError(ValueError):
    """``--source`` cannot be applied to this pipeline."""


@dataclass(frozen=True)
class BatchOptions:
    """Where a batch run writes its results.

    Attributes:
        events_path: JSON-lines file for events (``None``: standard output).
        media_dir: folder for snapshots and clips (``None``: ``media/`` beside the events
            file, or ``./out/media`` when events go to standard output).
        annotated_path: MP4 with boxes, zones and lines drawn (``None``: none).
        max_frames: stop each source after this many frames.
        progress: show a progress bar on standard error.
        executions_path: JSON-lines file of event-tier executions (``None``: not written).
        state_path: SQLite file for state kept between executions and runs (cooldowns,
            storage); ``None``: kept in memory for this run only.
        secrets_path: JSON file of secrets by name (after ``AIOS_SECRET_<NAME>`` variables).
    """

    events_path: Path | None = None
    media_dir: Path | None = None
    annotated_path: Path | None = None
    max_frames: int | None = None
    progress: bool = True
    executions_path: Path | None = None
    state_path: Path | None = None
    secrets_path: Path | None = None


def override_source(pipeline: ValidatedPipeline, source: str) -> ValidatedPipeline:
    """Return the pipeline with its single video input replaced by ``source``.

    ``source`` is an ``rtsp://`` URL (→ ``aios/camera.rtsp@1``), a webcam index such as
    ``0`` (→ ``aios/camera.webcam@1``) or a file path (→ ``aios/file.input@1``, keeping
    ``realtime`` and ``loop`` if the input was already a file).

    Raises:
        SourceOverrideError: the pipeline has no or several video inputs, or the file does
            not exist.
    """
    from aios.nodes import CATALOG

    inputs = pipeline.video_inputs()
    if len(inputs) != 1:
        raise SourceOverrideError(
            f"--source needs a pipeline with exactly one video input; this one has {len(inputs)}"
        )
    old = inputs[0].node
    config: dict[str, Any]
    scheme = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", source)
    if scheme and scheme.group(1).lower() not in ("rtsp", "rtsps"):
        raise SourceOverrideError(
            f"--source {source}: unsupported scheme '{scheme.group(1)}'; give a video file "
            "path, an rtsp:// URL or a webcam index"
        )
    if scheme:
        new_type, config = "aios/camera.rtsp@1", {"url": source}
    elif source.isdigit():
        new_type, config = "aios/camera.webcam@1", {"device_index": int(source)}
    else:
        if not source.startswith("asset:") and not Path(source).expanduser().is_file():
            raise SourceOverrideError(f"--source {source}: no such file")
        config = {"path": source}
        if old.type == "aios/file.input@1":
            config |= {k: v for k, v in old.config.items() if k in ("realtime", "loop")}
        new_type = "aios/file.input@1"
    doc = pipeline.document
    nodes = [
        PipelineNode(id=n.id, type=new_type, config=config, position=n.position, label=n.label)
        if n.id == old.id
        else n
        for n in doc.nodes
    ]
    try:
        return validate_pipeline(
            PipelineDocument.model_validate({**doc.model_dump(by_alias=True), "nodes": nodes}),
            CATALOG,
        )
    except PipelineInvalid as err:
        raise SourceOverrideError(f"--source {source}: {err}") from err


class _Annotator:
    """Writes every processed frame, with detections, zones and lines drawn, to an MP4.

    The frame rate is measured from the first two frames' timestamps.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer: Any = None
        self._first: tuple[BGRImage, float] | None = None

    def __call__(
        self,
        source_id: str,
        frame: Frame,
        values: Mapping[tuple[str, str], Any],
        overlays: list[Overlay],
    ) -> None:
        from aios.vision.annotate import VideoWriter, draw_detections

        image = frame.image.copy()
        for overlay in overlays:
            overlay.draw(image)
        # Draw the most complete detections value of this frame (the detector's output).
        best: DetectionsFrame | None = None
        for value in values.values():
            if (
                isinstance(value, DetectionsFrame)
                and not value.regions
                and (best is None or len(value.detections) > len(best.detections))
            ):
                best = value
        if best is not None:
            draw_detections(image, best.detections, copy=False)
        if self.writer is None:
            if self._first is None:
                self._first = (image, frame.pts_seconds)
                return
            first_image, first_pts = self._first
            step = frame.pts_seconds - first_pts
            fps = min(120.0, max(1.0, 1.0 / step)) if step > 0 else 10.0
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = VideoWriter(self.path, fps=fps, width=frame.width, height=frame.height)
            self.writer.write(first_image, pts_seconds=first_pts)
        self.writer.write(image, pts_seconds=frame.pts_seconds)

    def close(self) -> None:
        from aios.vision.annotate import VideoWriter

        if self.writer is None and self._first is not None and self.path.parent.is_dir():
            image, pts = self._first
            height, width = image.shape[:2]
            self.writer = VideoWriter(self.path, fps=10.0, width=width, height=height)
            self.writer.write(image, pts_seconds=pts)
        if self.writer is not None:
            self.writer.close()


def clip_buffer_seconds(pipeline: ValidatedPipeline, source_id: str) -> float:
    """Return the longest pre-event clip any node downstream of the source asks for."""
    longest = 0.0
    for node_id in pipeline.downstream_of(source_id):
        evidence = getattr(pipeline.nodes[node_id].config, "evidence", None)
        if evidence is not None and evidence.clip:
            longest = max(longest, float(evidence.clip_pre_seconds))
    return longest


class _Progress:
    """A progress bar on standard error (terminals only), created at the first frame so it
    knows the total of a batch file and does not mix with start-up errors."""

    def __init__(self, max_frames: int | None) -> None:
        self.max_frames = max_frames
        self.runner: StreamRunner | None = None
        self.bar: Any = None

    def _total(self) -> int | None:
        if self.runner is None or len(self.runner.workers) != 1:
            return None
        source = self.runner.workers[0].frame_source
        count = getattr(source, "frame_count", None)
        if not isinstance(count, int) or count <= 0 or getattr(source, "loop", False):
            return self.max_frames
        return min(count, self.max_frames) if self.max_frames else count

    def __call__(self, _source_id: str, _frame: Frame) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=self._total(),
                unit="frame",
                file=sys.stderr,
                dynamic_ncols=True,
                mininterval=0.5,
                disable=None,  # only on a terminal
            )
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextlib.contextmanager
def _progress(enabled: bool, max_frames: int | None) -> Iterator[_Progress | None]:
    if not enabled:
        yield None
        return
    progress = _Progress(max_frames)
    try:
        yield progress
    finally:
        progress.close()


def _event_tier(
    pipeline: ValidatedPipeline,
    options: BatchOptions,
    sink: EventSink,
    media_dir: Path,
    executions: ExecutionLog,
) -> EventTier | None:
    """Build the pipeline's event tier (``None`` if it has none)."""
    if not any(r.node_type.manifest.tier is Tier.EVENT for r in pipeline.nodes.values()):
        return None
    secrets: list[SecretStore] = [EnvSecretStore()]
    if options.secrets_path is not None:
        secrets.append(FileSecretStore(options.secrets_path))
    state: StateStore = (
        SqliteStateStore(options.state_path) if options.state_path else MemoryStateStore()
    )
    services = TaskServices(
        secrets=ChainSecretStore(*secrets),
        state=state,
        blobs=FolderBlobStore(media_dir),
        recorder=SinkRecorder(sink),
    )
    timezone = str(pipeline.document.metadata.get("timezone") or "UTC")
    try:
        return EventTier(pipeline, services, timezone=timezone, on_execution=executions.write)
    except CompileError as err:
        raise RunError(f"the event tier cannot be compiled: {err}") from err
    except (RuntimeError, ValueError) as err:
        raise RunError(str(err)) from err


def run_batch(
    pipeline: ValidatedPipeline,
    options: BatchOptions,
    *,
    sink: EventSink | None = None,
    install_stop: Callable[[Callable[[], None]], None] | None = None,
) -> tuple[RunSummary, StreamRunner]:
    """Run the pipeline to the end of its sources: stream tier, then event-tier executions.

    Returns:
        The run summary and the runner (for per-node counters).

    Raises:
        RunError: a node or source failed; the message names it.
    """
    from aios.runtime.evidence import EvidenceRecorder

    if sink is None:
        sink = (
            JsonLinesSink.open(options.events_path)
            if options.events_path is not None
            else JsonLinesSink(sys.stdout)
        )
    media_dir = options.media_dir or (
        options.events_path.parent / "media" if options.events_path else Path("out", "media")
    )
    recorders: dict[str, EvidenceRecorder] = {}

    def make_evidence(source_id: str) -> EvidenceRecorder:
        recorder = EvidenceRecorder(
            media_dir, source_id, buffer_seconds=clip_buffer_seconds(pipeline, source_id)
        )
        recorders[source_id] = recorder
        return recorder

    annotator = _Annotator(options.annotated_path) if options.annotated_path else None

    def on_frame(
        source_id: str,
        frame: Frame,
        values: Mapping[tuple[str, str], Any],
        overlays: list[Overlay],
    ) -> None:
        recorders[source_id].on_frame(frame)
        if annotator is not None:
            annotator(source_id, frame, values, overlays)

    tier = None
    executions = ExecutionLog(options.executions_path)
    try:
        tier = _event_tier(pipeline, options, sink, media_dir, executions)
        with _progress(options.progress, options.max_frames) as progress:
            runner = StreamRunner(
                pipeline,
                tier if tier is not None else sink,
                evidence=make_evidence,
                on_frame=on_frame,
                on_progress=progress,
                max_frames=options.max_frames,
            )
            if progress is not None:
                progress.runner = runner
            if install_stop is not None:
                install_stop(runner.stop)
            if tier is not None:
                tier.start_sources()
            summary = runner.run()
        if tier is not None:
            # Clips are finished when their sources end; executions may still be running.
            tier.close()
            summary.event_tier = tier.summary.to_json()
    except RunError:
        raise
    except Exception as err:
        raise RunError(str(err)) from err
    finally:
        if tier is not None:
            tier.close()
        for recorder in recorders.values():
            recorder.close()
        if annotator is not None:
            annotator.close()
        executions.close()
        sink.close()
    return summary, runner
