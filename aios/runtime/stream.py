"""The stream tier runtime: runs the video side of a validated pipeline, frame by frame.

For every video input node the runner opens its source and drives the nodes downstream
of it in topological order, one frame at a time; each source runs in its own thread with
its own node instances (analytics state is per camera). Only stream-tier nodes run here;
an event that leaves the stream tier — along an edge into an event-tier node — is written
once to the run's event sink, with ``outputs`` naming the event-tier nodes it goes to (the
event tier, :mod:`aios.events.runtime`, takes it from there).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aios.catalog.base import Category, PortKind, Tier
from aios.pipeline.validation import ResolvedNode, ValidatedPipeline
from aios.runtime.context import Evidence, NodeContext, NoEvidence
from aios.runtime.events import EventSink, StreamEvent
from aios.runtime.nodes import (
    Closeable,
    Overlay,
    ProcessorNode,
    SinkNode,
    SourceNode,
)
from aios.vision.types import Frame, FrameSource

log = logging.getLogger(__name__)


class RunError(RuntimeError):
    """A node failed while the pipeline ran; the message names the node."""


@dataclass
class NodeStats:
    """Per-node counters of one run (what the monitor view shows)."""

    calls: int = 0
    seconds: float = 0.0
    events: int = 0


@dataclass
class SourceStats:
    """Counters of one source in one run."""

    frames: int = 0
    seconds: float = 0.0
    dropped_frames: int = 0


@dataclass
class RunSummary:
    """What a run did: frames per source, events written, per-node counters."""

    sources: dict[str, SourceStats] = field(default_factory=dict)
    nodes: dict[str, NodeStats] = field(default_factory=dict)
    events_written: int = 0
    wall_seconds: float = 0.0
    event_tier: dict[str, Any] = field(default_factory=dict)
    """The event tier's counters (executions by status, action results), if it ran."""

    @property
    def frames(self) -> int:
        """Frames processed over all sources."""
        return sum(s.frames for s in self.sources.values())


FrameHook = Callable[[str, Frame, Mapping[tuple[str, str], Any], list[Overlay]], None]
"""Called after each frame: source id, frame, port values, overlays (annotated output)."""

EvidenceFactory = Callable[[str], Evidence]
"""Builds the evidence service of one source (snapshots, clips), given the source id."""


def _flatten_events(values: list[Any]) -> list[StreamEvent]:
    out: list[StreamEvent] = []
    for value in values:
        if isinstance(value, list):
            out.extend(v for v in value if isinstance(v, StreamEvent))
        elif isinstance(value, StreamEvent):
            out.append(value)
    return out


@dataclass(frozen=True)
class _NodeStep:
    """How one node is fed and called on every frame, worked out once per run.

    ``feeds`` lists, per incoming edge, the output it reads (node id, port), the input port
    it fills, and whether that port collects a list (fan-in or events).
    """

    node_id: str
    node_type: str
    feeds: tuple[tuple[tuple[str, str], str, bool], ...]
    required: frozenset[str]
    requires_any: bool
    event_inputs: frozenset[str]
    is_output: bool
    call: Callable[[Any], Any]
    stats: NodeStats


