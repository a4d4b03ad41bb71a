"""The steps of the lifecycle state machine (``stepfunctions/lifecycle.asl.json``): Play and
Stop of a pipeline run in the cloud.

The machine's input is ``{"run_id", "pipeline_id", "revision"}`` (optionally ``api_url``:
the API's base URL as connectors reach it, for the media target of edge plans). Every Task
calls ``LifecycleTaskFunction`` with ``{"step": <name>, "data": <the state's data>}``
(plus ``detector`` — the GPU worker's task definition, empty when the stack has none —
for ``validate``, ``token`` for ``await_stop``, ``cluster`` for the clean-up steps);
:meth:`Lifecycle.handle` runs the step:

========================  ==============================================================
step                      does
========================  ==============================================================
``validate``              loads the run and its revision, validates the document; returns
                          ``{"placement": "edge" | "cloud" | "none", "event_tier", "name"}``
                          (edge: the video inputs are fleet cameras, each behind a
                          registered connector; cloud: other video inputs, analysed by the
                          GPU stream worker; none: no video)
``compile``               compiles the event tier and checks every Task has a function
                          in this deployment; returns ``{"event_tier", "states",
                          "node_types"}`` (the definition is compiled again by the next
                          step: it is deterministic, and a state's data is limited to
                          256 KiB)
``deploy_event_machine``  creates or updates the revision's Express state machine and the
                          run's timer schedules (:mod:`aios.cloud.event_machines`);
                          returns ``{"arn", "schedules"}``
``push_edge_plans``       merges a stream plan per fleet camera into its connector's
                          desired configuration (published retained on
                          ``cfg/aios/{connector}/desired``; :mod:`aios.runs.edge`)
``mark_running``          ``starting`` → ``running``
``await_stop``            keeps the task token of the waiting state (state store
                          namespace :data:`STOP_NAMESPACE`); answers it at once when a
                          stop was requested before
``stop_workers``          stops the run's GPU worker tasks, removes its stream plans,
                          deletes its schedules
``mark_stopped``          → ``stopped``
``record_failure``        cleans up like ``stop_workers`` and marks the run ``failed``
                          with the failed step and a summary of the error
========================  ==============================================================

What a run deployed (machine ARN, schedules, connectors, placement, the sensor nodes and
the devices they listen to) is kept in the state store, namespace :data:`RUN_NAMESPACE`,
key the run id: the events dispatcher (:mod:`aios.cloud.dispatch`) reads it to start the
run's executions; the sensor nodes are also indexed by device for the telemetry ingest
(:func:`aios.cloud.dispatch.index_sensor_listeners`), and unindexed at clean-up. Run records are
written with :func:`aios.runs.service.update_run` (conditional writes) and every change is
published on ``pipelines/{pipeline_id}``.

Cloud placement: ``StartStreamWorker`` runs the GPU worker's ECS task in group
``aios-run:<run_id>`` with ``AIOS_TASK_TOKEN`` and ``AIOS_RUN_ID`` in its container's
environment and waits (at most 30 minutes; a heartbeat at least every 15) until the worker
answers the token: ``SendTaskSuccess`` with ``{"task_arn": <its task ARN>}`` once it runs
the stream tier, or ``SendTaskFailure`` with why it cannot (the run fails with that).

The Express machine is kept after Stop (see :mod:`aios.cloud.event_machines`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aios.cloud import env
from aios.cloud.event_machines import (
    Schedules,
    definition_text,
    deploy_machine,
    machine_name,
)
from aios.domain import Run, RunStatus
from aios.events.compiler import compile_pipeline, lint
from aios.events.state import StateStore
from aios.pipeline.validation import ValidatedPipeline, validate_pipeline
from aios.runs.edge import (
    locate_sources,
    plan_document,
    runs_at_edge,
    stream_plan,
    update_stream_plans,
    upload_target,
)
from aios.runs.service import channel, publish, status_message, update_run
from aios.services import Services

log = logging.getLogger(__name__)

STOP_NAMESPACE = "run-stop"
"""State-store namespace of the stop handshake: ``{"token"?, "stop_requested"?}`` per run."""

RUN_NAMESPACE = "run-cloud"
"""State-store namespace of what a run deployed (see the module doc)."""

RUN_STATE_TTL_SECONDS = 400 * 86_400.0
"""How long those records are kept: longer than a Standard execution may last (1 year)."""

API_URL = env.API_URL
"""Environment variable with the API's base URL as connectors reach it (optional; the
execution input's ``api_url`` wins). Without either, edge plans carry no media target and
their snapshots and clips stay on the connector."""

EVENT_MACHINE_LOG_GROUP_ARN = env.EVENT_MACHINE_LOG_GROUP_ARN
"""Log group ARN of the Express machines' execution logs (level ERROR; optional)."""

