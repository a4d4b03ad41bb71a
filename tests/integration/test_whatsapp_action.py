"""``aios/whatsapp@1`` against a local stand-in of the WhatsApp Cloud API (Graph API)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from action_helpers import Clock, Sleeps, make_event, make_request, make_services, write_jpeg
from recording_http import Recorded, RecordingServer, Reply

from aios.events.actions import RetryAfter
from aios.events.task import PermanentError, TaskServices, TransientError
from aios.nodes.whatsapp import DEFAULT_RETRY_AFTER_SECONDS, NODE, record_inbound

TOKEN = "EAAG-test-access-token"
PHONE_ID = "106540352242922"
VERSION = "v23.0"
ALICE = "351912345678"
BOB = "5511987654321"
pytestmark = pytest.mark.timeout(30)


def graph_error(status: int, code: int, message: str, **headers: str) -> Reply:
    """Return a Graph API error answer."""
    body = {"error": {"message": message, "type": "OAuthException", "code": code}}
    return Reply(status, json=body, headers=headers)


class CloudApi:
    """Cloud API stand-in: ``/messages`` and ``/media``; checks token, shapes and limits."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.media: dict[str, bytes] = {}
        self.messages: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    def __call__(self, request: Recorded) -> Reply:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return graph_error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        if self.script:
            return self.script.pop(0)
        if request.path == f"/{VERSION}/{PHONE_ID}/media":
            form = request.form()
            assert form["messaging_product"] == "whatsapp" and form["type"] == "image/jpeg"
            media_id = f"media-{next(self._ids)}"
            data = form["file"]
            assert isinstance(data, bytes)
            self.media[media_id] = data
            return Reply(json={"id": media_id})
        if request.path != f"/{VERSION}/{PHONE_ID}/messages":
            return graph_error(400, 100, "Unsupported post request")
        body = request.json()
        kind = body["type"]
        problem = None
        if body.get("messaging_product") != "whatsapp" or kind not in body:
            problem = "malformed message"
        elif kind == "text" and not 0 < len(body["text"]["body"]) <= 4096:
            problem = "text body length"
        elif kind == "image" and (
            body["image"]["id"] not in self.media or len(body["image"].get("caption", "")) > 1024
        ):
            problem = "image id or caption"
        if problem:
            return graph_error(400, 100, f"(#100) Invalid parameter: {problem}")
        self.messages.append(body)
        message_id = f"wamid.{next(self._ids)}"
        return Reply(
            json={
                "messaging_product": "whatsapp",
                "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                "messages": [{"id": message_id}],
            }
        )


@pytest.fixture
def api() -> CloudApi:
    return CloudApi()


@pytest.fixture
def server(api: CloudApi) -> Iterator[RecordingServer]:
    with RecordingServer(api) as srv:
        yield srv


@pytest.fixture
def services(clock: Clock, sleeps: Sleeps, tmp_path: Path) -> TaskServices:
    return make_services({"wa": TOKEN}, clock, sleeps, blobs=tmp_path)


def action(services: TaskServices, server: RecordingServer, **config: Any) -> Any:
    raw = {
        "access_token_secret": "wa",
        "phone_number_id": PHONE_ID,
        "recipients": ["+351 912 345 678"],
        "api_base_url": server.url,
        "api_version": VERSION,
        **config,
    }
    return NODE.implementation(NODE.parse_config(raw), services)


def wrote(services: TaskServices, clock: Clock, number: str, hours_ago: float) -> None:
    """Record an inbound message from ``number`` some hours before now."""
    record_inbound(services.state, number, clock.now() - timedelta(hours=hours_ago))


TEMPLATE = {
    "template_name": "security_alert",
    "template_language": "pt_BR",
    "template_body_parameters": ["{{ event.event_type }}", "{{ event.zone }}\n(north)"],
}


def test_text_inside_the_window(
    server: RecordingServer, api: CloudApi, services: TaskServices, clock: Clock
) -> None:
    """A recipient who wrote an hour ago gets the free-form text."""
    # GIVEN Alice wrote an hour ago
    wrote(services, clock, "+351912345678", hours_ago=1)
    task = action(services, server, message="{{ event.event_type }} in {{ event.zone }}")
    # WHEN an event is sent
    result = task.run(make_request(make_event()))
    # THEN one text message to Alice's number in digits, and the result explains 200 ≠ delivered
    assert server.paths() == [f"/{VERSION}/{PHONE_ID}/messages"]
    (message,) = api.messages
    assert message["to"] == ALICE and message["type"] == "text"
    assert message["text"]["body"] == "loitering in dock"
    detail = result["detail"]
    assert result["status"] == "sent"
    assert detail["recipients"][ALICE]["mode"] == "text"
    assert detail["recipients"][ALICE]["message_ids"] == ["wamid.1"]
    assert "not" in detail["note"] and "delivered" in detail["note"]
    assert TOKEN not in json.dumps(result)


