"""Rules of the HTTP POST, Telegram and WhatsApp nodes that need no peer: message splitting,
MarkdownV2 escaping, signatures, Retry-After, the 24 h window, and config validation."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from aios.events.state import MemoryStateStore
from aios.events.task import TaskRequest
from aios.nodes import http_post, telegram, whatsapp
from aios.nodes.http_post import parse_retry_after, sign, verify_signature
from aios.nodes.telegram import render_markdown_v2, split_message, utf16_len
from aios.nodes.whatsapp import record_inbound, window_open

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def request(**event: Any) -> TaskRequest:
    return TaskRequest(node_id="n", event=event, context={"pipeline": "P"})


# --- splitting -------------------------------------------------------------------------------


def test_split_prefers_line_breaks_then_spaces() -> None:
    """Parts end at the last line break that fits, else the last space; the break is dropped."""
    assert split_message("aaa\nbbb ccc", 8) == ["aaa", "bbb ccc"]
    assert split_message("aaaa bbbb cccc", 10) == ["aaaa bbbb", "cccc"]
    assert split_message("abcdefghij", 4) == ["abcd", "efgh", "ij"]


def test_split_4097_characters_gives_two_parts_within_4096() -> None:
    """One character over the limit makes two parts, none longer than 4096."""
    parts = split_message("x" * 4097)
    assert [len(p) for p in parts] == [4096, 1]


def test_split_never_separates_an_escape_from_its_character() -> None:
    """A cut that would end on a lone backslash moves back one character."""
    text = "\\." * 10  # 20 characters, escapes at even positions
    parts = split_message(text, 5)
    assert all(not p.endswith("\\") or p.endswith("\\\\") for p in parts)
    assert "".join(parts) == text
    assert max(len(p) for p in parts) <= 5


def test_split_counts_utf16_units_and_drops_blank_parts() -> None:
    """An emoji counts as two units; whitespace-only parts are not sent."""
    parts = split_message("😀" * 5, 4)
    assert parts == ["😀😀", "😀😀", "😀"]
    assert all(utf16_len(p) <= 4 for p in parts)
    assert split_message("\n \n") == []
    assert split_message("\\😀", 2) == ["\\", "😀"]  # terminates even when nothing fits


# --- MarkdownV2 ------------------------------------------------------------------------------


def test_markdown_values_are_escaped_and_template_text_is_not() -> None:
    """Inserted values (strings and filtered numbers) are escaped; the template's markup stays."""
    text = render_markdown_v2(
        "*{{ event.zone }}* {{ event.dwell | round(1) }} s {{ event.missing }}|{{ event.none }}",
        request(zone="a_b (c).", dwell=12.34, none=None),
    )
    assert text == "*a\\_b \\(c\\)\\.* 12\\.3 s |"


def test_every_reserved_character_is_escaped() -> None:
    """All of _*[]()~`>#+-=|{}.! and the backslash get a preceding backslash."""
    specials = "_*[]()~`>#+-=|{}.!\\"
    text = render_markdown_v2("{{ event.v }}", request(v=specials))
    assert text == "".join("\\" + ch for ch in specials)


# --- signatures and Retry-After --------------------------------------------------------------


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    """The header value is sha256= and the hex HMAC of b'<t>.' + body."""
    body = b'{"a":1}'
    expected = hmac.new(b"k", b"1767603600." + body, hashlib.sha256).hexdigest()
    assert sign("k", 1767603600, body) == "sha256=" + expected


def test_verify_rejects_tampering_other_secrets_and_stale_timestamps() -> None:
    """Only the same secret, body and a fresh timestamp verify."""
    t = int(NOW.timestamp())
    good = sign("k", t, b"body")
    assert verify_signature("k", b"body", str(t), good, now=NOW)
    assert not verify_signature("k", b"bodY", str(t), good, now=NOW)
    assert not verify_signature("other", b"body", str(t), good, now=NOW)
    assert not verify_signature("k", b"body", str(t + 1), good, now=NOW)
    late = NOW + timedelta(minutes=6)
    assert not verify_signature("k", b"body", str(t), good, now=late)
    assert not verify_signature("k", b"body", "yesterday", good, now=NOW)


