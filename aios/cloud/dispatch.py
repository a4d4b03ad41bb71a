"""Events of runs in the cloud: from the events ingest to the run's event state machine.

:func:`device_events_hook` is the :data:`aios.services.DeviceEventsHook` of the events
ingest function. A device event carrying ``data.stream_event`` and ``data.run_id`` (what a
connector publishes for a stream plan, :func:`connector.streams.event_item`; or the GPU
worker for cloud placement) is rebuilt with :func:`aios.runs.edge.stream_event_of` — its
snapshot and clip named by their keys in the media bucket (``runs/<run_id>/media/…``) —
and, when the run is ``starting`` or ``running``:

- if the run deployed an event state machine (:mod:`aios.cloud.lifecycle`) and the event's
  node feeds its event tier, an execution is started with the envelope of
  :func:`aios.events.envelope.make_input` (the pipeline's time zone), its context also
  carrying ``run_id`` and ``pipeline_id``; the execution's name is the event id (made
  safe, ≤ 80 characters);
- otherwise the event is stored as the run's :class:`~aios.domain.EventRecord`, as the
  local runs store the events of pipelines without an event tier, and published on
  ``pipelines/{pipeline_id}``.

Each event id starts one execution per run: Express state machines do not deduplicate
execution names, so the first delivery is claimed in the state store (namespace
:data:`SEEN_NAMESPACE`, conditional write) and a redelivery is dropped. Events of a run
from a device that is not one of its cameras, or of a plan that is not the run's, are
dropped and logged.

The event-tier inputs that are not video reach the runs the same way:

- ``aios/sensor.data@1``: Play records the run's sensor nodes in its deployment record
  (``sensors``: node id → the device its topic names and its configuration;
  :func:`sensor_listeners`) and indexes them by device (namespace
  :data:`SENSOR_INDEX_NAMESPACE`, key the device id or :data:`ALL_DEVICES`); Stop removes
  them. :func:`device_telemetry_hook` is the telemetry ingest's hook: a message the fleet
  accepted becomes events exactly as the node makes them on one machine
  (:class:`RunTelemetry`) and each event one execution.
- ``aios/webhook@1``: the API's ``POST /api/v1/webhooks/{pipeline_id}/{hook}`` checks the
  request as the node's own server does and hands the event to
  :class:`CloudRunInputs` (the :class:`aios.services.EventInputs` of the cloud).
- ``aios/timer@1``: EventBridge Scheduler starts the executions
  (:mod:`aios.cloud.event_machines`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from aios.cloud.lifecycle import RUN_NAMESPACE, RUN_STATE_TTL_SECONDS
from aios.domain import EventRecord, RunStatus
from aios.events.envelope import make_input
from aios.events.state import StateStore
from aios.runs.edge import stream_event_of
from aios.runs.media import media_url, valid_media_name
from aios.runs.service import channel, publish
from aios.services import DeviceEventsHook, Services

if TYPE_CHECKING:
    from aios.messages import DeviceEventItem
    from aios.pipeline.validation import ValidatedPipeline

log = logging.getLogger(__name__)

SEEN_NAMESPACE = "run-events"
"""State-store namespace of the event ids a run has taken (key ``<run_id>/<event_id>``)."""

SEEN_TTL_SECONDS = 7 * 86_400.0
"""How long an event id is remembered (IoT Core redelivers within minutes)."""


def execution_name(event_id: str) -> str:
    """A Step Functions execution name for an event id (``[A-Za-z0-9_-]``, ≤ 80)."""
    return (re.sub(r"[^A-Za-z0-9_-]", "-", event_id) or "event")[:80]


class _Starter:
    """What starts executions of runs' event machines: the lifecycle's state store and a
    Step Functions client made at first use (default: one from the AWS environment)."""

    def __init__(self, state: StateStore, sfn: Any | None) -> None:
        self.state = state
        self._sfn = sfn

    @property
    def sfn(self) -> Any:
        """The Step Functions client."""
        if self._sfn is None:
            import boto3

            self._sfn = boto3.client("stepfunctions")
        return self._sfn


class RunEvents(_Starter):
    """Takes device events into their runs (see the module doc).

    Args:
        services: the ingest function's ports.
        state: the state store the lifecycle writes (:class:`aios.cloud.state.DynamoStateStore`).
        sfn: a boto3 Step Functions client (default: one from the AWS environment).
    """

    def __init__(self, services: Services, state: StateStore, *, sfn: Any | None = None) -> None:
        super().__init__(state, sfn)
        self.services = services

    def __call__(self, device_id: str, items: list[DeviceEventItem]) -> None:
        """The hook: take every stream event of ``items`` (one failing is logged)."""
        for item in items:
            try:
                self.take(device_id, item)
            except Exception:
                log.exception("an event of %s could not be taken into its run", device_id)

    def take(self, device_id: str, item: DeviceEventItem) -> str | None:
        """Take one device event.

        Returns:
            ``"execution"`` (an execution started), ``"stored"``, ``"duplicate"``, or
            ``None`` (not a stream event of an active run of this deployment).

        Raises:
            botocore.exceptions.ClientError: Step Functions refused (the claim is released,
                so the redelivery tries again).
        """
        run_id = item.data.get("run_id")
        if not isinstance(run_id, str) or not isinstance(item.data.get("stream_event"), Mapping):
            return None
        deployed = self.state.get(RUN_NAMESPACE, run_id)
        if not isinstance(deployed, Mapping):
            return None
        cameras = deployed.get("cameras")
        if isinstance(cameras, list) and cameras and device_id not in cameras:
            log.warning(
                "run %s: an event from %s, not one of its cameras, ignored", run_id, device_id
            )
            return None
        plans = deployed.get("plans")
        if isinstance(plans, list) and plans and item.data.get("plan_id") not in plans:
            return None
        run = self.services.store.runs.get(run_id)
        if run is None or run.status not in (RunStatus.STARTING, RunStatus.RUNNING):
            return None
        try:
            event = stream_event_of(item, run_id, Path(f"runs/{run_id}/media"))
        except ValueError as err:
            log.error("run %s: an event of %s was dropped: %s", run_id, device_id, err)
            return None
        if event is None:
            return None
        seen_key = f"{run_id}/{event.event_id}"
        body = event.model_dump(mode="json")
        entries = deployed.get("entries") or []
        if isinstance(deployed.get("machine_arn"), str) and event.node_id in entries:
            started = start_run_execution(
                self.sfn,
                self.state,
                deployed,
                run_id=run_id,
                pipeline_id=run.pipeline_id,
                node_id=event.node_id,
                event=body,
                name=execution_name(event.event_id),
                claim=(seen_key, SEEN_TTL_SECONDS),
            )
            return "execution" if started is not None else "duplicate"
        if not self.state.put_if_absent(SEEN_NAMESPACE, seen_key, True, SEEN_TTL_SECONDS):
            return "duplicate"
        store_run_event(self.services, run_id, run.pipeline_id, body)
        return "stored"


def store_run_event(
    services: Services, run_id: str, pipeline_id: str, event: Mapping[str, Any]
) -> bool:
    """Store one event of a run without an event tier as the local runs do
    (:meth:`aios.runs.local.LocalRun.store_event`): id of the run and event id, the event's
    own time as ``data.event_time``, media keys with their API URLs; publish it.

    Returns:
        Whether it was stored now (``False``: stored before).
    """
    from aios.runs.local import stored_event_id

    event_id = str(event.get("event_id") or "")
    data = {
        k: v for k, v in event.items() if k not in ("event_id", "event_type", "time", "source_id")
    }
    data["event_id"] = event_id
    if isinstance(event.get("time"), str):
        data["event_time"] = event["time"]
    for field, kind in (("snapshot", "snapshots"), ("clip", "clips")):
        value = data.get(field)
        if isinstance(value, str) and value.startswith(f"runs/{run_id}/media/{kind}/"):
            file_name = value.rsplit("/", 1)[-1]
            if valid_media_name(kind, file_name):
                data[f"{field}_url"] = media_url(run_id, kind, file_name)
    source = event.get("source_id")
    record = EventRecord(
        id=stored_event_id(run_id, event_id),
        pipeline_id=pipeline_id,
        run_id=run_id,
        node_id=str(event.get("node_id") or "unknown"),
        source_id=None if source is None else str(source),
        type=str(event.get("event_type") or "event"),
        time=services.clock(),
        severity="info",
        data=data,
    )
    stored = services.store.events.put(record)
    if stored:
        publish(
            services.feed,
            channel(pipeline_id),
            {
                "type": "event",
                "pipeline_id": pipeline_id,
                "run_id": run_id,
                "event": record.model_dump(mode="json"),
            },
        )
    return stored


def device_events_hook(services: Services) -> DeviceEventsHook:
    """The events ingest's hook (see the module doc), its state store on the DataTable of
    ``services.settings.database_url``.

    Raises:
        ValueError: the database URL is not ``dynamodb://TABLE``.
    """
    return RunEvents(services, _state_store(services))


def start_run_execution(
    sfn: Any,
    state: StateStore,
    deployed: Mapping[str, Any],
    *,
    run_id: str,
    pipeline_id: str,
    node_id: str,
    event: Mapping[str, Any],
    name: str,
    claim: tuple[str, float] | None = None,
) -> str | None:
    """Start an execution of the run's event machine with ``event`` entering at ``node_id``.

    The input is :func:`aios.events.envelope.make_input` (the pipeline's name and time zone
    from ``deployed``), its context also carrying ``run_id`` and ``pipeline_id``.

    Args:
        sfn: a boto3 Step Functions client.
        state: the state store of the claims.
        deployed: the run's deployment record (namespace :data:`RUN_NAMESPACE`).
        run_id: the run.
        pipeline_id: its pipeline.
        node_id: the node the event comes from (an entry of the event tier).
        event: the event (:data:`aios.events.task.Event`).
        name: the execution's name (``[A-Za-z0-9_-]``, ≤ 80).
        claim: ``(key, seconds)``: take the event only if ``key`` was not claimed in
            :data:`SEEN_NAMESPACE` within that many seconds; ``None``: no claim.

    Returns:
        The execution's ARN, or ``None`` when the claim was taken already (a duplicate).

    Raises:
        NotAnEntry: the run deployed no event machine, or ``node_id`` feeds nothing in it.
        botocore.exceptions.ClientError: Step Functions refused (the claim is released, so
            a redelivery tries again).
    """
    machine = deployed.get("machine_arn")
    entries = deployed.get("entries") or []
    if not isinstance(machine, str) or not machine or node_id not in entries:
        raise NotAnEntry(f"node '{node_id}' of run '{run_id}' feeds no event state machine")
    if claim is not None:
        key, seconds = claim
        if not state.put_if_absent(SEEN_NAMESPACE, key, True, seconds):
            return None
    data = make_input(
        dict(event),
        pipeline=str(deployed.get("name") or ""),
        entry=node_id,
        timezone=str(deployed.get("timezone") or "UTC"),
    )
    data["context"].update({"run_id": run_id, "pipeline_id": pipeline_id})
    try:
        started = sfn.start_execution(stateMachineArn=machine, name=name, input=json.dumps(data))
    except ClientError:
        if claim is not None:
            state.delete(SEEN_NAMESPACE, claim[0])
        raise
    return str(started["executionArn"])


class NotAnEntry(LookupError):
    """The run has no event state machine fed by that node; the message names both."""


# --- sensor data: telemetry of the devices a run listens to ------------------------------

SENSOR_INDEX_NAMESPACE = "sensor-listeners"
"""State-store namespace of the telemetry listeners: key a device id (or
:data:`ALL_DEVICES`), value ``{run_id: [sensor node ids]}``."""

ALL_DEVICES = "*"
"""Index key of the sensor nodes listening to every device (topic ``dt/aios/+/telemetry``)."""


def sensor_listeners(
    pipeline: ValidatedPipeline, entries: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """The ``aios/sensor.data@1`` nodes of ``pipeline`` that feed its event tier
    (``entries``: :attr:`aios.events.compiler.CompiledPipeline.entries`), by node id:
    ``{"device": <the topic's device id, or ALL_DEVICES>, "config": <its configuration>}``.

    The node's topic filter names the device whose topic the telemetry arrives on (the
    publisher); its ``fields`` and ``max_payload_bytes`` apply when the telemetry is read
    (:meth:`aios.nodes.sensor_data.SensorDataSource.to_events`). Its broker settings (host,
    port, TLS, credentials) are for runs on one machine: in the cloud the telemetry is what
    AWS IoT Core's rule hands the ingest.
    """
    from aios.nodes.sensor_data import SensorDataConfig

    found: dict[str, dict[str, Any]] = {}
    for node_id, resolved in sorted(pipeline.nodes.items()):
        config = resolved.config
        if not isinstance(config, SensorDataConfig) or node_id not in entries:
            continue
        device = config.topic.split("/")[2]
        found[node_id] = {
            "device": ALL_DEVICES if device == "+" else device,
            "config": config.model_dump(mode="json"),
        }
    return found


def index_sensor_listeners(
    state: StateStore, run_id: str, sensors: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Add the run's sensor nodes to the index (:data:`SENSOR_INDEX_NAMESPACE`); return the
    device keys written."""
    by_device: dict[str, list[str]] = {}
    for node_id, spec in sensors.items():
        by_device.setdefault(str(spec.get("device") or ALL_DEVICES), []).append(node_id)
    for device, nodes in sorted(by_device.items()):

        def adding(old: Any, nodes: list[str] = nodes) -> Any:
            current = dict(old) if isinstance(old, Mapping) else {}
            current[run_id] = sorted(nodes)
            return current

        state.update(SENSOR_INDEX_NAMESPACE, device, adding, RUN_STATE_TTL_SECONDS)
    return sorted(by_device)


