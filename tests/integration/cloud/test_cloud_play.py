"""Play and Stop through the API function end to end in moto: ``POST …/execute`` starts the
lifecycle (the template's state machine, Tasks bound to ``functions/lifecycle.py``), which
deploys the event machine and the timer's schedule and marks the run running;
``POST …/stop`` answers the waiting lifecycle, which cleans up and marks the run stopped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from cloud_functions import API_DOMAIN, STAGE, answer, api_event
from lifecycle_stack import PREFIX, REGION, LifecycleStack, deployed_stack

from aios.cloud import env
from aios.cloud.event_machines import machine_name
from aios.domain import RunStatus

pytestmark = pytest.mark.timeout(120)

API = "/api/v1"


@pytest.fixture(scope="module")
def stack() -> Iterator[LifecycleStack]:
    with deployed_stack() as created:
        yield created


def timer_pipeline() -> dict[str, Any]:
    """timer (every 15 minutes, Lisbon time) → dashboard: an event tier without video."""
    return {
        "name": "Quarter hours",
        "nodes": [
            {
                "id": "tick",
                "type": "aios/timer@1",
                "config": {"cron": "*/15 * * * 1-5", "timezone": "Europe/Lisbon"},
            },
            {"id": "dash", "type": "aios/dashboard@1", "config": {"panel": "Ticks"}},
        ],
        "edges": [
            {"source": "tick", "sourceHandle": "events", "target": "dash", "targetHandle": "events"}
        ],
    }


class Api:
    """The API function called as API Gateway calls it, signed in as the first admin."""

    def __init__(self, stack: LifecycleStack) -> None:
        from aios.api.auth import ensure_first_admin

        self.stack = stack
        password = ensure_first_admin(stack.services())
        assert password is not None
        login = self.call("POST", "/auth/login", body={"username": "admin", "password": password})
        assert login.status == 200, login.text
        self.token = login.json()["access_token"]

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        if hasattr(self, "token"):
            kwargs.setdefault("token", self.token)
        return answer(self.stack.invoke("ApiFunction", api_event(method, f"{API}{path}", **kwargs)))


@pytest.fixture(scope="module")
def api(stack: LifecycleStack) -> Api:
    return Api(stack)


def test_play_and_stop_through_the_api(stack: LifecycleStack, api: Api) -> None:
    """Play answers 202 with the run starting; the lifecycle makes it running (event machine
    and schedule deployed); Stop answers 202 and the run ends stopped, schedule deleted."""
    # GIVEN a saved pipeline
    created = api.call("POST", "/pipelines", body=timer_pipeline())
    assert created.status == 201, created.text
    pid = created.json()["id"]

    # WHEN it is played
    play = api.call("POST", f"/pipelines/{pid}/execute")

    # THEN the run starts, and its lifecycle makes it running
    assert play.status == 202, play.text
    run = play.json()
    assert run["status"] == "starting"
    stack.wait_run(run["id"], RunStatus.RUNNING)
    # the lifecycle knows the API's URL (edge plans' media target) from the request
    lifecycle_input = json.loads(stack.execution(run["id"])["input"])
    assert lifecycle_input["api_url"] == f"https://{API_DOMAIN}/{STAGE}"
    sfn = boto3.client("stepfunctions", region_name=REGION)
    names = {m["name"] for m in sfn.list_state_machines()["stateMachines"]}
    assert machine_name(PREFIX, pid, 1) in names
    scheduler = boto3.client("scheduler", region_name=REGION)
    group = stack.deployment.environment("LifecycleTaskFunction")[env.SCHEDULE_GROUP]
    (schedule,) = scheduler.list_schedules(GroupName=group)["Schedules"]
    described = scheduler.get_schedule(Name=schedule["Name"], GroupName=group)
    assert described["ScheduleExpression"] == "cron(*/15 * ? * MON,TUE,WED,THU,FRI *)"
    assert described["ScheduleExpressionTimezone"] == "Europe/Lisbon"
    assert described["Target"]["Arn"].endswith(f":stateMachine:{machine_name(PREFIX, pid, 1)}")
    target_input = json.loads(described["Target"]["Input"])
    assert target_input["context"]["entry"] == "tick"
    assert target_input["context"]["run_id"] == run["id"]
    listed = api.call("GET", f"/pipelines/{pid}/runs").json()["items"]
    assert [(r["id"], r["status"]) for r in listed] == [(run["id"], "running")]

    # WHEN it is stopped
    stop = api.call("POST", f"/pipelines/{pid}/stop")

    # THEN the run is stopping at once, then stopped; the schedule is gone
    assert stop.status == 202, stop.text
    assert stop.json()["status"] in ("stopping", "stopped")
    stopped = stack.wait_run(run["id"], RunStatus.STOPPED)
    assert stopped.stopped_at is not None and stopped.error is None
    assert stack.wait_execution(run["id"])["status"] == "SUCCEEDED"
    assert scheduler.list_schedules(GroupName=group)["Schedules"] == []


def test_stop_before_the_run_waits(stack: LifecycleStack, api: Api) -> None:
    """Stop right after Play (the lifecycle still deploying) is not lost: the run ends
    stopped."""
    document = {**timer_pipeline(), "name": "Quick stop"}
    pid = api.call("POST", "/pipelines", body=document).json()["id"]
    run = api.call("POST", f"/pipelines/{pid}/execute").json()
    stop = api.call("POST", f"/pipelines/{pid}/stop")
    assert stop.status == 202, stop.text
    stack.wait_run(run["id"], RunStatus.STOPPED)
    assert stack.wait_execution(run["id"])["status"] == "SUCCEEDED"
