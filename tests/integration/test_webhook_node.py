"""``aios/webhook@1`` and its shared HTTP server, driven over loopback with httpx."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from aios.catalog.base import EventRole
from aios.events.secrets import DictSecretStore
from aios.events.state import MemoryStateStore
from aios.events.task import PermanentError, TaskServices
from aios.events.webhooks import sign
from aios.nodes import webhook
from aios.nodes.webhook import WebhookSource

SECRET = "whsec-3f9a7c"
SECRETS = {"hook_secret": SECRET}


class Collector:
    """Collects emitted events; optionally fails the first ``fail`` calls."""

    def __init__(self, fail: int = 0) -> None:
        self.events: list[dict[str, Any]] = []
        self.fail = fail
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> None:
        with self._lock:
            if self.fail > 0:
                self.fail -= 1
                raise RuntimeError("pipeline busy")
            self.events.append(event)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """One HTTP client for the module (building a client loads CA certificates)."""
    with httpx.Client(timeout=5) as client:
        yield client


@pytest.fixture
def start_hook() -> Iterator[Callable[..., tuple[WebhookSource, Collector]]]:
    """Return a function that builds and starts a webhook node on port 0; stops them after."""
    started: list[WebhookSource] = []

    def start(
        config: dict[str, Any] | None = None,
        collector: Collector | None = None,
        services: TaskServices | None = None,
    ) -> tuple[WebhookSource, Collector]:
        raw = {"path": "/hooks/door", "secret_name": "hook_secret", "port": 0} | (config or {})
        node_type = webhook.NODE
        node = node_type.implementation(
            node_type.parse_config(raw),
            services or TaskServices(secrets=DictSecretStore(SECRETS)),
        )
        assert isinstance(node, WebhookSource)
        got = collector or Collector()
        node.start(got)
        started.append(node)
        return node, got

    yield start
    for node in started:
        node.stop()


def post_signed(
    http: httpx.Client, url: str, body: bytes, secret: str = SECRET, **headers: str
) -> httpx.Response:
    """POST ``body`` as JSON with a valid (for ``secret``) signature header."""
    return http.post(
        url,
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-AIOS-Signature": sign(secret, body),
            **headers,
        },
        timeout=5,
    )


def test_node_type_is_an_event_source() -> None:
    """The manifest declares an event-tier input with one event output."""
    assert webhook.NODE.event_role is EventRole.SOURCE
    assert webhook.NODE.type_id == "aios/webhook@1"
    assert [p.name for p in webhook.NODE.manifest.outputs] == ["events"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"path": "/door"}, "String should match pattern"),
        ({"path": "/hooks/a b"}, "String should match pattern"),
        ({"host": "example.com"}, "listen address must be an IP address"),
        ({"auth": "none"}, "'token' or 'hmac_sha256'"),
        ({"secret_name": "not a name"}, "String should match pattern"),
        ({"max_body_bytes": 0}, "greater than or equal to 2"),
        ({"secret": SECRET}, "Extra inputs are not permitted"),
    ],
)
def test_config_rejects_mistakes(config: dict[str, Any], message: str) -> None:
    """Bad paths, addresses, auth modes, limits and typos fail validation with a reason."""
    raw = {"path": "/hooks/door", "secret_name": "hook_secret"} | config
    with pytest.raises(ValidationError, match=re.escape(message)):
        webhook.NODE.parse_config(raw)


def test_signed_post_is_accepted_and_emitted(
    http: httpx.Client,
    start_hook: Callable[..., tuple[WebhookSource, Collector]],
) -> None:
    """A correctly signed JSON object is answered 202 and emitted as webhook.received."""
    # GIVEN a webhook in HMAC mode
    node, got = start_hook()
    body = json.dumps({"door": "north", "state": "open"}).encode()
    # WHEN a signed body is posted
    response = post_signed(http, node.url, body)
    # THEN it is accepted, with the id of the emitted event
    assert response.status_code == 202
    answer = response.json()
    assert answer["accepted"] is True
    [event] = got.events
    assert answer["event_id"] == event["event_id"]
    assert event["event_type"] == "webhook.received"
    assert event["source_id"] == "/hooks/door"
    assert event["data"] == {"door": "north", "state": "open"}
    assert event["time"].endswith("Z")
    assert node.url.startswith("http://127.0.0.1:") and node.url.endswith("/hooks/door")


def test_hmac_mode_refuses_missing_wrong_and_tampered_signatures(
    http: httpx.Client,
    start_hook: Callable[..., tuple[WebhookSource, Collector]],
) -> None:
    """Without a signature, with another secret's, or after the body changed: 401."""
    node, got = start_hook()
    body = b'{"door": "north"}'
    missing = http.post(node.url, content=body, headers={"Content-Type": "application/json"})
    wrong = post_signed(http, node.url, body, secret="another-secret")
    tampered = http.post(
        node.url,
        content=b'{"door": "south"}',
        headers={"Content-Type": "application/json", "X-AIOS-Signature": sign(SECRET, body)},
    )
    assert [r.status_code for r in (missing, wrong, tampered)] == [401, 401, 401]
    assert "missing X-AIOS-Signature" in missing.json()["error"]
    assert "does not match the body" in wrong.json()["error"]
    assert all(SECRET not in r.text for r in (missing, wrong, tampered))
    assert got.events == []