class _SourceWorker:
    """Runs one source's subgraph: owns the node instances of that subgraph."""

    def __init__(
        self,
        runner: StreamRunner,
        source: ResolvedNode,
        evidence: Evidence,
    ) -> None:
        self.runner = runner
        self.source_node = source
        pipeline = runner.pipeline
        subgraph = pipeline.downstream_of(source.id)
        self.order = [
            nid
            for nid in pipeline.order
            if nid in subgraph
            and nid != source.id
            and pipeline.nodes[nid].node_type.manifest.tier is Tier.STREAM
        ]
        stream_ids = {source.id, *self.order}
        # Where events leave the stream tier: (node, port) -> event-tier nodes it feeds.
        self.boundary: dict[tuple[str, str], list[str]] = {}
        for nid in stream_ids:
            for edge in pipeline.outgoing.get(nid, ()):
                if edge.target not in stream_ids:
                    self.boundary.setdefault((nid, edge.source_handle), []).append(edge.target)
        self.evidence = evidence
        self.impls: dict[str, Any] = {}
        for nid in [source.id, *self.order]:
            rnode = pipeline.nodes[nid]
            ctx = NodeContext(
                pipeline=pipeline.document.name,
                node_id=nid,
                node_type=rnode.node.type,
                evidence=evidence,
                logger=logging.getLogger(f"aios.node.{nid}"),
            )
            try:
                self.impls[nid] = rnode.node_type.implementation(rnode.config, ctx)
            except Exception as err:
                raise RunError(f"node '{nid}' ({rnode.node.type}) cannot start: {err}") from err
        self.steps = [self._plan(nid) for nid in self.order]
        self.overlays = [i for i in self.impls.values() if isinstance(i, Overlay)]
        self.frame_source: FrameSource | None = None
        self.stats = SourceStats()
        self.error: BaseException | None = None

    def _plan(self, nid: str) -> _NodeStep:
        pipeline = self.runner.pipeline
        rnode = pipeline.nodes[nid]
        manifest = rnode.node_type.manifest
        feeds = []
        for edge in pipeline.incoming.get(nid, ()):
            port = manifest.input(edge.target_handle)
            assert port is not None  # validation checked every edge's ports
            collects = port.multiple or port.kind is PortKind.EVENT
            feeds.append(((edge.source, edge.source_handle), port.name, collects))
        impl = self.impls[nid]
        is_output = manifest.category is Category.OUTPUT
        if is_output:
            assert isinstance(impl, SinkNode)
            call: Callable[[Any], Any] = impl.handle
        else:
            assert isinstance(impl, ProcessorNode)
            call = impl.process
        return _NodeStep(
            node_id=nid,
            node_type=rnode.node.type,
            feeds=tuple(feeds),
            required=frozenset(p.name for p in manifest.inputs if p.required),
            requires_any=manifest.requires_any_input,
            event_inputs=frozenset(p.name for p in manifest.inputs if p.kind is PortKind.EVENT),
            is_output=is_output,
            call=call,
            stats=self.runner.summary.nodes[nid],
        )

    def step(self, frame: Frame) -> None:
        values: dict[tuple[str, str], Any] = {}
        for port in self.source_node.node_type.manifest.outputs:
            if port.kind is PortKind.FRAMES:
                values[(self.source_node.id, port.name)] = frame
        reached: dict[str, StreamEvent] = {}
        for node in self.steps:
            inputs: dict[str, Any] = {}
            for key, port_name, collects in node.feeds:
                value = values.get(key)
                if value is None:
                    continue
                if collects:
                    inputs.setdefault(port_name, []).append(value)
                else:
                    inputs[port_name] = value
            for name in node.event_inputs & inputs.keys():
                inputs[name] = _flatten_events(inputs[name])
            if not node.required <= inputs.keys() or (node.requires_any and not inputs):
                continue  # nothing flowed to a needed input on this frame
            argument: Any = inputs
            if node.is_output:  # a sink takes the list of events that reached it
                argument = [e for v in inputs.values() for e in v]
                if not argument:
                    continue
            started = time.perf_counter()
            try:
                result = node.call(argument)
            except Exception as err:
                raise RunError(
                    f"node '{node.node_id}' ({node.node_type}) failed on frame {frame.index} "
                    f"of '{frame.source_id}': {err}"
                ) from err
            finally:
                node.stats.calls += 1
                node.stats.seconds += time.perf_counter() - started
            if node.is_output:
                for event in result:
                    reached.setdefault(event.event_id, event).outputs.append(node.node_id)
                continue
            for name, value in result.items():
                if value is None:
                    continue
                values[(node.node_id, name)] = value
                if isinstance(value, list):
                    node.stats.events += sum(isinstance(v, StreamEvent) for v in value)
                    targets = self.boundary.get((node.node_id, name))
                    if targets:
                        for event in value:
                            if isinstance(event, StreamEvent):
                                reached.setdefault(event.event_id, event).outputs.extend(targets)
        for event in reached.values():
            self.runner.sink.write(event)
            self.runner.count_written()
        if self.runner.on_frame is not None:
            self.runner.on_frame(self.source_node.id, frame, values, self.overlays)

    def run(self) -> None:
        impl = self.impls[self.source_node.id]
        assert isinstance(impl, SourceNode)
        try:
            given = self.runner.sources.get(self.source_node.id)
            self.frame_source = given if given is not None else impl.open()
            if self.runner.stopping.is_set():
                self.frame_source.stop()
            started = time.perf_counter()
            for frame in self.frame_source.frames():
                if self.runner.stopping.is_set():
                    break
                self.step(frame)
                self.stats.frames += 1
                if self.runner.on_progress is not None:
                    self.runner.on_progress(self.source_node.id, frame)
                if (
                    self.runner.max_frames is not None
                    and self.stats.frames >= self.runner.max_frames
                ):
                    break
            self.stats.seconds = time.perf_counter() - started
            self.stats.dropped_frames = int(getattr(self.frame_source, "dropped_frames", 0))
        except BaseException as err:
            self.error = err
            self.runner.stopping.set()
        finally:
            if self.frame_source is not None:
                self.frame_source.stop()
            for nid, impl_ in self.impls.items():
                if isinstance(impl_, Closeable):
                    try:
                        impl_.close()
                    except Exception:
                        log.exception("closing node %s failed", nid)


