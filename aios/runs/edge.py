"""Edge placement: the stream tier of a pipeline runs on the connector of its fleet cameras.

A pipeline whose video inputs are fleet cameras (``aios/camera.device@1``) is played by
``aios up`` without capturing anything itself:

1. Each camera is looked up in the fleet, then its connector (the camera's ``parent_id``,
   a device of kind ``connector``). A camera that is not registered, or has no connector,
   fails the run with a message saying what to fix. A pipeline that mixes fleet cameras
   with other video inputs (files, RTSP, webcams) is refused: its other inputs would have
   to run here and its fleet cameras there.
2. Per fleet camera node a stream plan (:class:`connector.streams.StreamPlan` as JSON) is
   merged into the connector's desired configuration, key ``stream_plans``, with
   :meth:`~aios.fleet.service.FleetService.set_desired_config` (stored, published retained
   on ``cfg/aios/{connector_id}/desired``): ``plan_id`` ``"<run_id>.<node_id>"``,
   ``version`` 1, the camera, the run id, the pipeline document (the whole document for
   one camera; for several, each camera's part: its node and everything downstream of
   it) and the media target: ``PUT {api_url}/api/v1/runs/{run_id}/media/{kind}/{name}``
   with ``Authorization: Bearer <upload grant>`` (:func:`aios.api.auth.issue_upload_grant`,
   for this run and connector). The change is a read-modify-write checked by the desired
   version and retried on :class:`~aios.store.port.Conflict`; plans of other runs that are
   still active are kept, plans of runs that are not (a process that ended without
   removing them) are dropped.
3. The connector runs the stream tier and publishes each event that leaves it on its events
   topic, ``data.stream_event`` carrying the whole event (:func:`connector.streams.event_item`).
   The ingester stores it as a device event and gives it to the run launcher's hook
   (:data:`aios.services.DeviceEventsHook`); :class:`EdgeStreams` rebuilds the
   :class:`~aios.runtime.events.StreamEvent` — its snapshot and clip named by files of the
   run's media folder, where the connector uploads them — and the run takes it as it takes
   the events of its own stream tier: into its event tier (or stored when it has none),
   counted, stored once per run (duplicates delivered again are dropped here first), with
   ``data.snapshot_url`` serving the uploaded JPEG.
4. The run is ``running`` once the connector reports a plan running (its
   ``config.reported`` event) or at the first event; a plan the connector reports failed,
   or refuses, fails the run with the connector's reason.
5. On Stop (or any end) the run's plans are removed from the desired configuration the same
   way, and the connector stops their workers.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from aios.domain import DeviceKind
from aios.messages import CONFIG_REPORTED, ConfigReport, DeviceEventItem
from aios.nodes.camera_device import TYPE_ID, DeviceCameraConfig
from aios.pipeline.validation import PipelineInvalid, ValidatedPipeline, validate_pipeline
from aios.runs.media import RUN_ID, media_key, media_url, valid_media_name
from aios.runtime.events import StreamEvent
from aios.store.port import Conflict, DeviceQuery, NotFound

if TYPE_CHECKING:
    from aios.fleet.service import FleetService
    from aios.services import Services

log = logging.getLogger(__name__)

FLEET_CAMERA_TYPE = TYPE_ID
"""The node type of a fleet camera (:mod:`aios.nodes.camera_device`)."""

STREAM_PLANS_KEY = "stream_plans"
"""Key of a connector's desired configuration holding its stream plans."""

PLAN_VERSION = 1
"""A run's plans never change while it runs: a change is a new run."""

UPDATE_ATTEMPTS = 10
"""Read-modify-write attempts on a connector's desired configuration before giving up."""

SEEN_EVENTS_KEPT = 10_000
"""Recent event ids a run remembers to drop a duplicate delivery before its event tier."""

ACTOR = "aios (edge placement)"
"""The actor of the desired-configuration changes, in the device's history."""


class EdgePlacementError(RuntimeError):
    """The pipeline cannot run at the edge as it is; the message says what to change."""


