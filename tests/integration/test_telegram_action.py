"""``aios/telegram@1`` with python-telegram-bot pointed at a local Bot API stand-in."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from action_helpers import Clock, Sleeps, make_event, make_request, make_services, write_jpeg
from recording_http import Recorded, RecordingServer, Reply

from aios.events.task import PermanentError, TaskServices, TransientError
from aios.nodes.telegram import CAPTION_LIMIT, MESSAGE_LIMIT, NODE

TOKEN = "123456:ABC-test_token"
CHAT = "424242"
SPECIALS = "_*[]()~`>#+-=|{}.!"
pytestmark = pytest.mark.timeout(30)


class MarkdownError(ValueError):
    """The text is not valid MarkdownV2 (Telegram: "can't parse entities")."""


def parse_markdown_v2(text: str) -> str:
    """Return the visible text of MarkdownV2 ``text`` as Telegram would show it.

    Follows https://core.telegram.org/bots/api#markdownv2-style: ``\\`` escapes any ASCII
    character; ``*`` ``_`` ``__`` ``~`` ``||`` and backticks open and close entities; every
    other reserved character must be escaped. Links and block quotes are not supported here.
    """
    out: list[str] = []
    open_entities: set[str] = set()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 >= len(text) or not 1 <= ord(text[i + 1]) <= 126:
                raise MarkdownError("can't parse entities: stray backslash")
            out.append(text[i + 1])
            i += 2
            continue
        if "`" in open_entities and ch != "`":
            out.append(ch)
            i += 1
            continue
        token = text[i : i + 2] if text[i : i + 2] in ("__", "||") else ch
        if token in ("*", "_", "__", "~", "||", "`"):
            open_entities ^= {token}
            i += len(token)
            continue
        if ch in SPECIALS:
            raise MarkdownError(
                f"can't parse entities: Character '{ch}' is reserved and must be escaped "
                "with the preceding '\\'"
            )
        out.append(ch)
        i += 1
    if open_entities:
        raise MarkdownError(f"can't parse entities: can't find end of {sorted(open_entities)}")
    return "".join(out)


class BotApi:
    """Telegram Bot API stand-in: sendMessage, sendPhoto, getMe; checks token and limits."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.delivered: list[dict[str, Any]] = []  # what a user would see, per call
        self._ids = itertools.count(1)

    @staticmethod
    def error(code: int, description: str, **parameters: Any) -> Reply:
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if parameters:
            body["parameters"] = parameters
        return Reply(code, json=body)

    def __call__(self, request: Recorded) -> Reply:
        prefix = f"/bot{TOKEN}/"
        if not request.path.startswith(prefix):
            return self.error(401, "Unauthorized")
        method = request.path[len(prefix) :]
        if self.script:
            return self.script.pop(0)
        if method == "getMe":
            user = {"id": 123456, "is_bot": True, "first_name": "aios", "username": "aios_bot"}
            return Reply(json={"ok": True, "result": user})
        form = request.form()
        text_field, limit = (
            ("caption", CAPTION_LIMIT) if method == "sendPhoto" else ("text", MESSAGE_LIMIT)
        )
        raw = str(form.get(text_field, ""))
        try:
            visible = parse_markdown_v2(raw) if form.get("parse_mode") == "MarkdownV2" else raw
        except MarkdownError as err:
            return self.error(400, f"Bad Request: {err}")
        if len(visible) > limit:
            return self.error(400, f"Bad Request: {text_field} is too long")
        if method == "sendMessage" and not visible.strip():
            return self.error(400, "Bad Request: message text is empty")
        message: dict[str, Any] = {
            "message_id": next(self._ids),
            "date": 1767603612,
            "chat": {"id": int(str(form["chat_id"])), "type": "private"},
        }
        if method == "sendPhoto":
            photo = form["photo"]
            assert isinstance(photo, bytes)
            message["photo"] = [
                {"file_id": "p1", "file_unique_id": "u1", "width": 64, "height": 48}
            ]
            message["caption"] = visible
            self.delivered.append({"method": method, "text": visible, "photo": photo})
        elif method == "sendMessage":
            message["text"] = visible
            self.delivered.append({"method": method, "text": visible})
        else:
            return self.error(404, "Not Found")
        return Reply(json={"ok": True, "result": message})


@pytest.fixture
def api() -> BotApi:
    return BotApi()


