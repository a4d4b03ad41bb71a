"""The pipeline task functions (``functions/pipeline_tasks.py``) of ``template.yaml`` called
as a state machine's Task calls them: each node type runs on the cloud's services
(DynamoDB state, S3 blobs, the DataTable's events); a node's ``Aios.Transient`` and
``Aios.Permanent`` reach ``Retry`` and ``Catch`` by name; a replayed call does not act
twice."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import cv2
import numpy as np
import pytest
from lifecycle_stack import REGION, LifecycleStack, deployed_stack
from recording_http import Recorded, RecordingServer, Reply

from aios.cloud import env
from aios.events.compiler import task_placeholder
from aios.store.port import EventQuery

pytestmark = pytest.mark.timeout(120)

RUN_ID, PIPELINE_ID = "run_tasks", "pl_tasks"


@pytest.fixture(scope="module")
def stack() -> Iterator[LifecycleStack]:
    with deployed_stack() as created:
        yield created


class Script:
    """The receiver's answers, in order (then 200)."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []

    def __call__(self, _: Recorded) -> Reply:
        return self.replies.pop(0) if self.replies else Reply(200, json={"ok": True})


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def receiver(script: Script) -> Iterator[RecordingServer]:
    with RecordingServer(script) as server:
        yield server


def function_of(type_id: str) -> str:
    return task_placeholder(type_id).removesuffix("Arn")


_COUNTER = [0]


def payload(
    type_id: str, config: dict[str, Any], event: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """A Task's payload as the compiler's Parameters make it (a new execution each call)."""
    _COUNTER[0] += 1
    return {
        "node_id": "node",
        "node_type": type_id,
        "config": config,
        "event": event
        or {
            "event_id": f"evt-{_COUNTER[0]}",
            "event_type": "zone.enter",
            "time": "2026-01-05T09:00:12Z",
            "source_id": "camera",
            "class_name": "person",
            "data": {"items": [1, 2, 3]},
        },
        "context": {
            "pipeline": "Tasks",
            "entry": "zone",
            "run_id": RUN_ID,
            "pipeline_id": PIPELINE_ID,
        },
        "execution": f"arn:aws:states:us-east-1:123456789012:express:m:e{_COUNTER[0]}",
        **extra,
    }


def call(stack: LifecycleStack, type_id: str, body: dict[str, Any]) -> Any:
    return stack.invoke(function_of(type_id), body)


def test_each_node_type_runs(stack: LifecycleStack, receiver: RecordingServer) -> None:
    """Every node type's function runs its node with the cloud's services."""
    # processors: the new event
    out = call(
        stack,
        "aios/transform@1",
        payload("aios/transform@1", {"fields": {"data.n": "length(data.items)"}}),
    )
    assert out["data"]["n"] == 3
    counts = [
        call(stack, "aios/storage@1", payload("aios/storage@1", {"operation": "increment"}))
        for _ in range(2)
    ]
    assert [c["data"]["storage"]["value"] for c in counts] == [1, 2]  # kept in DynamoDB
    out = call(stack, "aios/analytics@1", payload("aios/analytics@1", {"window_seconds": 60}))
    assert out["data"]["analytics"]["count"] == 1
    # cv: the snapshot is read from and written to the media bucket
    bucket = stack.deployment.environment("CvV1Function")[env.MEDIA_BUCKET]
    image = np.full((120, 160, 3), 128, np.uint8)
    cv2.rectangle(image, (40, 30), (90, 100), (0, 0, 255), -1)
    key = f"runs/{RUN_ID}/media/snapshots/evt-cv.jpg"
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=bucket, Key=key, Body=cv2.imencode(".jpg", image)[1].tobytes())
    event = {**payload("aios/cv@1", {})["event"], "snapshot": key}
    out = call(
        stack,
        "aios/cv@1",
        payload(
            "aios/cv@1",
            {"operations": [{"op": "resize", "max_width": 80, "max_height": 80}]},
            event,
        ),
    )
    written = s3.get_object(Bucket=bucket, Key=out["snapshot"])["Body"].read()
    assert cv2.imdecode(np.frombuffer(written, np.uint8), cv2.IMREAD_COLOR).shape == (60, 80, 3)
    # actions: their result
    out = call(
        stack, "aios/http_post@1", payload("aios/http_post@1", {"url": f"{receiver.url}/in"})
    )
    assert out["status"] == "sent" and receiver.paths() == ["/in"]
    out = call(stack, "aios/dashboard@1", payload("aios/dashboard@1", {"panel": "Tasks"}))
    assert out["status"] == "recorded"
    stored = stack.store().events.list(EventQuery(run_id=RUN_ID)).items
    assert [e.data["dashboard"]["panel"] for e in stored] == ["Tasks"]
    for type_id, config in (
        ("aios/telegram@1", {"chat_ids": ["12345"]}),
        ("aios/whatsapp@1", {"phone_number_id": "1", "recipients": ["+351910000000"]}),
        (
            "aios/email@1",
            {
                "host": "smtp.example.com",
                "username": "a@example.com",
                "from_address": "a@example.com",
                "to": ["b@example.com"],
            },
        ),
    ):
        out = call(stack, type_id, payload(type_id, config))
        assert out["status"] == "not_configured", (type_id, out)