@dataclass(frozen=True)
class EdgeSource:
    """A fleet camera node of a pipeline and where it runs.

    Attributes:
        node_id: the pipeline's ``aios/camera.device@1`` node.
        camera_id: the camera's device id (the node's ``device_id``).
        connector_id: the camera's connector (its ``parent_id``).
    """

    node_id: str
    camera_id: str
    connector_id: str


def fleet_cameras(pipeline: ValidatedPipeline) -> dict[str, str]:
    """The fleet camera nodes of ``pipeline``: node id → camera device id."""
    return {
        nid: r.config.device_id
        for nid, r in pipeline.nodes.items()
        if isinstance(r.config, DeviceCameraConfig)
    }


FLEET_PLC_WRITE_TYPE = "aios/plc_write@1"
"""The node type that may name a fleet PLC (``config.device_id``, :mod:`aios.nodes.plc_write`)."""


def fleet_plcs(pipeline: ValidatedPipeline) -> dict[str, str]:
    """The PLC write nodes of ``pipeline`` that name a fleet PLC: node id → PLC device id."""
    found: dict[str, str] = {}
    for nid, r in pipeline.nodes.items():
        if r.node_type.type_id != FLEET_PLC_WRITE_TYPE:
            continue
        device_id = getattr(r.config, "device_id", None)
        if isinstance(device_id, str) and device_id:
            found[nid] = device_id
    return found


def fleet_plc_problems(services: Services, pipeline: ValidatedPipeline) -> list[tuple[str, str]]:
    """Every reason a PLC write node's fleet PLC cannot be written, as ``(node id,
    message)``: the device is not in the fleet, is not a PLC, has no connector parent, or
    its parent is not a registered connector (a fleet PLC is written by its connector)."""
    devices = services.store.devices
    problems: list[tuple[str, str]] = []
    for node_id, plc_id in sorted(fleet_plcs(pipeline).items()):
        plc = devices.get(plc_id)
        if plc is None:
            message = (
                f"PLC {plc_id!r} is not in the fleet; register it (list it in its "
                "connector's file) or choose a registered PLC"
            )
        elif plc.kind is not DeviceKind.PLC:
            message = f"device {plc_id!r} is a {plc.kind.value}, not a PLC; choose a PLC"
        elif plc.parent_id is None:
            message = (
                f"PLC {plc_id!r} has no connector: a fleet PLC is written by the connector "
                "it is attached to (its parent); set the PLC's parent, or give "
                "config.connection to write it directly"
            )
        else:
            parent = devices.get(plc.parent_id)
            if parent is not None and parent.kind is DeviceKind.CONNECTOR:
                continue
            what = "not in the fleet" if parent is None else f"a {parent.kind.value}"
            message = (
                f"PLC {plc_id!r} is attached to {plc.parent_id!r}, which is {what}, not a "
                "connector; attach the PLC to its connector"
            )
        problems.append((node_id, f"node '{node_id}': {message}"))
    return problems


def runs_at_edge(pipeline: ValidatedPipeline) -> bool:
    """Whether ``pipeline`` has a fleet camera (its stream tier then runs at the edge)."""
    return bool(fleet_cameras(pipeline))


