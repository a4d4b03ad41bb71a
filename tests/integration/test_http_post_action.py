"""``aios/http_post@1`` against a local HTTP receiver that verifies signatures."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from action_helpers import Clock, Sleeps, make_event, make_request, make_services
from recording_http import Recorded, RecordingServer, Reply

from aios.events.actions import RetryAfter
from aios.events.task import PermanentError, TaskServices, TransientError
from aios.nodes.http_post import NODE

SECRET = "s3cr3t-shared"
pytestmark = pytest.mark.timeout(30)


class Receiver:
    """A webhook receiver: checks the HMAC-SHA256 signature, then answers from a script."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.verified: list[bool] = []

    def __call__(self, request: Recorded) -> Reply:
        timestamp = request.headers.get("x-aios-timestamp", "")
        material = timestamp.encode() + b"." + request.body
        expected = "sha256=" + hmac.new(SECRET.encode(), material, hashlib.sha256).hexdigest()
        self.verified.append(
            hmac.compare_digest(expected, request.headers.get("x-aios-signature", ""))
        )
        if self.script:
            return self.script.pop(0)
        return Reply(200, json={"received": True})


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def server(receiver: Receiver) -> Iterator[RecordingServer]:
    with RecordingServer(receiver) as srv:
        yield srv


@pytest.fixture
def services(clock: Clock, sleeps: Sleeps) -> TaskServices:
    return make_services({"hook_secret": SECRET}, clock, sleeps)


def action(services: TaskServices, **config: Any) -> Any:
    return NODE.implementation(NODE.parse_config(config), services)


def test_signed_post_is_verified_by_the_receiver(
    server: RecordingServer, receiver: Receiver, services: TaskServices, clock: Clock
) -> None:
    """The event arrives as JSON with a valid signature, timestamp and idempotency key."""
    # GIVEN a signed HTTP POST action with an extra static header
    task = action(
        services,
        url=f"{server.url}/hooks/aios",
        signing_secret="hook_secret",
        headers={"X-Site": "lisbon-1"},
    )
    event = make_event("evt-42", zone='dock "north" ✓')
    # WHEN an event is sent
    result = task.run(make_request(event))
    # THEN the receiver got one request whose signature it verified with the shared secret
    assert result["status"] == "sent"
    assert result["detail"]["status_code"] == 200 and result["detail"]["signed"] is True
    assert receiver.verified == [True]
    (req,) = server.requests
    assert (req.method, req.path) == ("POST", "/hooks/aios")
    assert req.json() == event
    assert req.headers["content-type"] == "application/json"
    assert req.headers["idempotency-key"] == "evt-42"
    assert req.headers["x-site"] == "lisbon-1"
    assert req.headers["x-aios-timestamp"] == str(int(clock.at.timestamp()))
    assert SECRET not in json.dumps(result)


def test_signature_does_not_verify_with_another_secret(
    server: RecordingServer, receiver: Receiver, clock: Clock, sleeps: Sleeps
) -> None:
    """A sender with a different secret fails the receiver's check (the check can fail)."""
    # GIVEN an action whose signing secret differs from the receiver's
    services = make_services({"hook_secret": "not-the-shared-one"}, clock, sleeps)
    task = action(services, url=server.url, signing_secret="hook_secret")
    # WHEN it sends
    task.run(make_request(make_event()))
    # THEN the receiver's verification fails
    assert receiver.verified == [False]


def test_field_selection_and_template_bodies(
    server: RecordingServer, services: TaskServices
) -> None:
    """'fields' sends the chosen fields with their nesting; 'template' the rendered JSON."""
    # GIVEN one action selecting fields and one rendering a JSON template
    fields = action(
        services, url=server.url, body="fields", fields=["event_type", "data.count", "nope"]
    )
    templated = action(
        services,
        url=server.url,
        body="template",
        body_template='{"text": {{ (event.event_type ~ " in " ~ event.zone) | tojson }}}',
    )
    # WHEN each sends an event
    fields.run(make_request(make_event("e1"), node_id="a"))
    templated.run(make_request(make_event("e2", zone='dock "A"'), node_id="b"))
    # THEN the bodies are the selection and the rendered JSON
    first, second = server.requests
    assert first.json() == {"event_type": "loitering", "data": {"count": 2}, "nope": None}
    assert second.json() == {"text": 'loitering in dock "A"'}


def test_template_rendering_invalid_json_is_permanent(
    server: RecordingServer, services: TaskServices
) -> None:
    """A JSON body template that renders broken JSON fails without sending."""
    # GIVEN a template that inserts a string without tojson
    task = action(
        services, url=server.url, body="template", body_template='{"zone": {{ event.zone }}}'
    )
    # WHEN it runs THEN it fails permanently, naming the fix, and nothing is sent
    with pytest.raises(PermanentError, match="tojson"):
        task.run(make_request(make_event()))
    assert server.requests == []