@pytest.fixture
def server(api: BotApi) -> Iterator[RecordingServer]:
    with RecordingServer(api) as srv:
        yield srv


@pytest.fixture
def services(clock: Clock, sleeps: Sleeps, tmp_path: Path) -> TaskServices:
    return make_services({"tg": TOKEN}, clock, sleeps, blobs=tmp_path)


def action(services: TaskServices, server: RecordingServer, **config: Any) -> Any:
    raw = {
        "bot_token_secret": "tg",
        "chat_ids": [CHAT],
        "api_base_url": server.url,
        "send_snapshot": False,
        **config,
    }
    return NODE.implementation(NODE.parse_config(raw), services)


def sends(server: RecordingServer) -> list[str]:
    """Return the Bot API methods called, in order."""
    return [p.rsplit("/", 1)[-1] for p in server.paths()]


def test_default_message_is_delivered_as_markdown_v2(
    server: RecordingServer, api: BotApi, services: TaskServices
) -> None:
    """The default template renders valid MarkdownV2 with the event's fields."""
    # GIVEN the default message
    task = action(services, server)
    # WHEN an event is sent
    result = task.run(make_request(make_event()))
    # THEN one MarkdownV2 message arrived reading as the event
    assert result["status"] == "sent"
    assert result["detail"]["format"] == "markdown_v2"
    assert sends(server) == ["sendMessage"]
    assert server.requests[0].form()["parse_mode"] == "MarkdownV2"
    assert api.delivered[0]["text"] == (
        "loitering on cam1 in dock: person, 12.3 s\nIntrusion, 2026-01-05 09:00:12"
    )
    assert TOKEN not in json.dumps(result)


def test_markdown_special_characters_in_fields_arrive_intact(
    server: RecordingServer, api: BotApi, services: TaskServices
) -> None:
    """Every MarkdownV2 reserved character in event fields is shown as sent, in one call."""
    # GIVEN fields full of reserved characters and a template with bold markup
    zone = f"dock {SPECIALS} \\ end"
    task = action(services, server, message="*Alert* in {{ event.zone }}: {{ event.data.note }}")
    event = make_event(zone=zone, data={"note": "a.b!c (x) [y] 1+1=2 #3 |p| {q} ~r~ `s` >t"})
    # WHEN it is sent
    result = task.run(make_request(event))
    # THEN Telegram's parser accepted it first time and the user sees the values unchanged
    assert result["detail"]["format"] == "markdown_v2"
    assert sends(server) == ["sendMessage"]
    assert api.delivered[0]["text"] == f"Alert in {zone}: {event['data']['note']}"


def test_markup_refused_falls_back_to_plain_text(
    server: RecordingServer, api: BotApi, services: TaskServices
) -> None:
    """An unescaped reserved character in the template's own text still gets delivered."""
    # GIVEN a template whose literal text is not valid MarkdownV2
    task = action(services, server, message="Intruder in {{ event.zone }}!")
    # WHEN it is sent
    result = task.run(make_request(make_event(zone="dock_1")))
    # THEN Telegram refused the markup once and the plain text went through
    assert sends(server) == ["sendMessage", "sendMessage"]
    assert result["status"] == "sent" and result["detail"]["format"] == "plain"
    assert "parse_mode" not in server.requests[1].form()
    assert api.delivered == [{"method": "sendMessage", "text": "Intruder in dock_1!"}]


def test_4097_characters_are_split_into_two_messages(
    server: RecordingServer, api: BotApi, services: TaskServices
) -> None:
    """A 4097-character message arrives as two messages of at most 4096 characters."""
    # GIVEN a plain message of 4097 characters in lines of 100
    line = "x" * 99
    text = "\n".join([line] * 41)[:4097].ljust(4097, "y")
    assert len(text) == 4097
    task = action(services, server, format="plain", message="{{ event.data.text }}")
    # WHEN it is sent
    result = task.run(make_request(make_event(data={"text": text})))
    # THEN two messages arrived, each within the limit, cut at a line break, nothing lost
    texts = [d["text"] for d in api.delivered]
    assert len(texts) == 2 and all(len(t) <= MESSAGE_LIMIT for t in texts)
    assert texts[0].endswith(line) and "\n".join(texts) == text
    assert len(result["detail"]["message_ids"][CHAT]) == 2