@pytest.mark.parametrize("hours_ago", [None, 25.0])
def test_template_outside_the_window(
    server: RecordingServer,
    api: CloudApi,
    services: TaskServices,
    clock: Clock,
    hours_ago: float | None,
) -> None:
    """Unknown or older than 24 h: the approved template goes, with rendered parameters."""
    # GIVEN Alice never wrote, or wrote 25 hours ago
    if hours_ago is not None:
        wrote(services, clock, ALICE, hours_ago)
    task = action(services, server, **TEMPLATE)
    # WHEN an event is sent
    result = task.run(make_request(make_event()))
    # THEN a template message with the language and one-line parameters
    (message,) = api.messages
    assert message["type"] == "template"
    assert message["template"] == {
        "name": "security_alert",
        "language": {"code": "pt_BR"},
        "components": [
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "text": "loitering"},
                    {"type": "text", "text": "dock (north)"},
                ],
            }
        ],
    }
    assert result["detail"]["recipients"][ALICE]["mode"] == "template"


def test_outside_the_window_without_template_fails_only_that_recipient(
    server: RecordingServer, api: CloudApi, services: TaskServices, clock: Clock
) -> None:
    """With no template, a recipient outside the window fails; the others are still sent."""
    # GIVEN Bob wrote recently, Alice never did, and no template is configured
    wrote(services, clock, BOB, hours_ago=2)
    task = action(services, server, recipients=[f"+{ALICE}", f"+{BOB}"])
    # WHEN an event is sent THEN it fails naming Alice and the fix, after Bob got the text
    with pytest.raises(PermanentError, match="template_name") as caught:
        task.run(make_request(make_event()))
    assert ALICE in caught.value.message and f"sent to {BOB}" in caught.value.message
    assert [m["to"] for m in api.messages] == [BOB]


def test_snapshot_uploaded_once_and_sent_as_image_with_caption(
    server: RecordingServer,
    api: CloudApi,
    services: TaskServices,
    clock: Clock,
    tmp_path: Path,
) -> None:
    """Media upload, then an image message with the media id and the caption, per recipient."""
    # GIVEN two recipients inside the window and an event with a snapshot
    jpeg = write_jpeg(tmp_path / "snap.jpg")
    wrote(services, clock, ALICE, hours_ago=3)
    wrote(services, clock, BOB, hours_ago=23.9)
    task = action(services, server, recipients=[ALICE, BOB], message="Alert: {{ event.zone }}")
    # WHEN it is sent
    result = task.run(make_request(make_event(snapshot="snap.jpg")))
    # THEN one upload carrying the JPEG, then one image message per recipient
    assert server.paths() == [
        f"/{VERSION}/{PHONE_ID}/media",
        f"/{VERSION}/{PHONE_ID}/messages",
        f"/{VERSION}/{PHONE_ID}/messages",
    ]
    assert list(api.media.values()) == [jpeg]
    (media_id,) = api.media
    for message, to in zip(api.messages, [ALICE, BOB], strict=True):
        assert message["to"] == to and message["type"] == "image"
        assert message["image"] == {"id": media_id, "caption": "Alert: dock"}
    assert result["detail"]["recipients"][BOB]["image"] is True


def test_reengagement_error_falls_back_to_the_template(
    server: RecordingServer, api: CloudApi, services: TaskServices, clock: Clock
) -> None:
    """Error 131047 (window closed after all) sends the template instead."""
    # GIVEN the store says Alice is inside the window but WhatsApp disagrees
    wrote(services, clock, ALICE, hours_ago=1)
    api.script = [graph_error(400, 131047, "Re-engagement message: more than 24 hours have passed")]
    task = action(services, server, **TEMPLATE)
    # WHEN an event is sent
    result = task.run(make_request(make_event()))
    # THEN the text was refused and the template was accepted
    assert len(server.requests) == 2 and server.requests[0].json()["type"] == "text"
    assert [m["type"] for m in api.messages] == ["template"]
    assert result["detail"]["recipients"][ALICE]["mode"] == "template"