def unindex_sensor_listeners(
    state: StateStore, run_id: str, sensors: Mapping[str, Mapping[str, Any]] | None
) -> None:
    """Remove the run from the index keys of its sensor nodes (absent ones are skipped)."""
    devices = {str(s.get("device") or ALL_DEVICES) for s in (sensors or {}).values()}
    for device in sorted(devices):

        def removing(old: Any) -> Any:
            current = dict(old) if isinstance(old, Mapping) else {}
            current.pop(run_id, None)
            return current

        state.update(SENSOR_INDEX_NAMESPACE, device, removing, RUN_STATE_TTL_SECONDS)


class RunTelemetry(_Starter):
    """Telemetry into the runs whose sensor nodes listen to its device: the telemetry
    ingest's hook (called after the fleet accepted the message).

    For each active run (``starting`` or ``running``) indexed under the topic's device or
    :data:`ALL_DEVICES`, each listening node reads the message exactly as the node reads it
    on one machine (:meth:`aios.nodes.sensor_data.SensorDataSource.to_events`: its
    ``fields`` and size limit; one ``sensor.reading`` event per sample time) and each event
    starts one execution of the run's event machine (:func:`start_run_execution`; claim
    ``<run_id>/<node_id>/<event_id>``, so a redelivered message starts nothing new).

    Args:
        services: the ingest function's ports (store, clock).
        state: the state store the lifecycle writes.
        sfn: a boto3 Step Functions client (default: one from the AWS environment).
    """

    def __init__(self, services: Services, state: StateStore, *, sfn: Any | None = None) -> None:
        super().__init__(state, sfn)
        self.services = services

    def listeners(self, device_id: str) -> dict[str, list[str]]:
        """The runs listening to ``device_id``'s telemetry: ``{run_id: [node ids]}``."""
        found: dict[str, list[str]] = {}
        for key in (device_id, ALL_DEVICES):
            value = self.state.get(SENSOR_INDEX_NAMESPACE, key)
            if isinstance(value, Mapping):
                for run_id, nodes in value.items():
                    if isinstance(nodes, list):
                        found.setdefault(str(run_id), []).extend(str(n) for n in nodes)
        return found

    def __call__(self, topic: str, payload: bytes) -> list[str]:
        """Take one accepted telemetry message (``topic``, the payload as published).

        Returns:
            The ARNs of the executions started.

        Raises:
            botocore.exceptions.ClientError: Step Functions refused an execution (raised
                after the other runs were served; claims of what failed are released).
        """
        from aios.events.task import TaskServices
        from aios.messages import parse_topic
        from aios.nodes.sensor_data import InvalidMessage, SensorDataConfig, SensorDataSource

        device_id, _ = parse_topic(topic)
        started: list[str] = []
        failure: ClientError | None = None
        for run_id, nodes in sorted(self.listeners(device_id).items()):
            deployed = self.state.get(RUN_NAMESPACE, run_id)
            run = self.services.store.runs.get(run_id)
            if not isinstance(deployed, Mapping) or run is None:
                continue
            if run.status not in (RunStatus.STARTING, RunStatus.RUNNING):
                continue
            sensors = deployed.get("sensors")
            for node_id in sorted(set(nodes)):
                spec = sensors.get(node_id) if isinstance(sensors, Mapping) else None
                if not isinstance(spec, Mapping):
                    continue
                try:
                    config = SensorDataConfig.model_validate(spec.get("config") or {})
                    source = SensorDataSource(config, TaskServices(now=self.services.clock))
                    events = source.to_events(topic, payload)
                except (InvalidMessage, ValueError) as err:
                    log.warning(
                        "run %s: sensor node %s dropped a message: %s", run_id, node_id, err
                    )
                    continue
                for event in events:
                    key = f"{run_id}/{node_id}/{event['event_id']}"
                    try:
                        arn = start_run_execution(
                            self.sfn,
                            self.state,
                            deployed,
                            run_id=run_id,
                            pipeline_id=run.pipeline_id,
                            node_id=node_id,
                            event=event,
                            name=execution_name(f"{event['event_id']}-{node_id}"),
                            claim=(key, SEEN_TTL_SECONDS),
                        )
                    except NotAnEntry as err:
                        log.warning("run %s: %s", run_id, err)
                        break
                    except ClientError as err:
                        log.error(
                            "run %s: node %s: StartExecution failed: %s", run_id, node_id, err
                        )
                        failure = failure or err
                        continue
                    if arn is not None:
                        started.append(arn)
        if failure is not None:
            raise failure
        return started