def placement_problems(
    services: Services, pipeline: ValidatedPipeline
) -> tuple[list[EdgeSource], list[tuple[str | None, str]]]:
    """Find the connector of each fleet camera of ``pipeline``, and every reason it cannot
    be placed at the edge, as ``(node id or None for the whole pipeline, message)``: it
    mixes fleet cameras with other video inputs; a camera is not in the fleet, is not a
    camera, or has no connector parent; a parent is not a registered connector. Also the
    problems of the fleet PLCs that PLC write nodes name (:func:`fleet_plc_problems`; the
    node ids of :func:`fleet_plcs`)."""
    cameras = fleet_cameras(pipeline)
    problems: list[tuple[str | None, str]] = []
    others = sorted(set([r.id for r in pipeline.video_inputs()]) - set(cameras))
    if cameras and others:
        problems.append(
            (
                None,
                "this pipeline mixes fleet cameras ("
                + ", ".join(repr(n) for n in sorted(cameras))
                + ") with video inputs that would run on this machine ("
                + ", ".join(repr(n) for n in others)
                + "); a fleet camera's analysis runs on its connector: put the other inputs "
                "in a pipeline of their own",
            )
        )
    devices = services.store.devices
    sources = []
    for node_id, camera_id in sorted(cameras.items()):
        camera = devices.get(camera_id)
        if camera is None:
            problems.append(
                (
                    node_id,
                    f"node '{node_id}': camera {camera_id!r} is not in the fleet; register it "
                    "(list it in its connector's file) or choose a registered camera",
                )
            )
            continue
        if camera.kind is not DeviceKind.CAMERA:
            problems.append(
                (
                    node_id,
                    f"node '{node_id}': device {camera_id!r} is a {camera.kind.value}, not a "
                    "camera; choose a camera",
                )
            )
            continue
        if camera.parent_id is None:
            problems.append(
                (
                    node_id,
                    f"node '{node_id}': camera {camera_id!r} has no connector: a fleet camera "
                    "is analysed by the connector it is attached to (its parent); set the "
                    "camera's parent, or use aios/camera.rtsp@1 to analyse it on this machine",
                )
            )
            continue
        parent = devices.get(camera.parent_id)
        if parent is None or parent.kind is not DeviceKind.CONNECTOR:
            what = "not in the fleet" if parent is None else f"a {parent.kind.value}"
            problems.append(
                (
                    node_id,
                    f"node '{node_id}': camera {camera_id!r} is attached to "
                    f"{camera.parent_id!r}, which is {what}, not a connector; attach the "
                    "camera to its connector",
                )
            )
            continue
        sources.append(EdgeSource(node_id, camera_id, parent.id))
    problems.extend(fleet_plc_problems(services, pipeline))
    return sources, problems


def locate_sources(services: Services, pipeline: ValidatedPipeline) -> list[EdgeSource]:
    """Find the connector of each fleet camera of ``pipeline``.

    Raises:
        EdgePlacementError: the first problem :func:`placement_problems` finds.
    """
    sources, problems = placement_problems(services, pipeline)
    if problems:
        raise EdgePlacementError(problems[0][1])
    return sources


def plan_id(run_id: str, node_id: str) -> str:
    """The id of the stream plan of ``node_id`` in run ``run_id``: ``"<run_id>.<node_id>"``."""
    return f"{run_id}.{node_id}"


def plan_document(pipeline: ValidatedPipeline, node_id: str) -> dict[str, Any]:
    """The pipeline document a connector runs for fleet camera ``node_id``: the whole
    document when it is the only video input, else the node and everything downstream.

    Raises:
        EdgePlacementError: that part of the pipeline is not a valid pipeline by itself.
    """
    document = pipeline.document.model_dump(mode="json", by_alias=True, exclude_none=True)
    if len([r.id for r in pipeline.video_inputs()]) == 1:
        return document
    keep = pipeline.downstream_of(node_id)
    document["nodes"] = [n for n in document["nodes"] if n["id"] in keep]
    document["edges"] = [
        e for e in document["edges"] if e["source"] in keep and e["target"] in keep
    ]
    from aios.nodes import CATALOG

    try:
        validate_pipeline(document, CATALOG)
    except PipelineInvalid as err:
        raise EdgePlacementError(
            f"the part of the pipeline fed by fleet camera '{node_id}' is not a pipeline by "
            f"itself ({'; '.join(str(i) for i in err.issues)}); give each camera its own "
            "branch"
        ) from err
    return document


def upload_target(api_url: str, run_id: str, grant: str) -> dict[str, Any]:
    """The media target of a run's plans (:class:`connector.media.MediaTarget` as JSON)."""
    base = api_url.rstrip("/")
    prefix = media_url(run_id, "{kind}", "{name}")
    return {"upload_url": base + prefix, "headers": {"Authorization": f"Bearer {grant}"}}


def stream_plan(
    run_id: str, source: EdgeSource, document: dict[str, Any], media: dict[str, Any]
) -> dict[str, Any]:
    """One ``stream_plans`` entry (:class:`connector.streams.StreamPlan` as JSON)."""
    return {
        "plan_id": plan_id(run_id, source.node_id),
        "version": PLAN_VERSION,
        "camera_id": source.camera_id,
        "pipeline": document,
        "run_id": run_id,
        "media": media,
    }


