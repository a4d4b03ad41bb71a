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
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from aios.cloud.lifecycle import RUN_NAMESPACE
from aios.domain import EventRecord, RunStatus
from aios.events.envelope import make_input
from aios.events.state import StateStore
from aios.runs.edge import stream_event_of
from aios.runs.media import media_url, valid_media_name
from aios.runs.service import channel, publish
from aios.services import DeviceEventsHook, Services

if TYPE_CHECKING:
    from aios.messages import DeviceEventItem

log = logging.getLogger(__name__)

SEEN_NAMESPACE = "run-events"
"""State-store namespace of the event ids a run has taken (key ``<run_id>/<event_id>``)."""

SEEN_TTL_SECONDS = 7 * 86_400.0
"""How long an event id is remembered (IoT Core redelivers within minutes)."""


def execution_name(event_id: str) -> str:
    """A Step Functions execution name for an event id (``[A-Za-z0-9_-]``, ≤ 80)."""
    return (re.sub(r"[^A-Za-z0-9_-]", "-", event_id) or "event")[:80]


class RunEvents:
    """Takes device events into their runs (see the module doc).

    Args:
        services: the ingest function's ports.
        state: the state store the lifecycle writes (:class:`aios.cloud.state.DynamoStateStore`).
        sfn: a boto3 Step Functions client (default: one from the AWS environment).
    """

    def __init__(self, services: Services, state: StateStore, *, sfn: Any | None = None) -> None:
        self.services = services
        self.state = state
        self._sfn = sfn

    @property
    def sfn(self) -> Any:
        """The Step Functions client."""
        if self._sfn is None:
            import boto3

            self._sfn = boto3.client("stepfunctions")
        return self._sfn

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
        if not self.state.put_if_absent(SEEN_NAMESPACE, seen_key, True, SEEN_TTL_SECONDS):
            return "duplicate"
        body = event.model_dump(mode="json")
        machine = deployed.get("machine_arn")
        entries = deployed.get("entries") or []
        name = str(deployed.get("name") or "")
        if isinstance(machine, str) and machine and event.node_id in entries:
            data = make_input(
                body,
                pipeline=name,
                entry=event.node_id,
                timezone=str(deployed.get("timezone") or "UTC"),
            )
            data["context"].update({"run_id": run_id, "pipeline_id": run.pipeline_id})
            try:
                self.sfn.start_execution(
                    stateMachineArn=machine,
                    name=execution_name(event.event_id),
                    input=json.dumps(data),
                )
            except ClientError:
                self.state.delete(SEEN_NAMESPACE, seen_key)
                raise
            return "execution"
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
    from aios.cloud.launcher import table_from_url
    from aios.cloud.state import DynamoStateStore

    state = DynamoStateStore(table_from_url(services.settings.database_url))
    return RunEvents(services, state)