class StreamRunner:
    """Runs the stream tier of a validated pipeline until its sources end or :meth:`stop`.

    Args:
        pipeline: a validated pipeline.
        sink: where events that reach output nodes are written.
        evidence: builds each source's snapshot/clip service (default: save nothing).
        on_frame: called after each processed frame (annotated output, live view).
        on_progress: called after each frame with the source id and frame (progress bars).
        max_frames: stop each source after this many frames (``None``: until it ends).
        sources: frame sources that feed input nodes instead of the node opening its own,
            by input node id (a camera captured elsewhere, shared by several pipelines);
            the runner stops them when it ends. A key that is not a video input node of
            the pipeline raises :class:`RunError`.
    """

    def __init__(
        self,
        pipeline: ValidatedPipeline,
        sink: EventSink,
        *,
        evidence: EvidenceFactory | None = None,
        on_frame: FrameHook | None = None,
        on_progress: Callable[[str, Frame], None] | None = None,
        max_frames: int | None = None,
        sources: Mapping[str, FrameSource] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.sources: Mapping[str, FrameSource] = dict(sources or {})
        self.sink = sink
        self.on_frame = on_frame
        self.on_progress = on_progress
        self.max_frames = max_frames
        self.stopping = threading.Event()
        self.summary = RunSummary(nodes={nid: NodeStats() for nid in pipeline.nodes})
        self._lock = threading.Lock()
        make_evidence = evidence or (lambda _source_id: NoEvidence())
        inputs = pipeline.video_inputs()
        if not inputs:
            raise RunError("the pipeline has no video input node; nothing to run")
        unknown = sorted(set(self.sources) - {s.id for s in inputs})
        if unknown:
            raise RunError(
                f"sources given for {unknown}, which are not video input nodes of the pipeline"
            )
        self.workers = [_SourceWorker(self, s, make_evidence(s.id)) for s in inputs]

    def count_written(self) -> None:
        """Count one event written (thread-safe)."""
        with self._lock:
            self.summary.events_written += 1

    def stop(self) -> None:
        """Ask every source to stop; :meth:`run` returns soon after."""
        self.stopping.set()
        for worker in self.workers:
            if worker.frame_source is not None:
                worker.frame_source.stop()

    def run(self) -> RunSummary:
        """Run every source to its end (or until stopped); raise the first node failure."""
        started = time.perf_counter()
        if len(self.workers) == 1:
            self.workers[0].run()
        else:
            threads = [
                threading.Thread(target=w.run, name=f"source-{w.source_node.id}", daemon=True)
                for w in self.workers
            ]
            for t in threads:
                t.start()
            for t in threads:
                while t.is_alive():
                    t.join(timeout=0.5)
        self.summary.wall_seconds = time.perf_counter() - started
        for worker in self.workers:
            self.summary.sources[worker.source_node.id] = worker.stats
        for worker in self.workers:
            if worker.error is not None:
                if isinstance(worker.error, RunError):
                    raise worker.error
                raise RunError(
                    f"source '{worker.source_node.id}' failed: {worker.error}"
                ) from worker.error
        return self.summary
