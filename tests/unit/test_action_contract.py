"""The contract every action node shares, on a small action that records its sends.

Time is injected: ``services.now`` and the state store read one fake clock, and
``services.sleep`` records the wait and moves that clock, so nothing here really waits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import Field, ValidationError

from aios.events.actions import (
    Action,
    ActionConfig,
    NotConfigured,
    RetryAfter,
    Template,
    render,
)
from aios.events.secrets import DictSecretStore
from aios.events.state import MemoryStateStore
from aios.events.task import PermanentError, TaskRequest, TaskServices, TransientError

START = 1_767_603_600.0  # 2026-01-05 09:00:00 UTC


class FakeClock:
    """One clock for the state store (epoch seconds) and the services (UTC datetime)."""

    def __init__(self) -> None:
        self.t = START
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def time(self) -> float:
        """Return epoch seconds."""
        return self.t

    def now(self) -> datetime:
        """Return the same instant as an aware UTC datetime."""
        return datetime.fromtimestamp(self.t, UTC)

    def sleep(self, seconds: float) -> None:
        """Record the wait and move time instead of waiting."""
        with self._lock:
            self.sleeps.append(seconds)
            self.t += seconds

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.t += seconds


class NotifyConfig(ActionConfig):
    """An action config with a message template."""

    message: Template = Field(
        default="{{ event.event_type }} in {{ event.zone }}",
        title="Message",
        description="Jinja2 template of the text sent.",
    )
    recipient: str = Field(
        default="ops", title="Recipient", description="Who is notified (empty: nobody)."
    )


class RecordingAction(Action[NotifyConfig]):
    """Records each send; raises the queued errors first, one per attempt."""

    channel = "test"

    def __init__(self, config: NotifyConfig, services: TaskServices) -> None:
        super().__init__(config, services)
        self.sent: list[str] = []
        self.attempts = 0
        self.failures: list[BaseException] = []
        self._lock = threading.Lock()

    def check_configured(self, request: TaskRequest) -> None:
        """Need a recipient and the 'notify_token' secret."""
        if not self.config.recipient:
            raise NotConfigured("set 'recipient' to who should be notified")
        self.services.secrets.get("notify_token")

    def send(self, request: TaskRequest) -> dict[str, Any]:
        """Raise the next queued failure, else record the rendered message."""
        with self._lock:
            self.attempts += 1
            if self.failures:
                raise self.failures.pop(0)
            text = render(self.config.message, request)
            self.sent.append(text)
            return {"text": text}


@pytest.fixture
def clock() -> FakeClock:
    """Return the fake clock."""
    return FakeClock()


@pytest.fixture
def services(clock: FakeClock) -> TaskServices:
    """Return services on the fake clock, with the secret the action needs."""
    return TaskServices(
        secrets=DictSecretStore({"notify_token": "t0ken-value"}),
        state=MemoryStateStore(clock=clock.time),
        now=clock.now,
        sleep=clock.sleep,
    )


def action(services: TaskServices, **config: Any) -> RecordingAction:
    """Build the recording action from raw config values."""
    return RecordingAction(NotifyConfig.model_validate(config), services)


def request(
    event_id: str = "e1",
    source_id: str = "cam1",
    *,
    node_id: str = "notify",
    pipeline: str = "Intrusion",
    **fields: Any,
) -> TaskRequest:
    """Return a task request for one loitering event."""
    event = {
        "event_id": event_id,
        "event_type": "loitering",
        "time": "2026-01-05T09:00:00+00:00",
        "source_id": source_id,
        **fields,
    }
    context = {"pipeline": pipeline, "entry": "loiter", "execution": "x1"}
    return TaskRequest(node_id, event, context)


def run_together(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` on ``count`` threads released at once; return results in order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait(timeout=5)
            results[i] = work(i)
        except BaseException as err:  # surfaced to the test below
            errors.append(err)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads), "a worker thread hung"
    assert not errors, errors
    return results


# --- disabled, not configured -------------------------------------------------------------


def test_disabled_action_sends_nothing_and_takes_no_claim(services: TaskServices) -> None:
    """A disabled action reports 'disabled' and leaves dedup and cooldown untouched."""
    # GIVEN a disabled action
    disabled = action(services, disabled=True)
    # WHEN an event reaches it
    result = disabled.run(request("e1"))
    # THEN nothing is sent and the result says why
    assert result["status"] == "disabled"
    assert disabled.sent == []
    # AND the same event is still new to the enabled action
    assert action(services).run(request("e1"))["status"] == "sent"


def test_missing_recipient_reports_not_configured(services: TaskServices) -> None:
    """NotConfigured from check_configured becomes 'not_configured' with what to set."""
    unset = action(services, recipient="")
    result = unset.run(request("e1"))
    assert result["status"] == "not_configured"
    assert "recipient" in result["reason"]
    assert unset.attempts == 0
    # no claim was taken: once configured, the same event is sent
    assert action(services).run(request("e1"))["status"] == "sent"


def test_missing_secret_reports_not_configured_without_a_value(clock: FakeClock) -> None:
    """A SecretNotFound from the store also reports 'not_configured', naming the secret."""
    services = TaskServices(
        secrets=DictSecretStore({"other": "hunter2"}),
        state=MemoryStateStore(clock=clock.time),
        now=clock.now,
        sleep=clock.sleep,
    )
    unset = action(services)
    result = unset.run(request("e1"))
    assert result["status"] == "not_configured"
    assert "notify_token" in result["reason"]
    assert "hunter2" not in str(result)
    assert unset.attempts == 0


def test_not_configured_raised_by_send_releases_the_claims(services: TaskServices) -> None:
    """NotConfigured from send reports 'not_configured' and frees dedup and cooldown."""
    notify = action(services)
    notify.failures = [NotConfigured("set the chat id")]
    assert notify.run(request("e1"))["status"] == "not_configured"
    assert notify.run(request("e1"))["status"] == "sent"


# --- the result ---------------------------------------------------------------------------


def test_sent_result_has_the_fields_the_execution_records(services: TaskServices) -> None:
    """A sent result carries node, channel, status, event id, time, attempts and detail."""
    result = action(services).run(request("e1", zone="dock"))
    assert result == {
        "node_id": "notify",
        "channel": "test",
        "status": "sent",
        "reason": None,
        "event_id": "e1",
        "at": "2026-01-05T09:00:00+00:00",
        "attempts": 1,
        "detail": {"text": "loitering in dock"},
    }


# --- deduplication ------------------------------------------------------------------------


def test_the_same_event_twice_is_sent_once(services: TaskServices) -> None:
    """A repeated event_id is 'duplicate' even with no cooldown."""
    notify = action(services, cooldown_seconds=0)
    first = notify.run(request("e1"))
    second = notify.run(request("e1"))
    assert (first["status"], second["status"]) == ("sent", "duplicate")
    assert len(notify.sent) == 1


def test_an_event_is_remembered_for_dedup_seconds_only(
    services: TaskServices, clock: FakeClock
) -> None:
    """After dedup_seconds the same event_id is acted on again."""
    notify = action(services, cooldown_seconds=0, dedup_seconds=60)
    assert notify.run(request("e1"))["status"] == "sent"
    clock.advance(59)
    assert notify.run(request("e1"))["status"] == "duplicate"
    clock.advance(1)
    assert notify.run(request("e1"))["status"] == "sent"


def test_dedup_off_acts_on_every_repeat(services: TaskServices) -> None:
    """dedup_seconds=0 sends a repeated event again."""
    notify = action(services, cooldown_seconds=0, dedup_seconds=0)
    assert [notify.run(request("e1"))["status"] for _ in range(3)] == ["sent"] * 3


def test_dedup_is_per_node(services: TaskServices) -> None:
    """Two action nodes each act on the same event once."""
    a = action(services, cooldown_seconds=0)
    b = action(services, cooldown_seconds=0)
    assert a.run(request("e1", node_id="telegram"))["status"] == "sent"
    assert b.run(request("e1", node_id="email"))["status"] == "sent"


# --- cooldown -----------------------------------------------------------------------------


def test_ten_events_in_one_second_send_once_then_again_after_the_cooldown(
    services: TaskServices, clock: FakeClock
) -> None:
    """Ten events within a second give one send and nine 'throttled'; later, another send."""
    # GIVEN an action with a 60 s cooldown
    notify = action(services, cooldown_seconds=60)
    # WHEN ten distinct events arrive within one second
    statuses = []
    for i in range(10):
        statuses.append(notify.run(request(f"e{i}"))["status"])
        clock.advance(0.1)
    # THEN one is sent and the rest are throttled
    assert statuses == ["sent"] + ["throttled"] * 9
    assert len(notify.sent) == 1
    # WHEN the cooldown has passed THEN the next event is sent
    clock.advance(60)
    assert notify.run(request("e10"))["status"] == "sent"
    assert len(notify.sent) == 2


def test_throttled_result_says_the_cooldown(services: TaskServices) -> None:
    """A throttled result explains the cooldown in its reason."""
    notify = action(services, cooldown_seconds=30)
    notify.run(request("e1"))
    result = notify.run(request("e2"))
    assert result["status"] == "throttled"
    assert "30 s" in result["reason"]


def test_source_cooldown_is_per_device(services: TaskServices) -> None:
    """With cooldown_scope 'source' another camera is not held back."""
    notify = action(services, cooldown_seconds=60, cooldown_scope="source")
    assert notify.run(request("e1", "cam1"))["status"] == "sent"
    assert notify.run(request("e2", "cam2"))["status"] == "sent"
    assert notify.run(request("e3", "cam1"))["status"] == "throttled"


def test_pipeline_cooldown_covers_all_devices(services: TaskServices, clock: FakeClock) -> None:
    """With cooldown_scope 'pipeline' one send holds back every camera until it ends."""
    notify = action(services, cooldown_seconds=60, cooldown_scope="pipeline")
    assert notify.run(request("e1", "cam1"))["status"] == "sent"
    assert notify.run(request("e2", "cam2"))["status"] == "throttled"
    clock.advance(60)
    assert notify.run(request("e3", "cam2"))["status"] == "sent"


def test_cooldown_is_per_pipeline_node(services: TaskServices) -> None:
    """Another node, or the same node id in another pipeline, has its own cooldown."""
    notify = action(services, cooldown_seconds=60)
    assert notify.run(request("e1", node_id="telegram"))["status"] == "sent"
    assert notify.run(request("e2", node_id="email"))["status"] == "sent"
    assert notify.run(request("e3", node_id="telegram", pipeline="Dock"))["status"] == "sent"
    assert notify.run(request("e4", node_id="telegram"))["status"] == "throttled"


def test_a_throttled_event_is_not_remembered_as_handled(
    services: TaskServices, clock: FakeClock
) -> None:
    """An event dropped by the cooldown is acted on if it arrives again after the cooldown."""
    notify = action(services, cooldown_seconds=60)
    notify.run(request("e1"))
    assert notify.run(request("e2"))["status"] == "throttled"
    clock.advance(60)
    assert notify.run(request("e2"))["status"] == "sent"


def test_ten_concurrent_events_send_once(services: TaskServices) -> None:
    """Ten executions racing on one device: exactly one send."""
    notify = action(services, cooldown_seconds=60)
    results = run_together(10, lambda i: notify.run(request(f"e{i}"))["status"])
    assert sorted(results) == ["sent"] + ["throttled"] * 9
    assert len(notify.sent) == 1


def test_ten_concurrent_copies_of_one_event_send_once(services: TaskServices) -> None:
    """The same event delivered ten times at once: one send, nine duplicates."""
    notify = action(services, cooldown_seconds=0)
    results = run_together(10, lambda _: notify.run(request("e1"))["status"])
    assert sorted(results) == ["duplicate"] * 9 + ["sent"]
    assert len(notify.sent) == 1


# --- failures and retry-after --------------------------------------------------------------


def test_transient_failure_releases_the_claims_so_a_retry_can_send(
    services: TaskServices,
) -> None:
    """A TransientError is re-raised and frees dedup and cooldown for the ASL Retry."""
    # GIVEN a send that fails once with a transient error
    notify = action(services, cooldown_seconds=60)
    notify.failures = [TransientError("connection refused")]
    # WHEN it runs THEN the error reaches the state machine
    with pytest.raises(TransientError, match="connection refused"):
        notify.run(request("e1"))
    # WHEN the state machine's Retry runs the same event again THEN it is sent
    assert notify.run(request("e1"))["status"] == "sent"
    assert notify.sent == ["loitering in "]


def test_permanent_failure_is_raised_and_not_retried_in_task(services: TaskServices) -> None:
    """A PermanentError goes to the state machine after one attempt, claims freed."""
    notify = action(services)
    notify.failures = [PermanentError("chat not found: check chat_id")]
    with pytest.raises(PermanentError, match="chat_id"):
        notify.run(request("e1"))
    assert notify.attempts == 1
    assert notify.run(request("e1"))["status"] == "sent"


def test_transient_error_is_left_to_the_state_machine(
    services: TaskServices, clock: FakeClock
) -> None:
    """A plain TransientError is not retried inside the task (the ASL Retry does it)."""
    notify = action(services)
    notify.failures = [TransientError("timeout")]
    with pytest.raises(TransientError):
        notify.run(request("e1"))
    assert (notify.attempts, clock.sleeps) == (1, [])


def test_retry_after_within_the_limit_is_honoured_in_the_task(
    services: TaskServices, clock: FakeClock
) -> None:
    """RetryAfter(1) waits 1 s (injected sleep) and sends on the second attempt."""
    notify = action(services)
    notify.failures = [RetryAfter(1, "429 Too Many Requests")]
    result = notify.run(request("e1"))
    assert result["status"] == "sent"
    assert result["attempts"] == 2
    assert clock.sleeps == [1.0]
    assert len(notify.sent) == 1


def test_retry_after_above_the_limit_is_a_permanent_error_saying_what_to_change(
    services: TaskServices, clock: FakeClock
) -> None:
    """A wait longer than max_retry_after_seconds fails at once, naming the setting."""
    notify = action(services, retry={"max_retry_after_seconds": 30})
    notify.failures = [RetryAfter(60, "429 Too Many Requests")]
    with pytest.raises(PermanentError) as caught:
        notify.run(request("e1"))
    message = str(caught.value)
    assert "60 s" in message
    assert "retry.max_retry_after_seconds" in message
    assert "cooldown_seconds" in message
    assert (notify.attempts, clock.sleeps) == (1, [])
    # the claims were freed
    assert notify.run(request("e1"))["status"] == "sent"


def test_retry_after_repeated_past_max_attempts_is_re_raised(
    services: TaskServices, clock: FakeClock
) -> None:
    """RetryAfter on every attempt: max_attempts + 1 tries, then the RetryAfter is raised."""
    notify = action(services, retry={"max_attempts": 2})
    notify.failures = [RetryAfter(1, "429")] * 5
    with pytest.raises(RetryAfter) as caught:
        notify.run(request("e1"))
    assert isinstance(caught.value, TransientError)
    assert notify.attempts == 3
    assert clock.sleeps == [1.0, 1.0]
    assert notify.sent == []


def test_retry_after_with_no_retries_is_raised_at_once(
    services: TaskServices, clock: FakeClock
) -> None:
    """max_attempts 0: a RetryAfter is raised after the first attempt, without waiting."""
    notify = action(services, retry={"max_attempts": 0})
    notify.failures = [RetryAfter(1, "429")]
    with pytest.raises(RetryAfter):
        notify.run(request("e1"))
    assert (notify.attempts, clock.sleeps) == (1, [])


def test_negative_retry_after_is_treated_as_zero() -> None:
    """A negative retry-after means 'now'."""
    assert RetryAfter(-3, "429").seconds == 0.0


# --- templates ----------------------------------------------------------------------------


def test_render_fills_event_and_context_fields() -> None:
    """Templates see the event's fields, its data and the execution context."""
    req = request(
        "e1",
        zone="dock",
        dwell_seconds=12.345,
        data={"reading": {"value": 21.5}},
    )
    req.context["site"] = {"time": "09:00:12"}
    text = render(
        "{{ event.event_type }} in {{ event.zone }} ({{ event.dwell_seconds | round(1) }} s) "
        "at {{ context.site.time }}, {{ event.data.reading.value }} °C, {{ context.pipeline }}",
        req,
    )
    assert text == "loitering in dock (12.3 s) at 09:00:12, 21.5 °C, Intrusion"