def test_server_error_is_transient(
    server: RecordingServer, receiver: Receiver, services: TaskServices
) -> None:
    """A 5xx answer raises TransientError for the state machine's Retry."""
    # GIVEN a receiver answering 503 without Retry-After
    receiver.script = [Reply(503, body=b"maintenance")]
    task = action(services, url=server.url, signing_secret="hook_secret")
    # WHEN an event is sent THEN the failure is transient, after one request
    with pytest.raises(TransientError, match="503") as caught:
        task.run(make_request(make_event()))
    assert not isinstance(caught.value, RetryAfter)
    assert len(server.requests) == 1


def test_client_error_is_permanent_with_status_and_excerpt(
    server: RecordingServer, receiver: Receiver, services: TaskServices
) -> None:
    """A 4xx answer raises PermanentError quoting the status and the body's start."""
    # GIVEN a receiver rejecting the body
    receiver.script = [Reply(422, json={"error": "zone is not a known area " + "x" * 500})]
    task = action(services, url=server.url)
    # WHEN an event is sent THEN the error names the status and quotes the body, shortened
    with pytest.raises(PermanentError) as caught:
        task.run(make_request(make_event()))
    message = caught.value.message
    assert "422" in message and "zone is not a known area" in message
    assert len(message) < 500


def test_timeout_is_transient(
    server: RecordingServer, receiver: Receiver, services: TaskServices
) -> None:
    """No answer within timeout_seconds raises TransientError."""
    # GIVEN a receiver that takes 3 s and an action that waits 0.3 s
    receiver.script = [Reply(200, delay_seconds=3.0)]
    task = action(services, url=server.url, timeout_seconds=0.3)
    # WHEN an event is sent THEN it times out as a transient failure
    with pytest.raises(TransientError, match=r"within 0\.3 s"):
        task.run(make_request(make_event()))


def test_connection_refused_is_transient(services: TaskServices) -> None:
    """Nothing listening at the URL raises TransientError."""
    # GIVEN a port nothing listens on
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    task = action(services, url=f"http://127.0.0.1:{port}/x")
    # WHEN an event is sent THEN the failure is transient
    with pytest.raises(TransientError, match="could not reach"):
        task.run(make_request(make_event()))


def test_429_retry_after_is_honoured_then_sent(
    server: RecordingServer, receiver: Receiver, services: TaskServices, sleeps: Sleeps
) -> None:
    """A 429 with Retry-After waits that long, then sends."""
    # GIVEN a receiver that answers 429 Retry-After: 2 once
    receiver.script = [Reply(429, headers={"Retry-After": "2"}, body=b"slow down")]
    task = action(services, url=server.url, signing_secret="hook_secret")
    # WHEN an event is sent
    result = task.run(make_request(make_event()))
    # THEN the action waited 2 s and the second attempt was sent, signed again
    assert sleeps.seconds == [2.0]
    assert result["status"] == "sent" and result["attempts"] == 2
    assert receiver.verified == [True, True]


def test_ten_events_in_a_second_make_one_post_then_another_after_cooldown(
    server: RecordingServer, services: TaskServices, clock: Clock
) -> None:
    """Cooldown: ten events within one second → one request; after the cooldown, another."""
    # GIVEN an action with a 1 s cooldown
    task = action(services, url=server.url, cooldown_seconds=1)
    # WHEN ten events arrive 0.1 s apart
    statuses = []
    for i in range(10):
        statuses.append(task.run(make_request(make_event(f"e{i}")))["status"])
        clock.advance(0.1)
    # THEN one was sent and nine throttled
    assert statuses == ["sent"] + ["throttled"] * 9
    assert len(server.requests) == 1
    # WHEN the cooldown has passed and one more arrives THEN it is sent
    clock.advance(0.05)
    assert task.run(make_request(make_event("e10")))["status"] == "sent"
    assert len(server.requests) == 2


def test_missing_secret_is_not_configured(
    server: RecordingServer, clock: Clock, sleeps: Sleeps
) -> None:
    """A signing secret that is not set reports not_configured and sends nothing."""
    # GIVEN no secrets at all
    services = make_services({}, clock, sleeps)
    task = action(services, url=server.url, signing_secret="hook_secret")
    # WHEN an event arrives
    result = task.run(make_request(make_event()))
    # THEN the result says what to set and no request was made
    assert result["status"] == "not_configured"
    assert "hook_secret" in result["reason"] and "AIOS_SECRET_HOOK_SECRET" in result["reason"]
    assert server.requests == []


def test_url_from_secret_is_not_shown(
    server: RecordingServer, clock: Clock, sleeps: Sleeps
) -> None:
    """A URL kept in a secret is used but never appears in the result or errors."""
    # GIVEN the URL (with a token in its path) stored as a secret
    url = f"{server.url}/hook/T0KEN-123"
    services = make_services({"hook_url": url}, clock, sleeps)
    task = action(services, url_secret="hook_url")
    # WHEN an event is sent
    result = task.run(make_request(make_event()))
    # THEN it reached the path, and the result does not contain the token
    assert server.paths() == ["/hook/T0KEN-123"]
    assert "T0KEN-123" not in json.dumps(result)