def test_long_markdown_message_is_split_without_breaking_escapes(
    server: RecordingServer, api: BotApi, services: TaskServices
) -> None:
    """A long value full of reserved characters splits into valid MarkdownV2 parts."""
    # GIVEN a value of 4097 dots (8194 characters once escaped), with no line breaks
    value = "." * 4097
    task = action(services, server, message="{{ event.data.text }}")
    # WHEN it is sent
    task.run(make_request(make_event(data={"text": value})))
    # THEN every part parsed and together they show the value
    assert all(r.form()["parse_mode"] == "MarkdownV2" for r in server.requests)
    assert "".join(d["text"] for d in api.delivered) == value
    assert all(len(str(r.form()["text"])) <= MESSAGE_LIMIT for r in server.requests)


def test_photo_with_caption_and_the_rest_as_a_message(
    server: RecordingServer, api: BotApi, services: TaskServices, tmp_path: Path
) -> None:
    """The snapshot goes as a photo with a ≤1024 caption; the remaining text follows."""
    # GIVEN an event with a snapshot and a 1500-character text
    jpeg = write_jpeg(tmp_path / "snap.jpg")
    long_note = "\n".join(f"line {i:03d} " + "z" * 40 for i in range(30))
    task = action(
        services,
        server,
        send_snapshot=True,
        format="plain",
        message="{{ event.event_type }}\n{{ event.data.note }}",
    )
    # WHEN it is sent
    event = make_event(snapshot="snap.jpg", data={"note": long_note})
    result = task.run(make_request(event))
    # THEN a photo with the JPEG and a caption within 1024, then the rest of the text
    assert sends(server) == ["sendPhoto", "sendMessage"]
    photo, rest = api.delivered
    assert photo["photo"] == jpeg
    assert 0 < len(photo["text"]) <= CAPTION_LIMIT
    assert photo["text"] + "\n" + rest["text"] == "loitering\n" + long_note
    assert result["detail"]["photo"] is True


def test_short_message_fits_in_the_caption(
    server: RecordingServer, api: BotApi, services: TaskServices, tmp_path: Path
) -> None:
    """A message within 1024 characters is sent as the photo's MarkdownV2 caption only."""
    # GIVEN a snapshot and the default message
    write_jpeg(tmp_path / "snap.jpg")
    task = action(services, server, send_snapshot=True)
    # WHEN it is sent
    task.run(make_request(make_event(snapshot="snap.jpg", zone="a.b")))
    # THEN exactly one photo call, with the caption parsed as MarkdownV2
    assert sends(server) == ["sendPhoto"]
    assert server.requests[0].form()["parse_mode"] == "MarkdownV2"
    assert api.delivered[0]["text"].startswith("loitering on cam1 in a.b")


def test_429_retry_after_is_honoured_then_sent(
    server: RecordingServer, api: BotApi, services: TaskServices, sleeps: Sleeps
) -> None:
    """Telegram's flood control (429, retry_after 1) waits 1 s, then the message is sent."""
    # GIVEN a Bot API that answers the first call with 429 retry_after 1
    api.script = [BotApi.error(429, "Too Many Requests: retry after 1", retry_after=1)]
    task = action(services, server)
    # WHEN an event is sent
    result = task.run(make_request(make_event()))
    # THEN the action waited 1 s and sent on the second attempt
    assert sleeps.seconds == [1.0]
    assert sends(server) == ["sendMessage", "sendMessage"]
    assert result["status"] == "sent" and result["attempts"] == 2
    assert len(api.delivered) == 1


def test_429_on_second_part_does_not_resend_the_first(
    server: RecordingServer, api: BotApi, services: TaskServices, sleeps: Sleeps
) -> None:
    """A retry after a rate limit part-way continues where it stopped."""
    # GIVEN a two-part message and a 429 on the second call
    ok = Reply(
        json={
            "ok": True,
            "result": {"message_id": 99, "date": 0, "chat": {"id": 1, "type": "private"}},
        }
    )
    api.script = [ok, BotApi.error(429, "Too Many Requests: retry after 1", retry_after=1)]
    task = action(services, server, format="plain", message="{{ event.data.text }}")
    # WHEN it is sent
    result = task.run(make_request(make_event(data={"text": "a" * 5000})))
    # THEN three calls: part 1, part 2 refused, part 2 again — part 1 not repeated
    assert len(server.requests) == 3
    first, second, third = (str(r.form()["text"]) for r in server.requests)
    assert first == "a" * 4096 and second == third == "a" * 904
    assert result["detail"]["message_ids"][CHAT] == [99, 1]