NULLS = {"zone": None, "dwell_seconds": None, "data": {"reading": None}}


@pytest.mark.parametrize(
    ("template", "fields"),
    [
        ("[{{ event.zone }}]", {}),
        ("[{{ event.zone }}]", NULLS),
        ("[{{ event.data.reading.value }}]", {}),
        ("[{{ event.data.reading.value }}]", NULLS),
        ("[{{ context.site.time }}]", {}),
        ("[{{ event.dwell_seconds | round(1) }}]", {}),
        ("[{{ event.dwell_seconds | round(1) }}]", NULLS),
        ("[{{ event.zone | upper }}]", {}),
    ],
)
def test_missing_or_null_fields_render_empty(template: str, fields: dict[str, Any]) -> None:
    """A field that is absent, nested under an absent one, or null renders as nothing."""
    assert render(template, request("e1", **fields)) == "[]"


def test_missing_field_default_filter_applies() -> None:
    """The default filter gives text for a missing field."""
    assert render("{{ event.zone | default('site') }}", request("e1")) == "site"


def test_a_template_failing_at_render_is_a_permanent_error() -> None:
    """A filter applied to the wrong type fails the send as a permanent error."""
    with pytest.raises(PermanentError, match="message template failed"):
        render("{{ event.zone | round(1) }}", request("e1", zone="dock"))