def test_retry_after_seconds_and_http_dates() -> None:
    """Retry-After is delay-seconds or an HTTP date; nonsense is None; the past is 0."""
    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after("Mon, 05 Jan 2026 09:00:30 GMT", NOW) == 30.0
    assert parse_retry_after("Mon, 05 Jan 2026 08:00:00 GMT", NOW) == 0.0
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None


# --- the WhatsApp 24 h window ----------------------------------------------------------------


def test_window_unknown_open_and_closed() -> None:
    """No record is outside; a message 23 h 59 min ago is inside; 24 h is outside."""
    state = MemoryStateStore(clock=NOW.timestamp)
    assert not window_open(state, "+351912345678", NOW)
    record_inbound(state, "+351 912 345 678", NOW - timedelta(hours=23, minutes=59))
    assert window_open(state, "351912345678", NOW)
    assert not window_open(state, "351912345678", NOW + timedelta(minutes=1))


def test_a_later_inbound_message_is_kept_over_an_earlier_one() -> None:
    """Webhooks out of order never move the window back."""
    state = MemoryStateStore(clock=NOW.timestamp)
    record_inbound(state, "351912345678", NOW - timedelta(hours=1))
    record_inbound(state, "351912345678", NOW - timedelta(hours=30))
    assert window_open(state, "351912345678", NOW)


def test_record_inbound_needs_an_aware_time_and_a_phone_number() -> None:
    """Naive times and non-numbers are refused."""
    state = MemoryStateStore()
    with pytest.raises(ValueError, match="timezone"):
        record_inbound(state, "351912345678", datetime(2026, 1, 5))
    with pytest.raises(ValueError, match="international format"):
        record_inbound(state, "call me", NOW)


# --- configs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("node", "raw", "message"),
    [
        (http_post.NODE, {"url": "ftp://x"}, "http"),
        (http_post.NODE, {"url": "https://x", "url_secret": "u"}, "not both"),
        (http_post.NODE, {"url": "https://x", "body": "fields"}, "fields"),
        (http_post.NODE, {"url": "https://x", "body": "template"}, "body_template"),
        (http_post.NODE, {"url": "https://x", "headers": {"Authorization": "x"}}, "set by"),
        (http_post.NODE, {"url": "https://x", "headers": {"X-A": "a\r\nb"}}, "one line"),
        (http_post.NODE, {"url": "https://x", "signing_secret": "has space"}, "pattern"),
        (http_post.NODE, {"url": "https://x", "body_template": "{{ x"}, "syntax"),
        (http_post.NODE, {"url": "https://x", "verb": "PUT"}, "Extra inputs"),
        (telegram.NODE, {"chat_ids": ["me"]}, "pattern"),
        (telegram.NODE, {"api_base_url": "localhost"}, "http"),
        (telegram.NODE, {"format": "html"}, "markdown_v2"),
        (whatsapp.NODE, {"recipients": ["12"]}, "international"),
        (whatsapp.NODE, {"template_body_parameters": ["x"]}, "template_name"),
        (whatsapp.NODE, {"api_version": "23"}, "pattern"),
    ],
)
def test_bad_configs_are_rejected(node: Any, raw: dict[str, Any], message: str) -> None:
    """Typos and inconsistent settings fail validation with a pointed message."""
    with pytest.raises(ValidationError, match=message):
        node.parse_config(raw)


def test_recipients_and_chats_are_normalised_and_deduplicated() -> None:
    """Phone numbers become digits; repeated entries collapse."""
    wa = whatsapp.NODE.parse_config({"recipients": ["+351 912-345-678", "351912345678"]})
    assert wa.recipients == ["351912345678"]
    tg = telegram.NODE.parse_config({"chat_ids": ["-100123", "-100123", "@alerts_channel"]})
    assert tg.chat_ids == ["-100123", "@alerts_channel"]


@pytest.mark.parametrize("node", [http_post.NODE, telegram.NODE, whatsapp.NODE])
def test_nodes_export_as_event_actions(node: Any) -> None:
    """Each node exports as an output action with a JSON Schema whose fields are titled."""
    exported = json.loads(json.dumps(node.export()))
    assert exported["tier"] == "event" and exported["event_role"] == "action"
    assert exported["category"] == "output"
    properties = exported["config_schema"]["properties"]
    assert all("title" in p for p in properties.values())
    assert exported["config_schema"]["additionalProperties"] is False
