"""The lifecycle state machine (``stepfunctions/lifecycle.asl.json``) executed in moto with
its Tasks bound to the real ``functions/lifecycle.py``: Play and Stop at the edge and in the
cloud, failures recorded on the run, and statelint on every definition."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import jwt
import pytest
from lifecycle_stack import (
    CONTAINER,
    LIFECYCLE_ASL,
    PREFIX,
    REGION,
    LifecycleStack,
    deployed_stack,
    lifecycle_definition,
    substitutions,
)
from moto.core import DEFAULT_ACCOUNT_ID
from moto.iotdata.models import iotdata_backends

from aios.cloud.dispatch import RunEvents
from aios.cloud.event_machines import machine_name
from aios.cloud.lifecycle import API_URL, RUN_NAMESPACE, summarize_error
from aios.cloud.state import DynamoStateStore
from aios.domain import Device, DeviceKind, RunStatus
from aios.events.compiler import compile_pipeline, lint
from aios.messages import DeviceEventItem
from aios.nodes import CATALOG
from aios.pipeline.validation import validate_pipeline
from aios.store.port import EventQuery

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[3]
CONNECTOR, CAMERA = "conn-1", "cam-1"
PUBLIC_API = "https://api.example.test/test"
"""The API's URL as connectors reach it (``AIOS_API_URL``): the edge plans' media target."""


def fleet_pipeline(name: str = "Yard watch", camera: str = CAMERA) -> dict[str, Any]:
    """fleet camera → detect → zone → dashboard: its stream tier runs on the connector."""
    return {
        "name": name,
        "nodes": [
            {"id": "cam", "type": "aios/camera.device@1", "config": {"device_id": camera}},
            {"id": "detect", "type": "aios/object_detection@1", "config": {"classes": ["person"]}},
            {
                "id": "zone",
                "type": "aios/zone@1",
                "config": {"name": "yard", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]},
            },
            {"id": "dash", "type": "aios/dashboard@1", "config": {"panel": "Yard"}},
        ],
        "edges": [
            {
                "source": "cam",
                "sourceHandle": "frames",
                "target": "detect",
                "targetHandle": "frames",
            },
            {
                "source": "detect",
                "sourceHandle": "detections",
                "target": "zone",
                "targetHandle": "detections",
            },
            {
                "source": "zone",
                "sourceHandle": "events",
                "target": "dash",
                "targetHandle": "events",
            },
        ],
    }


def cloud_pipeline(name: str = "Courtyard") -> dict[str, Any]:
    """A file input (not a fleet camera): its stream tier runs on the GPU worker."""
    document = fleet_pipeline(name)
    document["nodes"][0] = {
        "id": "cam",
        "type": "aios/file.input@1",
        "config": {"path": "asset:vtest.avi"},
    }
    return document


@pytest.fixture(scope="module")
def stack() -> Iterator[LifecycleStack]:
    """One deployment for the module's tests (creating it takes most of their time)."""
    with deployed_stack({API_URL: PUBLIC_API}) as created:
        yield created


def register_fleet(stack: LifecycleStack) -> None:
    from aios.fleet.service import FleetService

    services = stack.services()
    fleet = FleetService(services)
    fleet.register(Device(id=CONNECTOR, name="Gateway", kind=DeviceKind.CONNECTOR), actor="t")
    fleet.register(
        Device(id=CAMERA, name="Yard", kind=DeviceKind.CAMERA, parent_id=CONNECTOR), actor="t"
    )


def stream_plans(stack: LifecycleStack) -> list[dict[str, Any]]:
    device = stack.store().devices.get(CONNECTOR)
    return list(device.desired_config.get("stream_plans") or [])