def test_template_syntax_error_is_rejected_when_the_config_is_validated() -> None:
    """A bad template is a ValidationError naming the field and the line."""
    with pytest.raises(ValidationError) as caught:
        NotifyConfig.model_validate({"message": "Alert\n{{ event.zone }\nbye"})
    errors = caught.value.errors()
    assert [e["loc"] for e in errors] == [("message",)]
    assert "line 2" in errors[0]["msg"]
    assert "{{ event.zone }}" in errors[0]["msg"]


def test_sandbox_renders_dunder_attributes_empty() -> None:
    """Unsafe attributes (__class__, __mro__) are not reachable: they render as nothing."""
    req = request("e1")
    assert render("[{{ event.__class__ }}]", req) == "[]"
    assert render("[{{ ''.__class__.__mro__ }}]", req) == "[]"
    assert render("[{{ event.__init__.__globals__ }}]", req) == "[]"


def test_sandbox_refuses_calls_through_unsafe_attributes() -> None:
    """The classic escape through __subclasses__() fails as a permanent error."""
    with pytest.raises(PermanentError, match="unsafe"):
        render("{{ event.__class__.__mro__[1].__subclasses__() }}", request("e1"))


def test_template_cannot_change_the_event() -> None:
    """Templates cannot mutate the event they render (update, pop, append...)."""
    req = request("e1", data={"tags": []})
    with pytest.raises(PermanentError):
        render("{{ event.update({'event_type': 'forged'}) }}", req)
    with pytest.raises(PermanentError):
        render("{{ event.data.tags.append(1) }}", req)
    assert req.event["event_type"] == "loitering"
    assert req.event["data"] == {"tags": []}
