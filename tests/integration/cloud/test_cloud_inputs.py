"""Event-tier inputs of runs in the cloud, in moto with the template's functions bound to
their real handlers: telemetry through ``TelemetryIngestFunction`` into the runs whose
sensor node listens to its device, and webhook deliveries through ``ApiFunction``
(``POST /api/v1/webhooks/{pipeline_id}/{hook}``); each event one execution of the run's
Express machine, whose HTTP POST action reaches a recording server on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import lifecycle_stack as stacks
import pytest
from cloud_functions import answer, api_event
from lifecycle_stack import PREFIX, REGION, LifecycleStack, deployed_stack
from recording_http import Recorded, RecordingServer, Reply

from aios.cloud.event_machines import machine_name
from aios.domain import Device, DeviceKind, RunStatus
from aios.events.webhooks import sign
from aios.messages import Telemetry, TelemetrySample, TopicKind, topic

pytestmark = pytest.mark.timeout(120)

API = "/api/v1"
PRESS, OTHER = "press-7", "press-8"
SECRET = "door-shared-secret-1"


@pytest.fixture(scope="module")
def receiver() -> Iterator[RecordingServer]:
    def reply(_: Recorded) -> Reply:
        return Reply(200, json={"ok": True})

    with RecordingServer(reply) as server:
        yield server


@pytest.fixture(scope="module")
def stack() -> Iterator[LifecycleStack]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stacks, "FUNCTIONS", stacks.FUNCTIONS | {"TelemetryIngestFunction"})
        with deployed_stack() as created:
            store = created.store()
            for device in (PRESS, OTHER):
                store.devices.create(Device(id=device, name=device, kind=DeviceKind.SENSOR))
            created.services().store.secrets.put(
                "door_secret", SECRET, by="tester", at=datetime.now(UTC)
            )
            yield created


def post_to(url: str) -> dict[str, Any]:
    return {
        "id": "alarm",
        "type": "aios/http_post@1",
        "config": {"url": f"{url}/alarms", "retry": {"max_attempts": 0}},
    }


def sensor_pipeline(url: str) -> dict[str, Any]:
    """press-7's temperature → over 80 °C → HTTP POST."""
    return {
        "name": "Press temperature",
        "nodes": [
            {
                "id": "press",
                "type": "aios/sensor.data@1",
                "config": {"topic": f"dt/aios/{PRESS}/telemetry", "fields": ["temp_c"]},
            },
            {
                "id": "hot",
                "type": "aios/conditional@1",
                "config": {
                    "match": "all",
                    "conditions": [
                        {"field": "data.readings.temp_c", "operator": "gt", "value": 80}
                    ],
                },
            },
            post_to(url),
        ],
        "edges": [
            {
                "source": "press",
                "sourceHandle": "events",
                "target": "hot",
                "targetHandle": "events",
            },
            {"source": "hot", "sourceHandle": "true", "target": "alarm", "targetHandle": "events"},
        ],
    }


def webhook_pipeline(url: str, name: str = "Door alarms", **config: Any) -> dict[str, Any]:
    """A webhook ``/hooks/door`` → HTTP POST."""
    return {
        "name": name,
        "nodes": [
            {
                "id": "door",
                "type": "aios/webhook@1",
                "config": {"path": "/hooks/door", "secret_name": "door_secret", **config},
            },
            post_to(url),
        ],
        "edges": [
            {
                "source": "door",
                "sourceHandle": "events",
                "target": "alarm",
                "targetHandle": "events",
            }
        ],
    }


def executions(pipeline_id: str) -> list[dict[str, Any]]:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn = next(
        m["stateMachineArn"]
        for m in sfn.list_state_machines()["stateMachines"]
        if m["name"] == machine_name(PREFIX, pipeline_id, 1)
    )
    return sfn.list_executions(stateMachineArn=arn)["executions"]  # type: ignore[no-any-return]


def wait_ended(arns: list[str]) -> None:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    deadline = time.monotonic() + 30
    for arn in arns:
        while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
            assert time.monotonic() < deadline, f"execution {arn} did not end"
            time.sleep(0.05)


def telemetry(device: str, message_id: str, temp: float) -> dict[str, Any]:
    """What the telemetry rule hands the function: the message plus ``mqtt_topic``."""
    message = Telemetry(
        message_id=message_id,
        time=datetime.now(UTC),
        samples=[TelemetrySample(metric="temp_c", value=temp, unit="°C")],
    )
    return {
        **json.loads(message.model_dump_json()),
        "mqtt_topic": topic(TopicKind.TELEMETRY, device),
    }


def play(stack: LifecycleStack, document: dict[str, Any]) -> tuple[str, str]:
    pid = stack.add_pipeline(document)
    run = stack.play(pid)
    stack.wait_run(run.id, RunStatus.RUNNING)
    return pid, run.id