def device_telemetry_hook(services: Services) -> RunTelemetry:
    """The telemetry ingest's hook (:class:`RunTelemetry`), its state store on the
    DataTable of ``services.settings.database_url``.

    Raises:
        ValueError: the database URL is not ``dynamodb://TABLE``.
    """
    return RunTelemetry(services, _state_store(services))


# --- webhooks and other inputs handed over by the API -------------------------------------


class CloudRunInputs(_Starter):
    """:class:`aios.services.EventInputs` in the cloud: an event of an event-tier input of
    a run starts an execution of the run's event machine (:func:`start_run_execution`;
    execution name from the event id and node id). The caller has found the run active
    (the webhook route does); this checks what the run deployed.

    Args:
        state: the state store the lifecycle writes.
        sfn: a boto3 Step Functions client (default: one from the AWS environment).
    """

    def __init__(self, state: StateStore, *, sfn: Any | None = None) -> None:
        super().__init__(state, sfn)

    def deliver(
        self,
        run_id: str,
        node_id: str,
        event: dict[str, Any],
        *,
        remember_seconds: float = 0.0,
    ) -> str | None:
        """Start the execution of ``event`` from ``node_id`` in run ``run_id``.

        Args:
            remember_seconds: > 0: an event id delivered to this node of the run within
                that many seconds is a duplicate (claim ``<run>/<node>/<event_id>``).

        Returns:
            The execution's ARN, or ``None`` for a duplicate.

        Raises:
            aios.services.InputUnavailable: the run has not deployed its event machine
                (yet), or ``node_id`` feeds nothing in it.
            botocore.exceptions.ClientError: Step Functions refused.
        """
        from aios.services import InputUnavailable

        deployed = self.state.get(RUN_NAMESPACE, run_id)
        if not isinstance(deployed, Mapping) or not deployed.get("machine_arn"):
            raise InputUnavailable(
                f"run '{run_id}' has not deployed its event state machine yet; retry shortly"
            )
        event_id = str(event.get("event_id") or "")
        claim = None
        if remember_seconds > 0 and event_id:
            claim = (f"{run_id}/{node_id}/{event_id}", remember_seconds)
        try:
            return start_run_execution(
                self.sfn,
                self.state,
                deployed,
                run_id=run_id,
                pipeline_id=str(deployed.get("pipeline_id") or ""),
                node_id=node_id,
                event=event,
                name=execution_name(f"{event_id}-{node_id}"),
                claim=claim,
            )
        except NotAnEntry as err:
            raise InputUnavailable(str(err)) from err


def run_inputs(services: Services) -> CloudRunInputs:
    """The :class:`CloudRunInputs` of a cloud function, its state store on the DataTable of
    ``services.settings.database_url``.

    Raises:
        ValueError: the database URL is not ``dynamodb://TABLE``.
    """
    return CloudRunInputs(_state_store(services))


def _state_store(services: Services) -> StateStore:
    from aios.cloud.launcher import table_from_url
    from aios.cloud.state import DynamoStateStore

    return DynamoStateStore(table_from_url(services.settings.database_url))