def _plans(config: Mapping[str, Any]) -> list[Any]:
    plans = config.get(STREAM_PLANS_KEY)
    return list(plans) if isinstance(plans, list) else []


def update_stream_plans(
    fleet: FleetService,
    connector_id: str,
    change: Callable[[list[Any]], list[Any]],
) -> bool:
    """Replace the connector's ``stream_plans`` by ``change(current plans)``.

    A read-modify-write of its desired configuration (the rest of it kept), checked by
    ``desired_version`` and retried on :class:`~aios.store.port.Conflict` (another run's
    plans changing at the same time). Nothing is written when ``change`` changes nothing.

    Returns:
        Whether a new desired configuration was stored (and published).

    Raises:
        EdgePlacementError: the connector is not in the fleet, or its desired configuration
            kept changing for :data:`UPDATE_ATTEMPTS` attempts.
        aios.fleet.service.InvalidRequest: the configuration would be too large (too many
            plans for one MQTT message).
    """
    for _ in range(UPDATE_ATTEMPTS):
        device = fleet.store.devices.get(connector_id)
        if device is None:
            raise EdgePlacementError(f"connector {connector_id!r} is not in the fleet")
        config = dict(device.desired_config)
        current = _plans(config)
        wanted = change(list(current))
        if wanted == current:
            return False
        config[STREAM_PLANS_KEY] = wanted
        try:
            fleet.set_desired_config(
                connector_id, config, expected_version=device.desired_version, actor=ACTOR
            )
        except Conflict:
            continue
        except NotFound as err:
            raise EdgePlacementError(f"connector {connector_id!r} is not in the fleet") from err
        return True
    raise EdgePlacementError(
        f"the desired configuration of connector {connector_id!r} kept changing; try again"
    )


def _run_of(plan: Any) -> str | None:
    if not isinstance(plan, Mapping):
        return None
    run_id = plan.get("run_id")
    return run_id if isinstance(run_id, str) else None


def stream_event_of(item: DeviceEventItem, run_id: str, media_dir: Path) -> StreamEvent | None:
    """Rebuild the stream event a connector published for run ``run_id``.

    Its snapshot and clip (media keys of the run, ``data.stream_event``) become the paths
    the uploaded files have in ``media_dir`` (``<media_dir>/<kind>/<name>``); a key of
    another run, or a name that is not a media name, is dropped.

    Returns:
        The event, or ``None`` when the item carries none (not a stream event of a plan).

    Raises:
        ValueError: ``data.stream_event`` is not a valid stream event (the message names
            the fields).
    """
    raw = item.data.get("stream_event")
    if not isinstance(raw, Mapping):
        return None
    fields = dict(raw)
    for field_name, kind in (("snapshot", "snapshots"), ("clip", "clips")):
        value = fields.get(field_name)
        fields[field_name] = None
        if not isinstance(value, str):
            continue
        name = value.rsplit("/", 1)[-1]
        if value != media_key(run_id, kind, name) or not valid_media_name(kind, name):
            continue
        fields[field_name] = str(media_dir / kind / name)
    try:
        return StreamEvent.model_validate(fields)
    except ValidationError as err:
        problems = ", ".join(
            ".".join(str(p) for p in e["loc"]) + f" ({e['type']})"
            for e in err.errors(include_url=False)
        )
        raise ValueError(f"data.stream_event is not a stream event: {problems}") from None


def prune_stale_plans(services: Services, fleet: FleetService) -> dict[str, list[str]]:
    """Remove, from every connector's desired configuration, the stream plans of runs that
    are not active (a process that ended without removing them: call it after
    :meth:`aios.runs.service.PipelineRuns.recover` at start).

    Returns:
        The plan ids removed, by connector id (connectors left unchanged are not listed).
    """
    runs = services.store.runs
    connectors = []
    cursor: str | None = None
    while True:
        page = services.store.devices.list(
            DeviceQuery(kind=DeviceKind.CONNECTOR), limit=1000, cursor=cursor
        )
        connectors.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    removed: dict[str, list[str]] = {}
    for device in connectors:
        stale = [
            str(p.get("plan_id"))
            for p in _plans(device.desired_config)
            if (run_id := _run_of(p)) is not None
            and ((record := runs.get(run_id)) is None or not record.status.active)
        ]
        if not stale:
            continue

        def dropping(current: list[Any], stale: list[str] = stale) -> list[Any]:
            return [
                p for p in current if not (isinstance(p, Mapping) and p.get("plan_id") in stale)
            ]

        try:
            update_stream_plans(fleet, device.id, dropping)
        except Exception:
            log.exception("removing stale stream plans from connector %s failed", device.id)
            continue
        removed[device.id] = stale
        log.info("stream plans of ended runs removed from connector %s: %s", device.id, stale)
    return removed