def test_token_mode(
    http: httpx.Client, start_hook: Callable[..., tuple[WebhookSource, Collector]]
) -> None:
    """In token mode the right X-AIOS-Token is accepted, a missing or wrong one is 401."""
    node, got = start_hook({"auth": "token"})
    json_type = {"Content-Type": "application/json"}
    ok = http.post(node.url, content=b"{}", headers=json_type | {"X-AIOS-Token": SECRET})
    missing = http.post(node.url, content=b"{}", headers=json_type)
    wrong = http.post(node.url, content=b"{}", headers=json_type | {"X-AIOS-Token": "guess"})
    assert (ok.status_code, missing.status_code, wrong.status_code) == (202, 401, 401)
    assert "missing X-AIOS-Token" in missing.json()["error"]
    assert "wrong X-AIOS-Token" in wrong.json()["error"]
    assert len(got.events) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"door": ', "body is not valid JSON: Expecting value at line 1 column 10"),
        (b"[1, 2, 3]", "body must be a JSON object, got a JSON list"),
        (b"null", "body must be a JSON object, got a JSON null"),
        (b'{"level": NaN}', "body is not valid JSON: NaN is not a JSON number"),
        (b'{"name": "\xff"}', "body is not UTF-8 text"),
        (b'{"event_id": 42}', "body field event_id must be a string"),
        (b"[" * 30_000, "body is nested too deeply"),
    ],
)
def test_invalid_json_is_400_with_what_is_wrong(
    http: httpx.Client,
    start_hook: Callable[..., tuple[WebhookSource, Collector]],
    body: bytes,
    message: str,
) -> None:
    """Signed bodies that are not a JSON object are refused with 400 saying why."""
    node, got = start_hook()
    response = post_signed(http, node.url, body)
    assert response.status_code == 400
    assert response.json() == {"accepted": False, "error": message}
    assert got.events == []


def test_unknown_path_wrong_method_and_content_type(
    http: httpx.Client,
    start_hook: Callable[..., tuple[WebhookSource, Collector]],
) -> None:
    """Unknown path: 404; GET: 405 with Allow; text/plain or no type: 415; chunked: 411."""
    node, got = start_hook()
    base = node.url.removesuffix("/hooks/door")
    body = b'{"a": 1}'
    unknown = post_signed(http, base + "/hooks/window", body)
    get = http.get(node.url)
    text = http.post(node.url, content=body, headers={"Content-Type": "text/plain"})
    untyped = http.post(node.url, content=body)
    chunked = http.post(
        node.url,
        content=iter([body]),
        headers={"Content-Type": "application/json", "X-AIOS-Signature": sign(SECRET, body)},
    )
    assert unknown.status_code == 404 and "no webhook at /hooks/window" in unknown.json()["error"]
    assert get.status_code == 405 and get.headers["Allow"] == "POST"
    assert text.status_code == 415 and untyped.status_code == 415
    assert "application/json" in text.json()["error"]
    assert chunked.status_code == 411
    assert got.events == []