def test_429_with_retry_after_is_honoured_then_sent(
    server: RecordingServer, api: CloudApi, services: TaskServices, sleeps: Sleeps
) -> None:
    """HTTP 429 (code 130429) with Retry-After: 3 waits 3 s, then sends."""
    # GIVEN a throughput limit on the first call
    api.script = [graph_error(429, 130429, "Rate limit hit", **{"Retry-After": "3"})]
    task = action(services, server, **TEMPLATE)
    # WHEN an event is sent
    result = task.run(make_request(make_event()))
    # THEN the action waited 3 s and the second attempt was accepted
    assert sleeps.seconds == [3.0]
    assert result["status"] == "sent" and result["attempts"] == 2
    assert len(api.messages) == 1


def test_pair_rate_limit_without_header_waits_the_default(
    server: RecordingServer, api: CloudApi, services: TaskServices, sleeps: Sleeps
) -> None:
    """Error 131056 on HTTP 400 without Retry-After is a rate limit with the default wait."""
    # GIVEN a pair rate limit answer
    api.script = [graph_error(400, 131056, "(Business Account, Consumer Account) pair rate limit")]
    task = action(services, server, **TEMPLATE)
    # WHEN an event is sent
    task.run(make_request(make_event()))
    # THEN the default wait was used before the retry
    assert sleeps.seconds == [DEFAULT_RETRY_AFTER_SECONDS]
    assert len(api.messages) == 1


def test_long_rate_limit_becomes_a_failure(
    server: RecordingServer, api: CloudApi, services: TaskServices, sleeps: Sleeps
) -> None:
    """A Retry-After beyond retry.max_retry_after_seconds is not waited in the task."""
    # GIVEN an app call limit asking for an hour
    api.script = [
        graph_error(400, 4, "Application request limit reached", **{"Retry-After": "3600"})
    ]
    task = action(services, server, **TEMPLATE)
    # WHEN an event is sent THEN it fails as rate limited without sleeping
    with pytest.raises(PermanentError, match="rate limited"):
        task.run(make_request(make_event()))
    assert sleeps.seconds == []


def test_server_error_is_transient(
    server: RecordingServer, api: CloudApi, services: TaskServices
) -> None:
    """A 5xx answer raises TransientError (not a rate limit)."""
    # GIVEN a Graph API outage
    api.script = [graph_error(503, 2, "Service temporarily unavailable")]
    task = action(services, server, **TEMPLATE)
    # WHEN an event is sent THEN the failure is transient
    with pytest.raises(TransientError, match="temporarily unavailable") as caught:
        task.run(make_request(make_event()))
    assert not isinstance(caught.value, RetryAfter)


def test_other_graph_errors_are_permanent_with_the_message(
    server: RecordingServer, api: CloudApi, services: TaskServices
) -> None:
    """An unknown template is a permanent failure quoting WhatsApp's message."""
    # GIVEN WhatsApp does not know the template
    api.script = [graph_error(404, 132001, "Template name does not exist in the translation")]
    task = action(services, server, **TEMPLATE)
    # WHEN an event is sent THEN it fails permanently with the Graph message and code
    with pytest.raises(PermanentError, match=r"132001.*Template name does not exist"):
        task.run(make_request(make_event()))


def test_ten_events_in_a_second_make_one_message_then_another_after_cooldown(
    server: RecordingServer, api: CloudApi, services: TaskServices, clock: Clock
) -> None:
    """Cooldown: ten events within one second → one message; after the cooldown, another."""
    # GIVEN a 1 s cooldown
    task = action(services, server, cooldown_seconds=1, **TEMPLATE)
    # WHEN ten events arrive 0.1 s apart
    statuses = []
    for i in range(10):
        statuses.append(task.run(make_request(make_event(f"e{i}")))["status"])
        clock.advance(0.1)
    # THEN one message was sent
    assert statuses == ["sent"] + ["throttled"] * 9
    assert len(api.messages) == 1
    # WHEN the cooldown has passed THEN the next one is sent
    clock.advance(0.05)
    assert task.run(make_request(make_event("e10")))["status"] == "sent"
    assert len(api.messages) == 2


def test_missing_token_is_not_configured(
    server: RecordingServer, clock: Clock, sleeps: Sleeps
) -> None:
    """Without the access token secret the result is not_configured and nothing is sent."""
    # GIVEN no secrets
    services = make_services({}, clock, sleeps)
    task = action(services, server, **TEMPLATE)
    # WHEN an event arrives
    result = task.run(make_request(make_event()))
    # THEN not configured, naming the secret, and the server saw nothing
    assert result["status"] == "not_configured"
    assert "AIOS_SECRET_WA" in result["reason"]
    assert server.requests == []