def test_edge_play_and_stop(stack: LifecycleStack) -> None:
    """Play of a fleet-camera pipeline deploys its Express machine with the task functions'
    ARNs, pushes the plan to the connector (published retained), marks the run running; an
    event of the plan starts an execution that records it; Stop removes the plan, marks the
    run stopped and keeps the machine."""
    # GIVEN a connector with a camera, and a pipeline on that camera
    register_fleet(stack)
    pid = stack.add_pipeline(fleet_pipeline())

    # WHEN it is played
    run = stack.play(pid)

    # THEN the run becomes running
    assert run.status is RunStatus.STARTING
    stack.wait_run(run.id, RunStatus.RUNNING)
    # AND the revision's Express machine exists, its Task bound to the dashboard function
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machines = {m["name"]: m for m in sfn.list_state_machines()["stateMachines"]}
    name = machine_name(PREFIX, pid, 1)
    assert machines[name]["type"] == "EXPRESS"
    definition = sfn.describe_state_machine(stateMachineArn=machines[name]["stateMachineArn"])[
        "definition"
    ]
    assert stack.function_arn("DashboardV1Function") in definition
    assert "${" not in definition
    # AND the connector's desired configuration has the run's plan, published retained
    plans = stream_plans(stack)
    assert [(p["plan_id"], p["camera_id"], p["run_id"]) for p in plans] == [
        (f"{run.id}.cam", CAMERA, run.id)
    ]
    # (snapshots go to the API with an upload grant of this run and connector)
    media = plans[0]["media"]
    assert media["upload_url"] == f"{PUBLIC_API}/api/v1/runs/{run.id}/media/{{kind}}/{{name}}"
    grant = media["headers"]["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(grant, options={"verify_signature": False})
    assert (claims["run_id"], claims["connector_id"]) == (run.id, CONNECTOR)
    published = iotdata_backends[DEFAULT_ACCOUNT_ID][REGION].published_payloads
    desired = [
        json.loads(body) for topic, body in published if topic == f"cfg/aios/{CONNECTOR}/desired"
    ]
    assert desired[-1]["config"]["stream_plans"][0]["plan_id"] == f"{run.id}.cam"

    # WHEN the connector publishes an event of the plan (through the IoT rule to the events
    # ingest function), twice (QoS 1 redelivers)
    state = DynamoStateStore(stack.deployment.table)
    assert state.get(RUN_NAMESPACE, run.id)["machine_arn"].endswith(name)
    stream_event = {
        "event_id": "ev-1",
        "event_type": "zone.enter",
        "time": "2026-01-05T09:00:12Z",
        "media_time_seconds": 12.0,
        "frame_index": 120,
        "pipeline": "Yard watch",
        "source_id": "cam",
        "node_id": "zone",
        "node_type": "aios/zone@1",
        "zone": "yard",
        "class_name": "person",
        "snapshot": f"runs/{run.id}/media/snapshots/ev-1.jpg",
    }
    message = {
        "message_id": "m-1",
        "time": datetime.now(UTC).isoformat(),
        "device_id": CAMERA,
        "events": [
            {
                "type": "zone.enter",
                "id": "ev-1",
                "data": {
                    "run_id": run.id,
                    "plan_id": f"{run.id}.cam",
                    "stream_event": stream_event,
                },
            }
        ],
        "mqtt_topic": f"dt/aios/{CONNECTOR}/events",
    }
    first = stack.invoke("EventsIngestFunction", message)
    second = stack.invoke("EventsIngestFunction", {**message, "message_id": "m-2"})
    assert first["accepted"] and second["accepted"], (first, second)
    # (a redelivery under another message id reaches the run's hook, which drops it)
    item = DeviceEventItem.model_validate(message["events"][0])
    assert RunEvents(stack.services("EventsIngestFunction"), state).take(CAMERA, item) == (
        "duplicate"
    )

    # THEN one execution ran the dashboard, which stored the event with the run
    events = stack.wait_for(
        lambda: stack.store().events.list(EventQuery(pipeline_id=pid)).items, label="stored event"
    )
    assert [(e.run_id, e.data["dashboard"]["panel"]) for e in events] == [(run.id, "Yard")]

    # WHEN it is stopped
    stack.stop(pid)

    # THEN the run is stopped, the plan removed, the machine kept
    stack.wait_run(run.id, RunStatus.STOPPED)
    assert stack.wait_execution(run.id)["status"] == "SUCCEEDED"
    assert stream_plans(stack) == []
    assert name in {m["name"] for m in sfn.list_state_machines()["stateMachines"]}


def worker_task(stack: LifecycleStack, run_id: str) -> dict[str, Any]:
    """The GPU worker task the lifecycle started (waits for it)."""
    ecs = boto3.client("ecs", region_name=REGION)

    def started() -> list[dict[str, Any]]:
        run = stack.run(run_id)
        assert run.status is RunStatus.STARTING, f"run {run.status.value}: {run.error}"
        arns = ecs.list_tasks(cluster=stack.cluster)["taskArns"]
        tasks = ecs.describe_tasks(cluster=stack.cluster, tasks=arns)["tasks"] if arns else []
        return [t for t in tasks if t.get("group") == f"aios-run:{run_id}"]

    (task,) = stack.wait_for(started, label="worker task")
    return task  # type: ignore[no-any-return]


def token_of(task: dict[str, Any]) -> dict[str, str]:
    (container,) = [c for c in task["overrides"]["containerOverrides"] if c["name"] == CONTAINER]
    return {e["name"]: e["value"] for e in container["environment"]}


def test_cloud_play_waits_for_the_worker(stack: LifecycleStack) -> None:
    """A pipeline on a file input starts the GPU worker task with the task token and run id
    in its environment; the run is running once the worker answers the token; Stop stops
    the task."""
    # GIVEN a pipeline whose video input is not a fleet camera
    pid = stack.add_pipeline(cloud_pipeline())

    # WHEN it is played
    run = stack.play(pid)

    # THEN an ECS task is started with the token and the run id, and the run waits for it
    task = worker_task(stack, run.id)
    environment = token_of(task)
    assert environment["AIOS_RUN_ID"] == run.id and environment["AIOS_TASK_TOKEN"]
    assert task["group"] == f"aios-run:{run.id}"
    assert stack.run(run.id).status is RunStatus.STARTING

    # WHEN the worker reports ready
    stack.sfn.send_task_success(
        taskToken=environment["AIOS_TASK_TOKEN"], output=json.dumps({"task_arn": task["taskArn"]})
    )

    # THEN the run is running; Stop stops the worker and the run
    stack.wait_run(run.id, RunStatus.RUNNING)
    stack.stop(pid)
    stack.wait_run(run.id, RunStatus.STOPPED)
    ecs = boto3.client("ecs", region_name=REGION)
    described = ecs.describe_tasks(cluster=stack.cluster, tasks=[task["taskArn"]])["tasks"][0]
    assert described["desiredStatus"] == "STOPPED"


def test_worker_failure_fails_the_run(stack: LifecycleStack) -> None:
    """The worker answering SendTaskFailure fails the run with the step and its reason."""
    pid = stack.add_pipeline(cloud_pipeline())
    run = stack.play(pid)
    environment = token_of(worker_task(stack, run.id))
    stack.sfn.send_task_failure(
        taskToken=environment["AIOS_TASK_TOKEN"],
        error="Aios.WorkerFailed",
        cause="model file not found: models/yolo.onnx",
    )
    failed = stack.wait_run(run.id, RunStatus.FAILED)
    # moto's SendTaskFailure drops the cause (AWS passes it on: see the next assertion)
    assert failed.error is not None
    assert failed.error.startswith("StartStreamWorker: Aios.WorkerFailed")
    assert stack.wait_execution(run.id)["status"] == "FAILED"
    # the Catch's error and cause, as AWS gives them, make the run's error
    caught = {"Error": "Aios.WorkerFailed", "Cause": "model file not found: models/yolo.onnx"}
    assert summarize_error(caught) == "Aios.WorkerFailed: model file not found: models/yolo.onnx"
    lambda_cause = json.dumps(
        {"errorType": "CompileError", "errorMessage": "node 'x': bad", "stackTrace": ["File a"]}
    )
    assert summarize_error({"Error": "CompileError", "Cause": lambda_cause}) == (
        "CompileError: node 'x': bad"
    )


def test_invalid_revision_fails_the_run(stack: LifecycleStack) -> None:
    """A lifecycle started for a revision the run is not of fails at Validate; the run
    is failed with the reason (no stack trace)."""
    pid = stack.add_pipeline(fleet_pipeline("Gate", camera="cam-gate"))  # not in the fleet
    run = stack.play(pid)
    failed = stack.wait_run(run.id, RunStatus.FAILED)
    assert failed.error is not None
    assert failed.error.startswith(
        "Validate: EdgePlacementError: node 'cam': camera 'cam-gate' is not in the fleet"
    )
    assert "Traceback" not in failed.error and 'File "' not in failed.error
    # and a lifecycle whose input names another revision than the run's
    other = stack.store().runs.create(
        run.model_copy(update={"id": "run_other", "status": RunStatus.STARTING, "version": 1})
    )
    stack.sfn.start_execution(
        stateMachineArn=stack.lifecycle_arn,
        name=other.id,
        input=json.dumps({"run_id": other.id, "pipeline_id": pid, "revision": 7}),
    )
    failed = stack.wait_run(other.id, RunStatus.FAILED)
    assert failed.error is not None and "revision 7" in failed.error


def test_definitions_pass_statelint() -> None:
    """The lifecycle machine (placeholders substituted) and the compiled event tier of every
    example pipeline are valid ASL by statelint."""
    from statelint.linter import Linter

    values = substitutions(
        "arn:aws:lambda:us-east-1:123456789012:function:aios-lifecycle",
        "arn:aws:ecs:us-east-1:123456789012:cluster/aios-detector",
        "arn:aws:ecs:us-east-1:123456789012:task-definition/aios-detector:1",
    )
    assert list(Linter.validate(json.loads(lifecycle_definition(values)))) == []
    text = LIFECYCLE_ASL.read_text()
    assert "QueryLanguage" not in text and "{%" not in text and '"Assign"' not in text
    examples = sorted((ROOT / "examples" / "pipelines").glob("*.json"))
    assert examples
    for path in examples:
        compiled = compile_pipeline(validate_pipeline(json.loads(path.read_text()), CATALOG))
        assert compiled is not None, path.name
        assert lint(compiled.definition) == [], path.name