def test_content_type_with_charset_is_json(
    http: httpx.Client,
    start_hook: Callable[..., tuple[WebhookSource, Collector]],
) -> None:
    """``application/json; charset=utf-8`` is JSON."""
    node, got = start_hook()
    body = b'{"a": 1}'
    response = post_signed(
        http, node.url, body, **{"Content-Type": "application/json; charset=utf-8"}
    )
    assert response.status_code == 202 and len(got.events) == 1


def test_body_limit(
    http: httpx.Client, start_hook: Callable[..., tuple[WebhookSource, Collector]]
) -> None:
    """The default limit is 256 KiB; a body of exactly the limit passes, one byte more is 413."""
    # GIVEN one webhook with the default limit and one with a 1 KiB limit
    default, _ = start_hook()
    small, got_small = start_hook({"path": "/hooks/small", "max_body_bytes": 1024})
    too_big_for_default = json.dumps({"blob": "x" * 300_000}).encode()
    prefix, suffix = b'{"blob": "', b'"}'
    exactly = prefix + b"x" * (1024 - len(prefix) - len(suffix)) + suffix
    one_more = prefix + b"x" * (1025 - len(prefix) - len(suffix)) + suffix
    # WHEN each is posted
    big = post_signed(http, default.url, too_big_for_default)
    at_limit = post_signed(http, small.url, exactly)
    over = post_signed(http, small.url, one_more)
    # THEN only the body within the limit is accepted
    assert big.status_code == 413 and "limit of 262144 bytes" in big.json()["error"]
    assert at_limit.status_code == 202
    assert over.status_code == 413 and "1025 bytes" in over.json()["error"]
    assert len(got_small.events) == 1


def test_idempotency_key_makes_retries_recognisable(
    http: httpx.Client,
    start_hook: Callable[..., tuple[WebhookSource, Collector]],
) -> None:
    """The same Idempotency-Key (or body event_id) gives the same event id and is emitted
    once; posts without a key are separate events even with the same body."""
    node, got = start_hook()
    body = b'{"alarm": "smoke"}'
    first = post_signed(http, node.url, body, **{"Idempotency-Key": "delivery-0001"})
    retry = post_signed(http, node.url, body, **{"Idempotency-Key": "delivery-0001"})
    other = post_signed(http, node.url, body, **{"Idempotency-Key": "delivery-0002"})
    in_body = b'{"alarm": "heat", "event_id": "evt-77"}'
    body_first, body_retry = (
        post_signed(http, node.url, in_body),
        post_signed(http, node.url, in_body),
    )
    plain_a, plain_b = post_signed(http, node.url, body), post_signed(http, node.url, body)
    bad_key = post_signed(http, node.url, body, **{"Idempotency-Key": "has space"})

    assert first.status_code == retry.status_code == 202
    assert first.json()["event_id"] == retry.json()["event_id"]
    assert retry.json()["duplicate"] is True and "duplicate" not in first.json()
    assert other.json()["event_id"] != first.json()["event_id"]
    assert body_first.json()["event_id"] == body_retry.json()["event_id"]
    assert body_retry.json()["duplicate"] is True
    assert plain_a.json()["event_id"] != plain_b.json()["event_id"]
    assert bad_key.status_code == 400 and "Idempotency-Key" in bad_key.json()["error"]
    emitted = [e["event_id"] for e in got.events]
    assert emitted == [
        first.json()["event_id"],
        other.json()["event_id"],
        body_first.json()["event_id"],
        plain_a.json()["event_id"],
        plain_b.json()["event_id"],
    ]