def test_errors_are_raised_by_their_asl_names(stack: LifecycleStack) -> None:
    """A node's TransientError / PermanentError leave the handler as exceptions named
    ``Aios.Transient`` / ``Aios.Permanent`` (Lambda's errorType)."""
    with pytest.raises(Exception) as transient:  # a PLC nobody answers for
        call(
            stack,
            "aios/plc_write@1",
            payload(
                "aios/plc_write@1",
                {
                    "connection": {
                        "transport": "tcp",
                        "host": "127.0.0.1",
                        "port": 9,
                        "unit_id": 1,
                    },
                    "writes": [{"name": "siren", "table": "coil", "address": 0, "value": True}],
                    "timeout_seconds": 1,
                    "cooldown_seconds": 0,
                },
            ),
        )
    assert type(transient.value).__name__ == "Aios.Transient"
    with pytest.raises(Exception) as permanent:  # a model that does not exist
        call(
            stack, "aios/custom_model@1", payload("aios/custom_model@1", {"model": "models:absent"})
        )
    assert type(permanent.value).__name__ == "Aios.Permanent"
    assert "cannot start" in str(permanent.value)


def test_retry_and_catch_match_the_names(
    stack: LifecycleStack, receiver: RecordingServer, script: Script
) -> None:
    """In a state machine, Retry matches Aios.Transient (a 503) and Catch Aios.Permanent
    (then a 400)."""
    # GIVEN a Task of the HTTP POST function retrying Aios.Transient, catching Aios.Permanent
    script.replies = [Reply(503, json={"error": "busy"}), Reply(400, json={"error": "bad"})]
    definition = {
        "StartAt": "Post",
        "States": {
            "Post": {
                "Type": "Task",
                "Resource": stack.function_arn("HttpPostV1Function"),
                "Parameters": {
                    "node_id": "post",
                    "node_type": "aios/http_post@1",
                    "config": {"url": f"{receiver.url}/in", "retry": {"max_attempts": 0}},
                    "event.$": "$.event",
                    "context.$": "$.context",
                    "execution.$": "$$.Execution.Id",
                },
                "Retry": [
                    {"ErrorEquals": ["Aios.Transient"], "IntervalSeconds": 1, "MaxAttempts": 1}
                ],
                "Catch": [
                    {"ErrorEquals": ["Aios.Permanent"], "ResultPath": "$.error", "Next": "Refused"}
                ],
                "End": True,
            },
            "Refused": {"Type": "Pass", "End": True},
        },
    }
    sfn = boto3.client("stepfunctions", region_name=REGION)
    role = stack.deployment.environment("LifecycleTaskFunction")[env.EVENT_MACHINE_ROLE_ARN]
    machine = sfn.create_state_machine(
        name="aios-test-pl-retry", definition=json.dumps(definition), roleArn=role, type="EXPRESS"
    )["stateMachineArn"]
    body = payload("aios/http_post@1", {})
    # WHEN it runs
    execution = sfn.start_execution(
        stateMachineArn=machine,
        input=json.dumps({"event": body["event"], "context": body["context"]}),
    )["executionArn"]
    deadline = time.monotonic() + 30
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # THEN the 503 was retried and the 400 caught
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"])["error"]["Error"] == "Aios.Permanent"
    assert receiver.paths() == ["/in", "/in"]


def test_replayed_call_does_not_send_twice(
    stack: LifecycleStack, receiver: RecordingServer
) -> None:
    """The same call delivered twice (same execution, node, phase and event) posts once and
    answers the first result both times."""
    config = {"url": f"{receiver.url}/in", "dedup_seconds": 0, "cooldown_seconds": 0}
    body = payload("aios/http_post@1", config)
    first = call(stack, "aios/http_post@1", body)
    second = call(stack, "aios/http_post@1", json.loads(json.dumps(body)))
    assert first == second and first["status"] == "sent"
    assert receiver.paths() == ["/in"]
    # a new execution of the same event acts again (dedup off)
    third = call(stack, "aios/http_post@1", {**body, "execution": body["execution"] + "-2"})
    assert third["status"] == "sent" and receiver.paths() == ["/in", "/in"]