class EdgeRunHost(Protocol):
    """What :class:`EdgeStreams` needs of its run (:class:`aios.runs.local.LocalRun`)."""

    @property
    def run_id(self) -> str:
        """The run's id."""
        ...

    @property
    def media_dir(self) -> Path:
        """The run's media folder (``<data_dir>/runs/<run_id>/media``)."""
        ...

    def take_edge_event(self, event: StreamEvent) -> None:
        """Handle one event of the run's stream tier that ran at the edge."""

    def edge_started(self) -> None:
        """The connector runs the stream tier: the run is running."""

    def edge_failed(self, message: str) -> None:
        """The connector cannot run the stream tier: the run fails with ``message``."""

    def edge_waiting(self, reason: str | None) -> None:
        """The connector has the plan but its camera is down: show ``reason``."""


class EdgeStreams:
    """The stream plans of one run: pushed to the connectors, their events taken in.

    Args:
        host: the run.
        services: the process's ports (the store, the device link through the fleet).
        fleet: changes the connectors' desired configurations.
        api_url: base URL of this API as the connectors reach it (``http://host:port``).
        grant: issues the upload grant of a connector (its id → the grant).
    """

    def __init__(
        self,
        host: EdgeRunHost,
        services: Services,
        fleet: FleetService,
        *,
        api_url: str,
        grant: Callable[[str], str],
    ) -> None:
        if RUN_ID.fullmatch(host.run_id) is None:
            raise ValueError(f"run id {host.run_id!r} cannot name media files")
        self.host = host
        self.services = services
        self.fleet = fleet
        self.api_url = api_url
        self.grant = grant
        self.sources: list[EdgeSource] = []
        self._plans: dict[str, EdgeSource] = {}
        self._published: set[str] = set()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._started = False
        self._closed = False

    @property
    def connectors(self) -> set[str]:
        """The connectors running (or asked to run) plans of the run."""
        return {s.connector_id for s in self.sources}

    @property
    def plan_ids(self) -> set[str]:
        """The ids of the run's plans."""
        return set(self._plans)

    def start(self, pipeline: ValidatedPipeline) -> None:
        """Locate the cameras' connectors and push a plan per fleet camera.

        Raises:
            EdgePlacementError: see :func:`locate_sources`, :func:`plan_document` and
                :func:`update_stream_plans` (plans pushed already are removed again).
        """
        run_id = self.host.run_id
        self.sources = locate_sources(self.services, pipeline)
        by_connector: dict[str, list[dict[str, Any]]] = {}
        for source in self.sources:
            media = upload_target(self.api_url, run_id, self.grant(source.connector_id))
            document = plan_document(pipeline, source.node_id)
            plan = stream_plan(run_id, source, document, media)
            self._plans[plan["plan_id"]] = source
            by_connector.setdefault(source.connector_id, []).append(plan)
        try:
            for connector_id, plans in sorted(by_connector.items()):
                self._published.add(connector_id)
                update_stream_plans(self.fleet, connector_id, self._adding(plans))
                log.info(
                    "run %s: stream plans %s pushed to connector %s",
                    run_id,
                    [p["plan_id"] for p in plans],
                    connector_id,
                )
        except Exception:
            self.stop()
            raise

    def _adding(self, plans: list[dict[str, Any]]) -> Callable[[list[Any]], list[Any]]:
        ours = {p["plan_id"] for p in plans}
        runs = self.services.store.runs

        def change(current: list[Any]) -> list[Any]:
            kept = []
            for plan in current:
                if isinstance(plan, Mapping) and plan.get("plan_id") in ours:
                    continue
                other = _run_of(plan)
                if other is not None and other != self.host.run_id:
                    record = runs.get(other)
                    if record is None or not record.status.active:
                        continue  # left behind by a run that has ended
                kept.append(plan)
            return kept + plans

        return change

    def stop(self) -> None:
        """Remove the run's plans from their connectors' desired configurations (once;
        a failure is logged: the plans are then dropped by the next run's push)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            connectors = sorted(self._published)
        run_id = self.host.run_id

        def removing(current: list[Any]) -> list[Any]:
            return [p for p in current if _run_of(p) != run_id]

        for connector_id in connectors:
            try:
                if update_stream_plans(self.fleet, connector_id, removing):
                    log.info("run %s: stream plans removed from connector %s", run_id, connector_id)
            except Exception:
                log.exception(
                    "run %s: removing its stream plans from connector %s failed",
                    run_id,
                    connector_id,
                )

    def receive(self, device_id: str, item: DeviceEventItem) -> None:
        """Take one event a device published (its ``data.run_id`` is this run's).

        ``config.reported`` events of the run's connectors mark it running (a plan reported
        ``running``) or failed (a plan reported ``failed``, or refused); stream events of
        its cameras go to the run, each event id once.
        """
        if item.type == CONFIG_REPORTED:
            if device_id in self.connectors:
                self._on_report(device_id, item.data)
            return
        if item.data.get("run_id") != self.host.run_id:
            return
        if device_id not in {s.camera_id for s in self.sources}:
            log.warning(
                "run %s: an event from %s, not one of its cameras, was ignored",
                self.host.run_id,
                device_id,
            )
            return
        plan = item.data.get("plan_id")
        if plan not in self._plans:
            return
        try:
            event = stream_event_of(item, self.host.run_id, self.host.media_dir)
        except ValueError as err:
            log.error(
                "run %s: an event of camera %s was dropped: %s", self.host.run_id, device_id, err
            )
            return
        if event is None:
            return
        with self._lock:
            if self._closed or event.event_id in self._seen:
                return
            self._seen[event.event_id] = None
            while len(self._seen) > SEEN_EVENTS_KEPT:
                self._seen.popitem(last=False)
            first = not self._started
            self._started = True
        if first:
            self.host.edge_started()
        self.host.take_edge_event(event)

    def _on_report(self, connector_id: str, data: Mapping[str, Any]) -> None:
        try:
            report = ConfigReport.model_validate(data)
        except ValidationError:
            return
        statuses = (report.config or {}).get(STREAM_PLANS_KEY)
        mine = {
            str(s.get("plan_id")): s
            for s in (statuses if isinstance(statuses, list) else [])
            if isinstance(s, Mapping) and s.get("plan_id") in self._plans
        }
        for pid, status in sorted(mine.items()):
            state, error = status.get("state"), str(status.get("error") or "")
            if state == "waiting_for_camera" and "not configured" in error:
                # the connector's file lacks the camera: it will never start by itself
                self.host.edge_failed(
                    f"connector {connector_id!r} has no camera for the stream plan of node "
                    f"'{self._plans[pid].node_id}': {error}; add the camera to the "
                    "connector's configuration, or bind the node to a camera it has"
                )
                return
            if state == "waiting_for_camera":
                self.host.edge_waiting(f"connector {connector_id!r}: {error or 'camera down'}")
            if status.get("state") == "failed":
                self.host.edge_failed(
                    f"connector {connector_id!r} cannot run the stream plan of node "
                    f"'{self._plans[pid].node_id}': {status.get('error') or 'no reason given'}"
                )
                return
        if not report.accepted and report.error:
            for pid, source in self._plans.items():
                named = f"'{pid}'" in report.error or f"stream plan {pid}:" in report.error
                if source.connector_id == connector_id and named:
                    self.host.edge_failed(
                        f"connector {connector_id!r} refused the stream plan of node "
                        f"'{source.node_id}': {report.error}"
                    )
                    return
        if any(s.get("state") == "running" for s in mine.values()):
            with self._lock:
                first = not self._started and not self._closed
                self._started = True
            if first:
                self.host.edge_started()