def test_forbidden_and_bad_request_are_permanent(
    server: RecordingServer, api: BotApi, services: TaskServices
) -> None:
    """A chat the bot may not write to, or a refused request, fails permanently."""
    # GIVEN a bot blocked by the user, then a chat that does not exist
    api.script = [
        BotApi.error(403, "Forbidden: bot was blocked by the user"),
        BotApi.error(400, "Bad Request: chat not found"),
    ]
    task = action(services, server, cooldown_seconds=0, format="plain")
    # WHEN events are sent THEN both fail permanently, saying why
    with pytest.raises(PermanentError, match="blocked by the user"):
        task.run(make_request(make_event("e1")))
    with pytest.raises(PermanentError, match=r"(?i)chat not found"):
        task.run(make_request(make_event("e2")))


def test_one_blocked_chat_does_not_stop_the_others(
    server: RecordingServer, api: BotApi, services: TaskServices
) -> None:
    """A chat that refuses the bot fails; the other chat still gets the message."""
    # GIVEN two chats, the first of which has blocked the bot
    api.script = [BotApi.error(403, "Forbidden: bot was blocked by the user")]
    task = action(services, server, chat_ids=["111", "222"], format="plain")
    # WHEN an event is sent THEN the failure names chat 111 and says 222 was served
    with pytest.raises(PermanentError, match="chat 111") as caught:
        task.run(make_request(make_event()))
    assert "sent to 222" in caught.value.message
    assert [r.form()["chat_id"] for r in server.requests] == ["111", "222"]
    assert len(api.delivered) == 1


def test_rejected_token_is_permanent_and_not_shown(
    server: RecordingServer, clock: Clock, sleeps: Sleeps
) -> None:
    """A token the server rejects fails permanently without revealing it."""
    # GIVEN a wrong token
    services = make_services({"tg": "999:WRONG"}, clock, sleeps)
    task = action(services, server)
    # WHEN an event is sent THEN the failure names the secret, not its value
    with pytest.raises(PermanentError, match="'tg'") as caught:
        task.run(make_request(make_event()))
    assert "WRONG" not in caught.value.message


def test_network_failure_is_transient(services: TaskServices, clock: Clock) -> None:
    """An unreachable Bot API server raises TransientError."""
    # GIVEN a server that has been stopped
    with RecordingServer(BotApi()) as stopped:
        url = stopped.url
    task = NODE.implementation(
        NODE.parse_config({"bot_token_secret": "tg", "chat_ids": [CHAT], "api_base_url": url}),
        services,
    )
    # WHEN an event is sent THEN the failure is transient
    with pytest.raises(TransientError):
        task.run(make_request(make_event()))


def test_ten_events_in_a_second_make_one_message_then_another_after_cooldown(
    server: RecordingServer, services: TaskServices, clock: Clock
) -> None:
    """Cooldown: ten events within one second → one message; after the cooldown, another."""
    # GIVEN a 1 s cooldown
    task = action(services, server, cooldown_seconds=1)
    # WHEN ten events arrive 0.1 s apart
    statuses = []
    for i in range(10):
        statuses.append(task.run(make_request(make_event(f"e{i}")))["status"])
        clock.advance(0.1)
    # THEN one message was sent
    assert statuses == ["sent"] + ["throttled"] * 9
    assert len(server.requests) == 1
    # WHEN the cooldown has passed THEN the next event is sent
    clock.advance(0.05)
    assert task.run(make_request(make_event("e10")))["status"] == "sent"
    assert len(server.requests) == 2


def test_missing_token_is_not_configured(
    server: RecordingServer, clock: Clock, sleeps: Sleeps
) -> None:
    """Without the bot token secret the result is not_configured and nothing is called."""
    # GIVEN no secrets
    services = make_services({}, clock, sleeps)
    task = action(services, server)
    # WHEN an event arrives
    result = task.run(make_request(make_event()))
    # THEN not configured, naming the secret, and the server saw nothing
    assert result["status"] == "not_configured"
    assert "AIOS_SECRET_TG" in result["reason"]
    assert server.requests == []