def test_telemetry_of_the_listened_device_starts_one_execution(
    stack: LifecycleStack, receiver: RecordingServer
) -> None:
    """press-7 over the threshold → one execution → the POST; press-8's telemetry starts
    nothing; the same message redelivered starts nothing more; after Stop, nothing."""
    # GIVEN a running pipeline whose sensor node listens to press-7
    pid, run_id = play(stack, sensor_pipeline(receiver.url))
    before = len(receiver.requests)

    # WHEN press-7 reports 85 °C, and press-8 95 °C
    hot = telemetry(PRESS, "t-1", 85.0)
    first = stack.invoke("TelemetryIngestFunction", hot)
    other = stack.invoke("TelemetryIngestFunction", telemetry(OTHER, "t-2", 95.0))

    # THEN one execution (press-7's) runs and POSTs the reading
    assert first["accepted"] and other["accepted"], (first, other)
    started = executions(pid)
    assert len(started) == 1, started
    wait_ended([e["executionArn"] for e in started])
    stack.wait_for(lambda: len(receiver.requests) > before, label="the alarm POST")
    posted = receiver.requests[before].json()
    assert posted["source_id"] == PRESS
    assert posted["data"]["readings"] == {"temp_c": 85.0}

    # WHEN the same message is delivered again
    again = stack.invoke("TelemetryIngestFunction", hot)

    # THEN it is a duplicate and starts no execution
    assert again["duplicate"] is True
    assert len(executions(pid)) == 1

    # WHEN the run stops, press-7's telemetry starts nothing
    stack.stop(pid)
    stack.wait_run(run_id, RunStatus.STOPPED)
    stack.invoke("TelemetryIngestFunction", telemetry(PRESS, "t-3", 99.0))
    assert len(executions(pid)) == 1


class Hooks:
    """The API function called as API Gateway calls the public webhook route."""

    def __init__(self, stack: LifecycleStack) -> None:
        self.stack = stack

    def post(
        self, target: str, body: Any, *, secret: str = SECRET, headers: dict[str, str] | None = None
    ) -> Any:
        text = json.dumps(body)
        signed = {"X-AIOS-Signature": sign(secret, text.encode()), **(headers or {})}
        event = api_event("POST", f"{API}/webhooks/{target}", body=body, headers=signed)
        assert event["body"] == text
        return answer(self.stack.invoke("ApiFunction", event))


@pytest.fixture(scope="module")
def door(stack: LifecycleStack, receiver: RecordingServer) -> str:
    """A running webhook pipeline's id."""
    pid, _ = play(stack, webhook_pipeline(receiver.url))
    return pid


def test_a_signed_delivery_is_processed(
    stack: LifecycleStack, receiver: RecordingServer, door: str
) -> None:
    """The right signature → 202 with the execution → the POST; the same idempotency key
    again → 202 duplicate, no second execution."""
    before = len(receiver.requests)
    hooks = Hooks(stack)

    got = hooks.post(f"{door}/door", {"door": "north"}, headers={"Idempotency-Key": "k-1"})

    assert got.status == 202, got.text
    body = got.json()
    assert body["accepted"] is True and body["execution_id"]
    wait_ended([body["execution_id"]])
    stack.wait_for(lambda: len(receiver.requests) > before, label="the POST")
    posted = receiver.requests[before].json()
    assert posted["event_type"] == "webhook.received"
    assert posted["data"] == {"door": "north"}

    again = hooks.post(f"{door}/door", {"door": "north"}, headers={"Idempotency-Key": "k-1"})
    assert again.status == 202, again.text
    assert again.json()["duplicate"] is True and again.json()["execution_id"] is None
    assert len(executions(door)) == 1


def test_a_wrong_secret_is_refused(stack: LifecycleStack, door: str) -> None:
    """A signature with another secret → 401, no execution."""
    count = len(executions(door))
    got = Hooks(stack).post(f"{door}/door", {"door": "south"}, secret="not-the-secret")
    assert got.status == 401, got.text
    assert "X-AIOS-Signature" in got.json()["error"]["message"]
    assert len(executions(door)) == count


def test_no_active_run_or_no_such_hook_is_404(
    stack: LifecycleStack, receiver: RecordingServer
) -> None:
    """A pipeline that is not running, or a hook it does not have → 404 saying so."""
    idle = stack.add_pipeline(webhook_pipeline(receiver.url, name="Idle doors"))
    hooks = Hooks(stack)

    got = hooks.post(f"{idle}/door", {"door": "east"})
    assert got.status == 404, got.text
    assert "no active run" in got.json()["error"]["message"]

    unknown = hooks.post("pl_does_not_exist/door", {"door": "east"})
    assert unknown.status == 404, unknown.text


def test_an_oversized_body_is_413(stack: LifecycleStack, receiver: RecordingServer) -> None:
    """A body over the node's max_body_bytes → 413, no execution."""
    pid, _ = play(stack, webhook_pipeline(receiver.url, name="Small doors", max_body_bytes=64))
    got = Hooks(stack).post(f"{pid}/door", {"door": "x" * 100})
    assert got.status == 413, got.text
    assert executions(pid) == []
