"""``aios/http_post@1`` — POSTs each event as JSON to a URL, optionally signed with HMAC-SHA256.

Request
-------
``POST <url>`` with, by ``body``:

* ``event`` — the event itself as a JSON object (UTF-8, compact separators);
* ``fields`` — a JSON object with only the listed event fields, keeping their nesting
  (``data.count`` becomes ``{"data": {"count": ...}}``; a missing field is ``null``);
* ``template`` — the text rendered from ``body_template`` (Jinja2 with ``event`` and
  ``context``), sent with ``content_type``; a JSON content type must render valid JSON
  (insert values with ``{{ event.zone | tojson }}``).

Headers: ``Content-Type``; ``Idempotency-Key`` (name configurable) carrying the event's
``event_id``, so a receiver can drop the repeats that retries may cause; the configured static
headers; ``Authorization`` from a secret when ``authorization_secret`` is set; and the
signature headers below when ``signing_secret`` is set.

Signature scheme
----------------
With ``signing_secret`` set, each request carries::

    X-AIOS-Timestamp: <t>                  # Unix time of the attempt, whole seconds (UTC)
    X-AIOS-Signature: sha256=<hex>         # lower-case hex of
                                           # HMAC-SHA256(key=secret as UTF-8,
                                           #             msg=b"<t>." + exact body bytes)

The receiver recomputes the HMAC over the timestamp header's value, a ``.`` and the raw body
it received (before any JSON parsing), compares in constant time (``hmac.compare_digest``),
and rejects a timestamp more than a few minutes from its own clock — so a captured request
cannot be replayed later, and the timestamp cannot be changed without breaking the
signature. :func:`verify_signature` does exactly that. The layout follows Stripe's webhook
signatures (timestamp, ``.``, payload) and GitHub's ``sha256=`` prefix; HMAC is RFC 2104,
SHA-256 is FIPS 180-4.

Outcome
-------
2xx: sent. 429 (and 503) with ``Retry-After`` (seconds or an HTTP date, RFC 9110 §10.2.3):
:class:`~aios.events.actions.RetryAfter`. 5xx, 408, 429 without ``Retry-After``, timeouts and
connection errors: :class:`~aios.events.task.TransientError`. Any other status:
:class:`~aios.events.task.PermanentError` with the status and the start of the response body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import Field, field_validator, model_validator

import aios
from aios.catalog.base import Category, EventRole, NodeManifest, NodeType, PortKind, PortSpec, Tier
from aios.events.actions import (
    Action,
    ActionConfig,
    NotConfigured,
    RetryAfter,
    Template,
    render,
)
from aios.events.secrets import SecretName, redact
from aios.events.task import PermanentError, TaskRequest, TransientError

SIGNATURE_PREFIX = "sha256="
"""Prefix of the signature header's value (as GitHub's ``X-Hub-Signature-256``)."""

DEFAULT_TOLERANCE_SECONDS = 300.0
"""How far a signed timestamp may be from the receiver's clock in :func:`verify_signature`
(5 minutes, Stripe's default tolerance)."""

EXCERPT_CHARS = 200
"""Characters of a rejected response's body quoted in the error."""

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")  # RFC 9110 §5.6.2 token
_FIELD_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")
_RESERVED_HEADERS = frozenset(
    {"host", "content-length", "content-type", "authorization", "transfer-encoding", "connection"}
)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Return the signature header value ``sha256=<hex>`` for ``body`` sent at ``timestamp``.

    Args:
        secret: the shared secret (UTF-8 encoded as the HMAC key).
        timestamp: Unix time in whole seconds, as sent in the timestamp header.
        body: the exact request body bytes.
    """
    material = f"{timestamp}.".encode("ascii") + body
    digest = hmac.new(secret.encode("utf-8"), material, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify_signature(
    secret: str,
    body: bytes,
    timestamp: str,
    signature: str,
    *,
    now: datetime | None = None,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """Return whether a received request carries a valid, fresh signature (receiver side).

    Args:
        secret: the shared secret.
        body: the raw request body bytes, as received.
        timestamp: the timestamp header's value (Unix seconds).
        signature: the signature header's value (``sha256=<hex>``).
        now: the receiver's current time (default: the system clock, UTC).
        tolerance_seconds: largest accepted difference between ``timestamp`` and ``now``.
    """
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    current = (now or datetime.now(UTC)).timestamp()
    if abs(current - sent_at) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, sent_at, body), signature)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Return the seconds a ``Retry-After`` header asks to wait (RFC 9110 §10.2.3).

    Accepts delay-seconds (``"120"``) or an HTTP date; returns ``None`` when absent or
    unparseable, and 0 for a date in the past.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


class HttpPostConfig(ActionConfig):
    """POST events to a web service."""

    url: str = Field(
        default="",
        max_length=2048,
        title="URL",
        description="http:// or https:// address the events are POSTed to. Leave empty and set "
        "'URL from secret' when the address itself contains a token.",
    )
    url_secret: SecretName | None = Field(
        default=None,
        title="URL from secret",
        description="Name of a secret holding the URL (for webhook addresses that embed a "
        "token); used instead of 'URL'.",
    )
    body: Literal["event", "fields", "template"] = Field(
        default="event",
        title="Body",
        description="'event': the whole event as JSON; 'fields': only the listed fields; "
        "'template': the text rendered from 'Body template'.",
    )
    fields: list[str] = Field(
        default_factory=list,
        max_length=50,
        title="Fields",
        description="With body 'fields': event fields to send, dotted for nested ones "
        "(e.g. 'event_type', 'zone', 'data.count').",
    )
    body_template: Template | None = Field(
        default=None,
        max_length=20_000,
        title="Body template",
        description="With body 'template': Jinja2 text with 'event' and 'context', e.g. "
        '{"text": {{ (event.event_type ~ " in " ~ event.zone) | tojson }}}.',
    )
    content_type: str = Field(
        default="application/json",
        max_length=100,
        pattern=r"^[\w.+-]+/[\w.+-]+(\s*;.*)?$",
        title="Content type",
        description="With body 'template': the Content-Type sent. A JSON type must render "
        "valid JSON. The other bodies are always application/json.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        max_length=20,
        title="Extra headers",
        description="Static headers sent with every request (not secrets: they are stored "
        "in the pipeline). Use 'Authorization from secret' for credentials.",
    )
    authorization_secret: SecretName | None = Field(
        default=None,
        title="Authorization from secret",
        description="Name of a secret whose value is sent as the Authorization header, "
        "e.g. 'Bearer abc123'.",
    )
    signing_secret: SecretName | None = Field(
        default=None,
        title="Signing secret",
        description="Name of a secret shared with the receiver; when set, each request carries "
        "an HMAC-SHA256 signature of '<timestamp>.<body>' (see the node's documentation).",
    )
    signature_header: str = Field(
        default="X-AIOS-Signature",
        pattern=_HEADER_NAME.pattern,
        title="Signature header",
        description="Header carrying 'sha256=<hex HMAC>' when a signing secret is set.",
    )
    timestamp_header: str = Field(
        default="X-AIOS-Timestamp",
        pattern=_HEADER_NAME.pattern,
        title="Timestamp header",
        description="Header carrying the signed Unix time in seconds (stops replays).",
    )
    idempotency_header: str = Field(
        default="Idempotency-Key",
        pattern=_HEADER_NAME.pattern,
        title="Idempotency header",
        description="Header carrying the event id, so the receiver can drop repeated deliveries.",
    )

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        return _check_url(value) if value else value

    @field_validator("fields")
    @classmethod
    def _valid_fields(cls, value: list[str]) -> list[str]:
        for path in value:
            if not _FIELD_PATH.match(path):
                raise ValueError(f"'{path}' is not a field name such as 'zone' or 'data.count'")
        return value

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"'{name}' is not a valid header name")
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(
                    f"header '{name}' is set by the node; use 'Content type' or "
                    "'Authorization from secret'"
                )
            if any(ch in text for ch in "\r\n\0") or len(text) > 1000 or not text.isascii():
                raise ValueError(
                    f"header '{name}': value must be one line of ≤ 1000 ASCII characters"
                )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> HttpPostConfig:
        if self.url and self.url_secret:
            raise ValueError("set either 'url' or 'url_secret', not both")
        if self.body == "fields" and not self.fields:
            raise ValueError("body 'fields' needs at least one entry in 'fields'")
        if self.body == "template" and not self.body_template:
            raise ValueError("body 'template' needs 'body_template'")
        own = {h.lower() for h in self.headers}
        for name in (self.signature_header, self.timestamp_header, self.idempotency_header):
            if name.lower() in own:
                raise ValueError(f"header '{name}' is set by the node; remove it from 'headers'")
        return self


MANIFEST = NodeManifest(
    type="aios/http_post@1",
    category=Category.OUTPUT,
    tier=Tier.EVENT,
    title="HTTP POST",
    description="Sends each event as JSON to a web service, optionally signed with "
    "HMAC-SHA256, with timeouts and retries.",
    icon="webhook",
    inputs=(
        PortSpec(
            name="events",
            kind=PortKind.EVENT,
            title="Events",
            description="Events to send.",
            multiple=True,
        ),
    ),
)


def _select(event: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """Return the listed fields of ``event`` with their nesting (missing ones as ``None``)."""
    out: dict[str, Any] = {}
    for path in paths:
        keys = path.split(".")
        value: Any = event
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        target = out
        for key in keys[:-1]:
            nested = target.get(key)
            if not isinstance(nested, dict):
                nested = target[key] = {}
            target = nested
        target[keys[-1]] = value
    return out


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def _hint(code: int, location: str | None) -> str:
    """Return what to change for a rejected request (empty when nothing specific)."""
    if 300 <= code < 400:
        return f"; the service redirects to {location or 'another address'}: set that URL"
    if code in (401, 403):
        return "; check 'authorization_secret' and 'signing_secret' against the receiver's"
    if code in (404, 405, 410):
        return "; check the URL"
    if code in (400, 413, 415, 422):
        return "; check 'body', 'fields' or 'body_template' against what the receiver accepts"
    return ""


class HttpPostAction(Action[HttpPostConfig]):
    """POSTs the event (or a body built from it) and maps the answer to the action contract."""

    channel = "http_post"

    def check_configured(self, request: TaskRequest) -> None:
        """Raise :class:`NotConfigured` when the URL or a named secret is missing."""
        cfg = self.config
        if not cfg.url and not cfg.url_secret:
            raise NotConfigured("set 'url' (or 'url_secret') to the address to POST to")
        if cfg.url_secret:
            self.secret(cfg.url_secret, "the URL to POST to")
        if cfg.signing_secret:
            self.secret(cfg.signing_secret, "the secret shared with the receiver")
        if cfg.authorization_secret:
            self.secret(cfg.authorization_secret, "the Authorization header value")

    def _body(self, request: TaskRequest) -> tuple[bytes, str]:
        cfg = self.config
        if cfg.body == "fields":
            return _dumps(_select(request.event, cfg.fields)), "application/json"
        if cfg.body == "template":
            assert cfg.body_template is not None  # checked by the config
            text = render(cfg.body_template, request)
            if _is_json(cfg.content_type):
                try:
                    json.loads(text)
                except json.JSONDecodeError as err:
                    raise PermanentError(
                        f"body_template did not render valid JSON ({err.msg} at character "
                        f"{err.pos}); insert values with '| tojson'"
                    ) from err
            return text.encode("utf-8"), cfg.content_type
        return _dumps(request.event), "application/json"

    def send(self, request: TaskRequest) -> dict[str, Any]:
        """POST once; return ``status_code``, ``url`` (or its secret), ``bytes``, ``signed``.

        Raises:
            RetryAfter: 429 (or 503) with ``Retry-After``.
            TransientError: 5xx, 408, 429 without ``Retry-After``, timeout, connection failure.
            PermanentError: any other non-2xx status, a bad URL, a template that fails.
        """
        cfg = self.config
        secrets: list[str] = []
        if cfg.url_secret:
            url = self.secret(cfg.url_secret, "the URL to POST to")
            secrets.append(url)
            target = f"the URL in secret '{cfg.url_secret}'"
            try:
                _check_url(url)
            except ValueError as err:
                raise PermanentError(f"{target} {err}") from err
        else:
            url = cfg.url
            parts = urlsplit(url)
            target = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
        body, content_type = self._body(request)
        headers = {
            "Content-Type": content_type,
            "User-Agent": f"aios/{aios.__version__}",
            **cfg.headers,
        }
        event_id = request.event.get("event_id")
        if event_id:
            headers[cfg.idempotency_header] = str(event_id)
        if cfg.authorization_secret:
            value = self.secret(cfg.authorization_secret, "the Authorization header value")
            secrets.append(value)
            headers["Authorization"] = value
        if cfg.signing_secret:
            secret = self.secret(cfg.signing_secret, "the secret shared with the receiver")
            secrets.append(secret)
            timestamp = int(self.services.now().timestamp())
            headers[cfg.timestamp_header] = str(timestamp)
            headers[cfg.signature_header] = sign(secret, timestamp, body)

        try:
            with httpx.Client(timeout=cfg.timeout_seconds, follow_redirects=False) as client:
                response = client.post(url, content=body, headers=headers)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as err:
            raise PermanentError(f"cannot POST to {target}: {redact(str(err), secrets)}") from err
        except httpx.TimeoutException as err:
            raise TransientError(
                f"{target} did not answer within {cfg.timeout_seconds:g} s "
                f"({type(err).__name__}); raise timeout_seconds if the service is slow"
            ) from err
        except httpx.TransportError as err:
            raise TransientError(
                f"could not reach {target}: {redact(str(err), secrets) or type(err).__name__}"
            ) from err

        code = response.status_code
        if 200 <= code < 300:
            return {
                "status_code": code,
                "url": target if cfg.url_secret else url,
                "bytes": len(body),
                "signed": cfg.signing_secret is not None,
            }
        excerpt = redact(" ".join(response.text.split())[:EXCERPT_CHARS], secrets)
        answer = f"{target} answered {code} {response.reason_phrase}"
        if excerpt:
            answer += f": {excerpt}"
        if code in (429, 503):
            wait = parse_retry_after(response.headers.get("Retry-After"), self.services.now())
            if wait is not None:
                raise RetryAfter(wait, answer)
        if code >= 500 or code in (408, 429):
            raise TransientError(answer)
        raise PermanentError(answer + _hint(code, response.headers.get("Location")))


NODE = NodeType(
    manifest=MANIFEST,
    config_model=HttpPostConfig,
    implementation=HttpPostAction,
    event_role=EventRole.ACTION,
)
