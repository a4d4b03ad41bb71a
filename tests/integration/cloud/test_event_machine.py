"""The event state machine of the intrusion example, deployed as Play deploys it (Express,
Tasks = the template's pipeline task functions bound to ``functions/pipeline_tasks.py``)
and executed in moto: an event in, the notification out to a local HTTP receiver."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from lifecycle_stack import PREFIX, REGION, LifecycleStack, deployed_stack
from recording_http import Recorded, RecordingServer, Reply

from aios.cloud import env
from aios.cloud.event_machines import definition_text, deploy_machine, machine_name
from aios.events.compiler import compile_pipeline
from aios.events.envelope import make_input
from aios.events.runtime import action_results
from aios.nodes import CATALOG
from aios.pipeline.validation import validate_pipeline
from aios.store.port import EventQuery

pytestmark = pytest.mark.timeout(120)

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "pipelines" / "intrusion.json"


@pytest.fixture(scope="module")
def stack() -> Iterator[LifecycleStack]:
    with deployed_stack() as created:
        yield created


@pytest.fixture
def receiver() -> Iterator[RecordingServer]:
    def reply(_: Recorded) -> Reply:
        return Reply(200, json={"ok": True})

    with RecordingServer(reply) as server:
        yield server


def intrusion_with_webhook(url: str) -> dict[str, Any]:
    """The intrusion example with its PLC siren replaced by an HTTP POST to ``url``: a
    Lambda function cannot reach a PLC on the site's network (WhatsApp, Telegram and email
    stay as shipped: without credentials they report ``not_configured``)."""
    document = json.loads(EXAMPLE.read_text())
    for node in document["nodes"]:
        if node["id"] == "siren":
            node.update(
                {
                    "id": "alarm_hook",
                    "type": "aios/http_post@1",
                    "label": "Alarm receiver",
                    "config": {"url": f"{url}/alarms", "retry": {"max_attempts": 0}},
                }
            )
    for edge in document["edges"]:
        if edge["target"] == "siren":
            edge["target"] = "alarm_hook"
    return document


def run_execution(sfn: Any, machine: str, data: dict[str, Any], name: str) -> dict[str, Any]:
    arn = sfn.start_execution(stateMachineArn=machine, name=name, input=json.dumps(data))[
        "executionArn"
    ]
    deadline = time.monotonic() + 30
    while True:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            return described  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, "the execution did not end"
        time.sleep(0.05)


def test_intrusion_event_sends_the_notification(
    stack: LifecycleStack, receiver: RecordingServer
) -> None:
    """A loitering event of a person runs the fan-out: the HTTP receiver gets the alarm once,
    the dashboard records the event for the run, the unconfigured channels say so."""
    # GIVEN the example's event tier deployed as the lifecycle deploys it
    document = intrusion_with_webhook(receiver.url)
    pipeline = validate_pipeline(document, CATALOG)
    compiled = compile_pipeline(pipeline)
    assert compiled is not None
    lifecycle_env = stack.deployment.environment("LifecycleTaskFunction")
    arns = json.loads(lifecycle_env[env.TASK_FUNCTION_ARNS])
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machine = deploy_machine(
        sfn,
        name=machine_name(PREFIX, "pl_intrusion", 1),
        definition=definition_text(compiled, arns),
        role_arn=lifecycle_env[env.EVENT_MACHINE_ROLE_ARN],
    )

    # WHEN an event of a person staying 6 s enters at the loitering node
    event = {
        "event_id": "evt-loiter-1",
        "event_type": "loitering",
        "time": "2026-01-05T09:00:12Z",
        "source_id": "camera",
        "node_id": "loitering",
        "class_name": "person",
        "dwell_seconds": 6.2,
        "zone": "restricted area",
        "data": {},
    }
    data = make_input(event, pipeline=document["name"], entry="loitering", timezone="Europe/Lisbon")
    data["context"].update({"run_id": "run_intrusion", "pipeline_id": "pl_intrusion"})
    described = run_execution(sfn, machine, data, "evt-loiter-1")

    # THEN the execution succeeded with every action's result
    assert described["status"] == "SUCCEEDED", described
    results = dict(action_results(json.loads(described["output"])))
    assert results["alarm_hook"]["status"] == "sent"
    assert results["dashboard"]["status"] == "recorded"
    for channel in ("whatsapp", "telegram", "email"):
        assert results[channel]["status"] == "not_configured", results[channel]
    # AND the receiver got the event once
    (request,) = receiver.requests
    assert request.path == "/alarms"
    assert request.json()["event_id"] == "evt-loiter-1"
    # AND the dashboard stored it with the run
    events = stack.store().events.list(EventQuery(run_id="run_intrusion")).items
    assert [(e.type, e.severity, e.data["dashboard"]["panel"]) for e in events] == [
        ("loitering", "critical", "Intrusions")
    ]

    # WHEN the event of someone passing by (2 s) enters
    event = {**event, "event_id": "evt-loiter-2", "dwell_seconds": 2.0}
    data = make_input(event, pipeline=document["name"], entry="loitering", timezone="UTC")
    described = run_execution(sfn, machine, data, "evt-loiter-2")

    # THEN nothing is sent
    assert described["status"] == "SUCCEEDED"
    assert action_results(json.loads(described["output"])) == []
    assert len(receiver.requests) == 1