MAX_ERROR_CHARS = 1000
"""Longest error text recorded on a run."""

WORKER_GROUP_PREFIX = "aios-run:"
"""ECS task group of a run's GPU workers (``aios-run:<run_id>``): how Stop finds them."""

PLACEMENTS = ("edge", "cloud", "none")


class LifecycleError(RuntimeError):
    """A step cannot go on; the message says why (recorded on the run)."""


class RunGone(LifecycleError):
    """The run record does not exist, or has ended already."""


def _client(service: str) -> Any:
    import boto3

    return boto3.client(service)  # type: ignore[call-overload]


@dataclass
class CloudResources:
    """What the steps create things with, from the function's environment (names in
    :mod:`aios.cloud.env`)."""

    event_machine_role_arn: str | None = None
    event_machine_prefix: str = "aios-pl-"
    task_function_arns: dict[str, str] = field(default_factory=dict)
    schedule_group: str | None = None
    scheduler_role_arn: str | None = None
    api_url: str | None = None
    event_machine_log_group_arn: str | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> CloudResources:
        """Read the environment.

        Raises:
            LifecycleError: ``AIOS_TASK_FUNCTION_ARNS`` is not a JSON object of strings.
        """
        source = os.environ if environ is None else environ
        raw = source.get(env.TASK_FUNCTION_ARNS) or "{}"
        try:
            arns = json.loads(raw)
        except ValueError as err:
            raise LifecycleError(f"{env.TASK_FUNCTION_ARNS} is not JSON: {err}") from err
        if not isinstance(arns, dict) or not all(isinstance(v, str) for v in arns.values()):
            raise LifecycleError(f"{env.TASK_FUNCTION_ARNS} must be a JSON object of ARNs")
        return cls(
            event_machine_role_arn=source.get(env.EVENT_MACHINE_ROLE_ARN) or None,
            event_machine_prefix=source.get(env.EVENT_MACHINE_PREFIX) or "aios-pl-",
            task_function_arns=arns,
            schedule_group=source.get(env.SCHEDULE_GROUP) or None,
            scheduler_role_arn=source.get(env.SCHEDULER_ROLE_ARN) or None,
            api_url=source.get(API_URL) or None,
            event_machine_log_group_arn=source.get(EVENT_MACHINE_LOG_GROUP_ARN) or None,
        )


def summarize_error(error: Any) -> str:
    """One line saying why a step failed, from a Catch's ``{"Error", "Cause"}``.

    A Lambda error's ``Cause`` is JSON with ``errorMessage`` (its stack trace is dropped);
    other causes are kept as text; the result is cut to :data:`MAX_ERROR_CHARS`.
    """
    if not isinstance(error, Mapping):
        return "failed (no error details)"
    name = str(error.get("Error") or "Error")
    cause = error.get("Cause")
    message = ""
    if isinstance(cause, str) and cause:
        try:
            parsed = json.loads(cause)
        except ValueError:
            parsed = None
        if isinstance(parsed, Mapping) and "errorMessage" in parsed:
            message = str(parsed.get("errorMessage") or "")
            name = str(parsed.get("errorType") or name)
        else:
            message = cause
    text = f"{name}: {message}" if message else name
    return " ".join(text.split())[:MAX_ERROR_CHARS]