def test_pipeline_refusal_is_503_and_the_retry_goes_through(
    http: httpx.Client,
    start_hook: Callable[..., tuple[WebhookSource, Collector]],
) -> None:
    """When emit fails the sender gets 503; its retry with the same key is then emitted."""
    node, got = start_hook(collector=Collector(fail=1))
    body = b'{"alarm": "smoke"}'
    refused = post_signed(http, node.url, body, **{"Idempotency-Key": "k-1"})
    retried = post_signed(http, node.url, body, **{"Idempotency-Key": "k-1"})
    assert refused.status_code == 503 and "retry" in refused.json()["error"]
    assert retried.status_code == 202 and "duplicate" not in retried.json()
    assert [e["event_id"] for e in got.events] == [retried.json()["event_id"]]


def test_fields_and_source_id(
    http: httpx.Client, start_hook: Callable[..., tuple[WebhookSource, Collector]]
) -> None:
    """``fields`` keeps only the named top-level fields; ``source_id`` names the source."""
    node, got = start_hook({"fields": ["door", "state"], "source_id": "alarm-panel-1"})
    body = b'{"door": "north", "state": "open", "panel_serial": "X9", "extra": [1]}'
    assert post_signed(http, node.url, body).status_code == 202
    [event] = got.events
    assert event["data"] == {"door": "north", "state": "open"}
    assert event["source_id"] == "alarm-panel-1"


def test_nodes_share_one_server_which_stops_with_the_last(
    http: httpx.Client,
    start_hook: Callable[..., tuple[WebhookSource, Collector]],
) -> None:
    """Two webhooks on one address share the server; it keeps serving while one remains and
    closes its port when the last one stops; a taken path is refused at start."""
    door, got_door = start_hook()
    window, got_window = start_hook({"path": "/hooks/window"})
    assert door.url.rsplit("/hooks", 1)[0] == window.url.rsplit("/hooks", 1)[0]
    with pytest.raises(PermanentError, match="already uses the path /hooks/door"):
        start_hook()
    door.stop()
    door.stop()
    assert post_signed(http, window.url, b"{}").status_code == 202
    gone = post_signed(http, window.url.replace("/hooks/window", "/hooks/door"), b"{}")
    assert gone.status_code == 404
    url = window.url
    window.stop()
    with pytest.raises(httpx.ConnectError):
        http.post(url, content=b"{}", headers={"Content-Type": "application/json"}, timeout=2)
    assert got_door.events == [] and len(got_window.events) == 1


def test_missing_secret_fails_start_with_what_to_set(
    start_hook: Callable[..., tuple[WebhookSource, Collector]],
) -> None:
    """A secret that is not set stops the start and names the variable to set."""
    with pytest.raises(PermanentError, match="AIOS_SECRET_HOOK_SECRET"):
        start_hook(services=TaskServices(secrets=DictSecretStore({})))


def test_idempotency_memory_can_be_off(
    http: httpx.Client,
    start_hook: Callable[..., tuple[WebhookSource, Collector]],
) -> None:
    """With idempotency_seconds 0 a repeated key is emitted again (same event id)."""
    services = TaskServices(secrets=DictSecretStore(SECRETS), state=MemoryStateStore())
    node, got = start_hook({"idempotency_seconds": 0}, services=services)
    for _ in range(2):
        post_signed(http, node.url, b"{}", **{"Idempotency-Key": "same"})
    assert len(got.events) == 2 and got.events[0]["event_id"] == got.events[1]["event_id"]


class BrokenStateStore(MemoryStateStore):
    """A state store whose conditional write fails (a database gone away)."""

    def put_if_absent(
        self, namespace: str, key: str, value: Any, ttl_seconds: float | None = None
    ) -> bool:
        raise OSError("disk I/O error")


def test_unexpected_failure_is_500_and_the_server_keeps_serving(
    http: httpx.Client, start_hook: Callable[..., tuple[WebhookSource, Collector]]
) -> None:
    """A failure inside the node answers 500 without details; the next request is served."""
    services = TaskServices(secrets=DictSecretStore(SECRETS), state=BrokenStateStore())
    node, got = start_hook(services=services)
    failed = post_signed(http, node.url, b"{}", **{"Idempotency-Key": "k-9"})
    served = post_signed(http, node.url, b"{}")
    assert failed.status_code == 500 and failed.json() == {
        "accepted": False,
        "error": "internal error",
    }
    assert served.status_code == 202 and len(got.events) == 1
