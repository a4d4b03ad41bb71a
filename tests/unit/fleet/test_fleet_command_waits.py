"""FleetCommands: a fleet command sent for a pipeline task and waited for — the device's
answer recorded by the fleet (as the ingester records it) is the outcome; failures map to
the task errors Retry and Catch match. Real SQLite store and FleetService; the connector's
answers are given through ``record_command_response`` as the ingester gives them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from fleet_support import Env, device

from aios.domain import CommandStatus, DeviceKind
from aios.events.task import DeviceCommands, PermanentError, TransientError
from aios.fleet.commands import BUDGET_MARGIN_SECONDS, FleetCommands, time_budget
from aios.messages import CommandResponse

CONNECTOR, PLC = "gw-1", "press-7"

Answer = Callable[[dict[str, Any]], tuple[bool, dict[str, Any] | None, str | None] | None]


@dataclass
class AnsweringLink:
    """A device link whose connector answers each request at once (``answer`` returns
    ``(ok, result, error)``, or ``None`` for no answer), recorded through the fleet."""

    env: Env
    answer: Answer
    published: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def publish(self, topic: str, payload: dict[str, Any], *, retain: bool = False) -> None:
        self.published.append((topic, payload))
        outcome = self.answer(payload)
        if outcome is None:
            return
        ok, result, error = outcome
        response = CommandResponse(
            message_id=f"res-{len(self.published)}",
            time=self.env.clock(),
            request_id=payload["request_id"],
            ok=ok,
            result=result,
            error=error,
        )
        self.env.fleet.record_command_response(CONNECTOR, response)


class FakeTime:
    """Monotonic time that moves only when slept."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def plc_fleet(env: Env, answer: Answer) -> AnsweringLink:
    env.fleet.register(device(CONNECTOR), actor="t")
    env.fleet.register(device(PLC, DeviceKind.PLC, parent_id=CONNECTOR), actor="t")
    link = AnsweringLink(env, answer)
    env.services.link = link
    return link


def test_an_answered_command_is_the_outcome_and_in_the_history(env: Env) -> None:
    link = plc_fleet(env, lambda p: (True, {"value": 1.0, "table": "coil"}, None))
    commands = FleetCommands(env.fleet)
    assert isinstance(commands, DeviceCommands)
    answer = commands.send(
        PLC, "write_coil", {"address": 0, "value": True}, 3.0, actor="pipeline 'p', node 'n'"
    )
    assert answer.response == {"value": 1.0, "table": "coil"}
    # published on the connector's topic, naming the PLC
    assert link.published[0][0] == f"cmd/aios/{CONNECTOR}/req"
    assert link.published[0][1]["device_id"] == PLC
    stored = env.store.commands.list(PLC).items
    assert [(c.request_id, c.status, c.requested_by) for c in stored] == [
        (answer.request_id, CommandStatus.SUCCEEDED, "pipeline 'p', node 'n'")
    ]


@pytest.mark.parametrize(
    ("result", "error", "kind"),
    [
        (None, "no register named 'x'", PermanentError),
        ({"exception_code": 2}, "PLC answered exception 02 ILLEGAL DATA ADDRESS", PermanentError),
        ({"exception_code": 6}, "PLC answered exception 06 SERVER DEVICE BUSY", TransientError),
        ({"retryable": True}, "not answering; next attempt in 1.0 s", TransientError),
    ],
)
def test_a_failure_carries_the_device_reason(
    env: Env, result: dict[str, Any] | None, error: str, kind: type[Exception]
) -> None:
    plc_fleet(env, lambda p: (False, result, error))
    with pytest.raises(kind, match=error) as raised:
        FleetCommands(env.fleet).send(PLC, "write_coil", {"address": 0, "value": 1}, 3.0)
    assert PLC in str(raised.value)


def test_no_answer_is_transient_after_the_timeout(env: Env) -> None:
    plc_fleet(env, lambda p: None)
    clock = FakeTime()
    commands = FleetCommands(env.fleet, sleep=clock.sleep, monotonic=clock.monotonic)
    with pytest.raises(TransientError, match="no answer within 2 s"):
        commands.send(PLC, "write_coil", {"address": 0, "value": 1}, 2.0)
    assert 2.0 <= sum(clock.slept) <= 2.5  # the timeout and the grace, no more
    assert clock.slept[0] < clock.slept[-1] <= 0.5  # backs off to at most 0.5 s a read
    assert env.store.commands.list(PLC).items[0].status is CommandStatus.PENDING


def test_refusals_before_sending(env: Env) -> None:
    link = plc_fleet(env, lambda p: (True, {}, None))
    commands = FleetCommands(env.fleet)
    with pytest.raises(PermanentError, match="'ghost' does not exist"):
        commands.send("ghost", "write_coil", {"address": 0, "value": 1}, 2.0)
    with pytest.raises(PermanentError, match="timeout_seconds"):
        commands.send(PLC, "write_coil", {"address": 0, "value": 1}, 0.0)
    env.services.link = None
    with pytest.raises(TransientError, match="no connection to the device broker"):
        commands.send(PLC, "write_coil", {"address": 0, "value": 1}, 2.0)
    assert link.published == []


def test_the_time_budget_cuts_the_command_timeout(env: Env) -> None:
    link = plc_fleet(env, lambda p: (True, {}, None))
    commands = FleetCommands(env.fleet)
    with time_budget(lambda: BUDGET_MARGIN_SECONDS + 1.5):
        commands.send(PLC, "write_coil", {"address": 0, "value": 1}, 60.0)
    command = env.store.commands.list(PLC).items[0]
    assert (command.deadline - command.requested_at).total_seconds() == pytest.approx(1.5)
    # too little left: not sent at all
    with (
        time_budget(lambda: BUDGET_MARGIN_SECONDS + 0.1),
        pytest.raises(TransientError, match="too little"),
    ):
        commands.send(PLC, "write_coil", {"address": 0, "value": 1}, 60.0)
    assert len(link.published) == 1