class Lifecycle:
    """The lifecycle steps over the process's ports.

    Args:
        services: store, settings, feed and device link
            (:func:`aios.cloud.services.cloud_services`).
        state: the state store of the stop handshake and run records
            (:class:`aios.cloud.state.DynamoStateStore`).
        resources: names and ARNs from the environment.
        clients: boto3 client factory by service name (``stepfunctions``, ``ecs``,
            ``scheduler``); default: clients from the AWS environment.
    """

    def __init__(
        self,
        services: Services,
        state: StateStore,
        resources: CloudResources,
        *,
        clients: Callable[[str], Any] = _client,
    ) -> None:
        self.services = services
        self.state = state
        self.resources = resources
        self._factory = clients
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        """The boto3 client of ``service`` (one per lifecycle)."""
        if service not in self._clients:
            self._clients[service] = self._factory(service)
        return self._clients[service]

    # --- dispatch ----------------------------------------------------------------------

    def handle(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Run the step ``request["step"]`` on ``request["data"]`` (see the module doc).

        Raises:
            LifecycleError: an unknown step, or the step cannot go on.
        """
        step = str(request.get("step") or "")
        data = request.get("data")
        if not isinstance(data, Mapping) or not isinstance(data.get("run_id"), str):
            raise LifecycleError(f"step {step!r}: the request has no data.run_id")
        steps: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, Any]]] = {
            "validate": self.validate,
            "compile": self.compile,
            "deploy_event_machine": self.deploy_event_machine,
            "push_edge_plans": self.push_edge_plans,
            "mark_running": self.mark_running,
            "await_stop": self.await_stop,
            "stop_workers": self.stop_workers,
            "mark_stopped": self.mark_stopped,
            "record_failure": self.record_failure,
        }
        fn = steps.get(step)
        if fn is None:
            raise LifecycleError(f"unknown step {step!r}; known: {', '.join(steps)}")
        return fn(data, request)

    # --- helpers -----------------------------------------------------------------------

    def _run(self, data: Mapping[str, Any]) -> Run:
        run = self.services.store.runs.get(str(data["run_id"]))
        if run is None:
            raise RunGone(f"run {data['run_id']!r} does not exist")
        return run

    def _pipeline(self, data: Mapping[str, Any]) -> ValidatedPipeline:
        from aios.nodes import CATALOG

        run = self._run(data)
        stored = self.services.store.pipelines.get_revision(run.pipeline_id, run.revision)
        if stored is None:
            raise LifecycleError(
                f"pipeline {run.pipeline_id!r} has no revision {run.revision} any more"
            )
        return validate_pipeline(stored.document, CATALOG)

    def _remember(self, run_id: str, **values: Any) -> dict[str, Any]:
        def change(old: Any) -> Any:
            return {**(old if isinstance(old, dict) else {}), **values}

        result: dict[str, Any] = self.state.update(
            RUN_NAMESPACE, run_id, change, RUN_STATE_TTL_SECONDS
        )
        return result

    def deployed(self, run_id: str) -> dict[str, Any]:
        """What run ``run_id`` deployed (``{}`` if nothing yet)."""
        value = self.state.get(RUN_NAMESPACE, run_id)
        return dict(value) if isinstance(value, dict) else {}

    def _set_status(
        self, run_id: str, change: Callable[[Run], Run | None], *, what: str
    ) -> Run | None:
        updated = update_run(self.services.store, run_id, change)
        if updated is not None:
            log.info("run %s %s", run_id, what)
            publish(self.services.feed, channel(updated.pipeline_id), status_message(updated))
        return updated

    # --- steps -------------------------------------------------------------------------

    def validate(self, data: Mapping[str, Any], request: Mapping[str, Any]) -> dict[str, Any]:
        """Check the run and its revision; decide the placement of its stream tier.

        Raises:
            RunGone: the run does not exist or has ended.
            aios.pipeline.validation.PipelineInvalid: the revision does not validate.
            aios.runs.edge.EdgePlacementError: a fleet camera cannot be placed.
        """
        run = self._run(data)
        if not run.status.active:
            raise RunGone(f"run {run.id!r} has ended already ({run.status.value})")
        if data.get("pipeline_id") not in (None, run.pipeline_id) or data.get("revision") not in (
            None,
            run.revision,
        ):
            raise LifecycleError(
                f"run {run.id!r} is of pipeline {run.pipeline_id!r} revision {run.revision}, "
                f"not of the execution input's {data.get('pipeline_id')!r} revision "
                f"{data.get('revision')}"
            )
        pipeline = self._pipeline(data)
        if runs_at_edge(pipeline):
            locate_sources(self.services, pipeline)
            placement = "edge"
        elif pipeline.video_inputs():
            placement = "cloud"
            if "detector" in request and not request.get("detector"):
                raise LifecycleError(
                    "this pipeline's video inputs are not fleet cameras, so its analysis "
                    "runs on the GPU detector, which this deployment does not have (its "
                    "DetectorImageUri, VpcId and DetectorSubnetIds parameters are empty): "
                    "use fleet cameras behind a connector, or deploy the detector"
                )
        else:
            placement = "none"
        from aios.catalog.base import Tier

        event_tier = any(r.node_type.manifest.tier is Tier.EVENT for r in pipeline.nodes.values())
        timezone = str(pipeline.document.metadata.get("timezone") or "UTC")
        self._remember(
            run.id,
            pipeline_id=run.pipeline_id,
            revision=run.revision,
            placement=placement,
            name=pipeline.document.name,
            timezone=timezone,
        )
        return {"placement": placement, "event_tier": event_tier, "name": pipeline.document.name}

    def compile(self, data: Mapping[str, Any], _: Mapping[str, Any]) -> dict[str, Any]:
        """Compile the event tier and check it can be deployed here.

        Raises:
            aios.events.compiler.CompileError: the event tier cannot be compiled.
            EventMachineError: a node type without a task function in this deployment.
            LifecycleError: the compiled definition does not pass statelint.
        """
        compiled = compile_pipeline(self._pipeline(data))
        if compiled is None:
            return {"event_tier": False, "states": 0, "node_types": []}
        problems = lint(compiled.definition)
        if problems:
            raise LifecycleError(f"the compiled event tier is not valid ASL: {'; '.join(problems)}")
        definition_text(compiled, self.resources.task_function_arns)
        return {
            "event_tier": True,
            "states": len(compiled.definition["States"]),
            "node_types": sorted(set(compiled.placeholders.values())),
        }

    def deploy_event_machine(self, data: Mapping[str, Any], _: Mapping[str, Any]) -> dict[str, Any]:
        """Create or update the revision's Express state machine and the run's schedules.

        Returns:
            ``{"arn": <machine ARN or None without an event tier>, "schedules": [names]}``.

        Raises:
            LifecycleError: the deployment lacks the role, prefix or schedule group.
            botocore.exceptions.ClientError: Step Functions or Scheduler refused.
        """
        run = self._run(data)
        pipeline = self._pipeline(data)
        compiled = compile_pipeline(pipeline)
        if compiled is None:
            return {"arn": None, "schedules": []}
        role = self.resources.event_machine_role_arn
        if not role:
            raise LifecycleError(f"{env.EVENT_MACHINE_ROLE_ARN} is not set")
        name = machine_name(self.resources.event_machine_prefix, run.pipeline_id, run.revision)
        arn = deploy_machine(
            self.client("stepfunctions"),
            name=name,
            definition=definition_text(compiled, self.resources.task_function_arns),
            role_arn=role,
            log_group_arn=self.resources.event_machine_log_group_arn,
            tags={"aios:pipeline": run.pipeline_id, "aios:revision": str(run.revision)},
        )
        self._remember(run.id, machine_arn=arn, entries=sorted(compiled.entries))
        from aios.cloud.dispatch import index_sensor_listeners, sensor_listeners

        sensors = sensor_listeners(pipeline, compiled.entries)
        if sensors:  # remembered first: a failure half way still unindexes them
            self._remember(run.id, sensors=sensors)
            index_sensor_listeners(self.state, run.id, sensors)
        schedules: list[str] = []
        if any(_is_timer(pipeline, nid) for nid in compiled.sources):
            group, scheduler_role = self.resources.schedule_group, self.resources.scheduler_role_arn
            if not group or not scheduler_role:
                raise LifecycleError(
                    f"the pipeline has timer inputs but {env.SCHEDULE_GROUP} or "
                    f"{env.SCHEDULER_ROLE_ARN} is not set"
                )
            # remembered first: a failure half way still deletes what was created
            planned = Schedules(self.client("scheduler"), group, scheduler_role)
            schedules = planned.create(
                run.id, pipeline, arn, {"run_id": run.id, "pipeline_id": run.pipeline_id}
            )
            self._remember(run.id, schedules=schedules)
        return {"arn": arn, "schedules": schedules}

    def push_edge_plans(self, data: Mapping[str, Any], _: Mapping[str, Any]) -> dict[str, Any]:
        """Merge a stream plan per fleet camera into its connector's desired configuration.

        Plans of other runs that are still active are kept; plans of ended runs are dropped.
        The media target is ``PUT {api_url}/api/v1/runs/{run_id}/media/{kind}/{name}`` with
        an upload grant when the API URL is known (``data.api_url``, else
        :data:`API_URL`), else none.

        Returns:
            ``{"connectors": [ids], "plans": [plan ids]}``.

        Raises:
            aios.runs.edge.EdgePlacementError: see :func:`aios.runs.edge.locate_sources`,
                :func:`~aios.runs.edge.plan_document`, :func:`~aios.runs.edge.update_stream_plans`.
        """
        from aios.fleet.service import FleetService

        run = self._run(data)
        pipeline = self._pipeline(data)
        sources = locate_sources(self.services, pipeline)
        api_url = data.get("api_url") or self.resources.api_url
        by_connector: dict[str, list[dict[str, Any]]] = {}
        for source in sources:
            media = None
            if isinstance(api_url, str) and api_url:
                media = upload_target(api_url, run.id, self._grant(run.id, source.connector_id))
            plan = stream_plan(run.id, source, plan_document(pipeline, source.node_id), {})
            plan["media"] = media
            by_connector.setdefault(source.connector_id, []).append(plan)
        connectors = sorted(by_connector)
        plan_ids = sorted(p["plan_id"] for ps in by_connector.values() for p in ps)
        self._remember(
            run.id,
            connectors=connectors,
            cameras=sorted({s.camera_id for s in sources}),
            plans=plan_ids,
        )
        fleet = FleetService(self.services)
        runs = self.services.store.runs
        for connector_id in connectors:
            plans = by_connector[connector_id]
            ours = {p["plan_id"] for p in plans}

            def adding(
                current: list[Any], plans: list[dict[str, Any]] = plans, ours: set[str] = ours
            ) -> list[Any]:
                kept = []
                for plan in current:
                    if isinstance(plan, Mapping):
                        if plan.get("plan_id") in ours:
                            continue
                        other = plan.get("run_id")
                        if isinstance(other, str) and other != run.id:
                            record = runs.get(other)
                            if record is None or not record.status.active:
                                continue  # left behind by a run that has ended
                    kept.append(plan)
                return kept + plans

            update_stream_plans(fleet, connector_id, adding)
        return {"connectors": connectors, "plans": plan_ids}

    def _grant(self, run_id: str, connector_id: str) -> str:
        from aios.api.auth import issue_upload_grant, load_jwt_secret

        settings = self.services.settings
        if settings.jwt_secret is None:
            from pydantic import SecretStr

            from aios.cloud.services import jwt_secret_from_environment

            # read only when a grant is issued (the function reads the secret then only)
            key = jwt_secret_from_environment()
            if key is not None:
                settings = settings.model_copy(update={"jwt_secret": SecretStr(key)})
        return issue_upload_grant(
            load_jwt_secret(settings),
            run_id=run_id,
            connector_id=connector_id,
            issuer=settings.jwt_issuer,
            now=self.services.clock(),
        )

    def mark_running(self, data: Mapping[str, Any], _: Mapping[str, Any]) -> dict[str, Any]:
        """``starting`` → ``running`` (a run already stopping is left so)."""

        def change(run: Run) -> Run | None:
            if run.status is not RunStatus.STARTING:
                return None
            return run.model_copy(update={"status": RunStatus.RUNNING})

        run = self._set_status(str(data["run_id"]), change, what="running")
        current = run or self._run(data)
        return {"status": current.status.value}

    def await_stop(self, data: Mapping[str, Any], request: Mapping[str, Any]) -> dict[str, Any]:
        """Keep the waiting state's task token; answer it now if Stop came first.

        Raises:
            LifecycleError: the request has no token.
        """
        token = request.get("token")
        if not isinstance(token, str) or not token:
            raise LifecycleError("await_stop needs the task token ($$.Task.Token)")
        run_id = str(data["run_id"])

        def change(old: Any) -> Any:
            return {**(old if isinstance(old, dict) else {}), "token": token}

        record = self.state.update(STOP_NAMESPACE, run_id, change, RUN_STATE_TTL_SECONDS)
        run = self.services.store.runs.get(run_id)
        ended = run is None or run.status in (RunStatus.STOPPING,) or not run.status.active
        if record.get("stop_requested") or ended:
            answer_stop(self.client("stepfunctions"), token, "stop requested before the run waited")
            return {"waiting": False}
        return {"waiting": True}

    def _cleanup(self, run_id: str, cluster: Any, worker: Any = None) -> dict[str, Any]:
        """Stop workers, remove plans, delete schedules; each part is tried even when an
        earlier one failed; the first failure is raised at the end. ``worker``: what the
        GPU worker answered the task token with (``{"task_arn"}``), if it did."""
        from aios.fleet.service import FleetService

        deployed = self.deployed(run_id)
        done: dict[str, Any] = {"workers": [], "connectors": [], "schedules": []}
        errors: list[BaseException] = []
        if deployed.get("placement") == "cloud" and isinstance(cluster, str) and cluster:
            try:
                known = worker.get("task_arn") if isinstance(worker, Mapping) else None
                done["workers"] = self._stop_worker_tasks(
                    run_id, cluster, known if isinstance(known, str) else None
                )
            except Exception as err:
                log.exception("run %s: stopping its worker tasks failed", run_id)
                errors.append(err)
        fleet = FleetService(self.services)

        def removing(current: list[Any]) -> list[Any]:
            return [
                p for p in current if not (isinstance(p, Mapping) and p.get("run_id") == run_id)
            ]

        for connector_id in deployed.get("connectors") or []:
            try:
                if update_stream_plans(fleet, str(connector_id), removing):
                    done["connectors"].append(connector_id)
            except Exception as err:
                log.exception("run %s: removing its plans from %s failed", run_id, connector_id)
                errors.append(err)
        if deployed.get("sensors"):
            from aios.cloud.dispatch import unindex_sensor_listeners

            try:
                unindex_sensor_listeners(self.state, run_id, deployed["sensors"])
            except Exception as err:
                log.exception("run %s: removing its telemetry listeners failed", run_id)
                errors.append(err)
        names = [str(n) for n in deployed.get("schedules") or []]
        if names and self.resources.schedule_group:
            try:
                Schedules(
                    self.client("scheduler"),
                    self.resources.schedule_group,
                    self.resources.scheduler_role_arn or "",
                ).delete(names)
                done["schedules"] = names
            except Exception as err:
                log.exception("run %s: deleting its schedules failed", run_id)
                errors.append(err)
        if errors:
            raise LifecycleError(f"clean-up of run {run_id!r} failed: {errors[0]}") from errors[0]
        return done

    def _stop_worker_tasks(self, run_id: str, cluster: str, known: str | None) -> list[str]:
        """Stop the run's worker tasks: the one the worker named when it answered the token
        (``task_arn``), and any other task of the run's group (``aios-run:<run_id>``: a
        worker that started but never answered)."""
        ecs = self.client("ecs")
        group = WORKER_GROUP_PREFIX + run_id
        arns: list[str] = [known] if known else []
        for status in ("RUNNING", "PENDING"):
            paginator = ecs.get_paginator("list_tasks")
            for page in paginator.paginate(cluster=cluster, desiredStatus=status):
                arns.extend(page.get("taskArns") or [])
        stopped = []
        arns = list(dict.fromkeys(arns))
        for start in range(0, len(arns), 100):
            described = ecs.describe_tasks(cluster=cluster, tasks=arns[start : start + 100])
            for task in described.get("tasks") or []:
                if task.get("group") == group and task.get("lastStatus") != "STOPPED":
                    ecs.stop_task(cluster=cluster, task=task["taskArn"], reason="AIOS run stopped")
                    stopped.append(str(task["taskArn"]))
        return stopped

    def stop_workers(self, data: Mapping[str, Any], request: Mapping[str, Any]) -> dict[str, Any]:
        """Stop the run's GPU worker tasks, remove its stream plans, delete its schedules."""
        return self._cleanup(str(data["run_id"]), request.get("cluster"), data.get("worker"))

    def mark_stopped(self, data: Mapping[str, Any], _: Mapping[str, Any]) -> dict[str, Any]:
        """Mark the run ``stopped`` (if it is still active)."""
        now = self.services.clock()

        def change(run: Run) -> Run | None:
            if not run.status.active:
                return None
            return run.model_copy(update={"status": RunStatus.STOPPED, "stopped_at": now})

        run = self._set_status(str(data["run_id"]), change, what="stopped")
        self.state.delete(STOP_NAMESPACE, str(data["run_id"]))
        current = run or self._run(data)
        return {"status": current.status.value}

    def record_failure(self, data: Mapping[str, Any], request: Mapping[str, Any]) -> dict[str, Any]:
        """Clean up what the run started and mark it ``failed`` with why."""
        run_id = str(data["run_id"])
        step = data.get("failed_step")
        reason = summarize_error(data.get("error"))
        if isinstance(step, str) and step:
            reason = f"{step}: {reason}"[:MAX_ERROR_CHARS]
        try:
            self._cleanup(run_id, request.get("cluster"), data.get("worker"))
        except Exception as err:
            reason = f"{reason} (clean-up failed too: {err})"[:MAX_ERROR_CHARS]
        now = self.services.clock()

        def change(run: Run) -> Run | None:
            if not run.status.active:
                return None
            return run.model_copy(
                update={"status": RunStatus.FAILED, "error": reason, "stopped_at": now}
            )

        try:
            self._set_status(run_id, change, what=f"failed: {reason}")
        except Exception:
            log.exception("run %s: recording its failure failed", run_id)
            raise
        self.state.delete(STOP_NAMESPACE, run_id)
        return {"status": "failed", "error": reason}


def _is_timer(pipeline: ValidatedPipeline, node_id: str) -> bool:
    from aios.nodes.timer import TimerConfig

    return isinstance(pipeline.nodes[node_id].config, TimerConfig)


def answer_stop(sfn: Any, token: str, reason: str) -> bool:
    """Send SendTaskSuccess for a waiting AwaitStop state; ``False`` when the token is no
    longer waiting (answered already, or its execution ended)."""
    from botocore.exceptions import ClientError

    try:
        sfn.send_task_success(taskToken=token, output=json.dumps({"stop": reason}))
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code")
        if code in ("TaskTimedOut", "InvalidToken", "TaskDoesNotExist"):
            log.info("stop token no longer waiting (%s)", code)
            return False
        raise
    return True


__all__ = [
    "API_URL",
    "PLACEMENTS",
    "RUN_NAMESPACE",
    "STOP_NAMESPACE",
    "WORKER_GROUP_PREFIX",
    "CloudResources",
    "Lifecycle",
    "LifecycleError",
    "RunGone",
    "answer_stop",
    "summarize_error",
]
