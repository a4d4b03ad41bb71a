"""``aios/whatsapp@1`` — sends each event through the WhatsApp Cloud API (Meta Graph API).

Calls (https://developers.facebook.com/docs/whatsapp/cloud-api/reference), with the access
token as ``Authorization: Bearer``:

* ``POST <api>/<version>/<phone_number_id>/messages`` — a text, image or template message;
* ``POST <api>/<version>/<phone_number_id>/media`` — upload the snapshot (multipart) once per
  event; the returned media id is reused for every recipient.

The 24-hour customer-service window
-----------------------------------
WhatsApp delivers free-form messages (text, image) only within 24 hours of the recipient's
last message to the business; outside it, only an approved *template* message. The node
reads when each recipient last wrote from the state store (namespace
``whatsapp/window``, key the recipient's number in digits), written by :func:`record_inbound`
from the inbound-message webhook. No record means *outside* the window. Inside: the rendered
``message`` (with the snapshot as an image whose caption holds the first 1024 characters);
outside, or when WhatsApp answers error 131047 (re-engagement required): the template
``template_name`` with ``template_body_parameters``; with no template configured, that
recipient fails with a message saying so.

Delivery
--------
HTTP 200 means WhatsApp *accepted* the message, not that it was delivered: the result lists
the message ids (``wamid...``), and the delivery statuses (sent, delivered, read, failed)
arrive later on the status webhook, keyed by those ids.

Errors: HTTP 429 and Graph error codes 4, 80007, 130429, 131056 (rate limits) →
:class:`~aios.events.actions.RetryAfter` (``Retry-After`` header, else
:data:`DEFAULT_RETRY_AFTER_SECONDS`); 5xx, timeouts, connection failures and Graph errors
marked transient → :class:`~aios.events.task.TransientError`; anything else →
:class:`~aios.events.task.PermanentError` with the Graph error message. One recipient's
permanent failure does not stop the others; the error lists every failed recipient. Error
codes: https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
from pydantic import AfterValidator, Field, field_validator, model_validator

from aios.catalog.base import Category, EventRole, NodeManifest, NodeType, PortKind, PortSpec, Tier
from aios.events.actions import (
    Action,
    ActionConfig,
    NotConfigured,
    RetryAfter,
    Template,
    render,
)
from aios.events.envelope import parse_time
from aios.events.secrets import SecretName, redact
from aios.events.state import StateStore
from aios.events.task import PermanentError, TaskRequest, TransientError
from aios.nodes.http_post import parse_retry_after
from aios.nodes.telegram import Progress, cut_message, split_message

GRAPH_API_URL = "https://graph.facebook.com"
"""Meta's Graph API host."""

DEFAULT_API_VERSION = "v23.0"
"""Graph API version used unless configured (versions are supported for about two years)."""

TEXT_LIMIT = 4096
"""Longest text message body (Cloud API ``text.body``: 4096 characters)."""

CAPTION_LIMIT = 1024
"""Longest media caption (Cloud API ``image.caption``: 1024 characters)."""

IMAGE_LIMIT_BYTES = 5 * 1024 * 1024
"""Largest image the Cloud API accepts (5 MB); a larger snapshot is not attached."""

CUSTOMER_SERVICE_WINDOW = timedelta(hours=24)
"""How long after a customer's last message free-form messages may be sent (Meta policy)."""

WINDOW_NAMESPACE = "whatsapp/window"
"""State namespace holding, per recipient, the ISO 8601 UTC time of their last inbound message."""

RATE_LIMIT_CODES = frozenset({4, 80007, 130429, 131056})
"""Graph error codes meaning "slow down": app call limit (4), WhatsApp Business Account rate
limit (80007), throughput limit (130429), pair rate limit — too many messages to one
recipient (131056)."""

REENGAGEMENT_CODE = 131047
"""Graph error code: more than 24 hours since the recipient last replied; a template is needed."""

TRANSIENT_CODES = frozenset({1, 2, 131000, 131016})
"""Graph error codes worth retrying: unknown API error (1), service temporarily unavailable
(2), something went wrong (131000), service unavailable (131016)."""

DEFAULT_RETRY_AFTER_SECONDS = 10.0
"""Wait used for a rate-limit answer that carries no ``Retry-After`` header."""

ACCEPTED_NOTE = (
    "HTTP 200: WhatsApp accepted the messages; it does not mean delivered. Delivery (sent, "
    "delivered, read, failed) is reported per message id on the status webhook."
)

DEFAULT_MESSAGE = (
    "*{{ event.event_type }}* on {{ event.source_id }}"
    "{% if event.zone %} in {{ event.zone }}{% endif %}"
    "{% if event.class_name %}: {{ event.class_name }}{% endif %}"
    "{% if event.dwell_seconds %}, {{ event.dwell_seconds | round(1) }} s{% endif %}\n"
    "{{ context.pipeline }}, {{ context.site.date }} {{ context.site.time }}"
)


def normalize_recipient(number: str) -> str:
    """Return a phone number as WhatsApp ids it: digits only, country code first, no ``+``.

    Raises:
        ValueError: not 7-15 digits (E.164) after removing ``+``, spaces, dots and dashes.
    """
    digits = "".join(ch for ch in number if ch not in "+ .-()")
    if not digits.isdigit() or not 7 <= len(digits) <= 15 or digits.startswith("0"):
        raise ValueError(
            f"'{number}' is not a phone number in international format, e.g. +351912345678"
        )
    return digits


Recipient = Annotated[
    str,
    Field(
        max_length=24,
        description="Phone number in international format with country code, e.g. '+351912345678'.",
    ),
    AfterValidator(normalize_recipient),
]


def record_inbound(state: StateStore, recipient: str, at: datetime) -> None:
    """Record that ``recipient`` messaged the business at ``at``: opens the 24 h window.

    Called by the inbound-message webhook. A later time replaces an earlier one, never the
    reverse (webhooks may arrive out of order). The record expires after 24 hours.

    Raises:
        ValueError: ``recipient`` is not a phone number, or ``at`` has no time zone.
    """
    if at.tzinfo is None:
        raise ValueError("'at' must be timezone-aware (UTC)")
    key = normalize_recipient(recipient)

    def later(old: Any | None) -> Any:
        previous = parse_time(old)
        return old if previous is not None and previous >= at else at.isoformat()

    state.update(WINDOW_NAMESPACE, key, later, ttl_seconds=CUSTOMER_SERVICE_WINDOW.total_seconds())


def window_open(state: StateStore, recipient: str, now: datetime) -> bool:
    """Return whether ``recipient`` wrote within the last 24 hours (unknown: ``False``)."""
    last = parse_time(state.get(WINDOW_NAMESPACE, normalize_recipient(recipient)))
    return last is not None and now - last < CUSTOMER_SERVICE_WINDOW


def _template_parameter(text: str) -> str:
    """Return ``text`` as a template parameter may hold it: one line, no runs of spaces.

    WhatsApp refuses parameters with line breaks, tabs or more than four consecutive spaces
    (error 132018) and empty ones; an empty value becomes ``-``.
    """
    return " ".join(text.split()) or "-"


class WhatsAppConfig(ActionConfig):
    """Send events through the WhatsApp Cloud API."""

    access_token_secret: SecretName = Field(
        default="whatsapp_access_token",
        title="Access token secret",
        description="Name of the secret holding the Cloud API access token (a system user "
        "token with whatsapp_business_messaging permission).",
    )
    phone_number_id: str = Field(
        default="",
        pattern=r"^([0-9]{1,30})?$",
        title="Phone number ID",
        description="ID of the business phone number that sends (WhatsApp Manager → API "
        "setup), not the phone number itself.",
    )
    recipients: list[Recipient] = Field(
        default_factory=list,
        max_length=20,
        title="Recipients",
        description="Phone numbers that receive the message, in international format.",
    )
    message: Template = Field(
        default=DEFAULT_MESSAGE,
        min_length=1,
        max_length=10_000,
        title="Message",
        description="Free-form text (inside the 24 h window): Jinja2 template with 'event' "
        "and 'context'. WhatsApp formatting: *bold*, _italic_.",
    )
    send_snapshot: bool = Field(
        default=True,
        title="Send snapshot",
        description="Inside the window, send the event's snapshot as an image with the message "
        f"as caption (captions hold {CAPTION_LIMIT} characters; the rest follows as text).",
    )
    template_name: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9_]{1,512}$",
        title="Template",
        description="Name of an approved message template, sent outside the 24 h window "
        "(recipients who have not written in the last 24 hours). Empty: those fail.",
    )
    template_language: str = Field(
        default="en_US",
        pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$",
        title="Template language",
        description="Language code the template was approved in, e.g. 'en_US', 'pt_BR'.",
    )
    template_body_parameters: list[Template] = Field(
        default_factory=list,
        max_length=20,
        title="Template parameters",
        description="Values of the template body's {{1}}, {{2}}... in order, each a Jinja2 "
        "template, e.g. '{{ event.zone }}'. Line breaks are replaced by spaces.",
    )
    template_header_image: bool = Field(
        default=False,
        title="Template has an image header",
        description="The template's header is an image: send the event's snapshot in it.",
    )
    api_base_url: str = Field(
        default=GRAPH_API_URL,
        max_length=500,
        title="Graph API server",
        description="Base URL of the Graph API.",
    )
    api_version: str = Field(
        default=DEFAULT_API_VERSION,
        pattern=r"^v[0-9]{1,3}\.[0-9]{1,2}$",
        title="Graph API version",
        description="Graph API version in the request path, e.g. 'v23.0'.",
    )

    @field_validator("api_base_url")
    @classmethod
    def _valid_api_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL, e.g. https://graph.facebook.com")
        return value.rstrip("/")

    @field_validator("recipients")
    @classmethod
    def _unique_recipients(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _template_fields(self) -> WhatsAppConfig:
        if self.template_name is None and (
            self.template_body_parameters or self.template_header_image
        ):
            raise ValueError("template parameters and header image need 'template_name'")
        return self


MANIFEST = NodeManifest(
    type="aios/whatsapp@1",
    category=Category.OUTPUT,
    tier=Tier.EVENT,
    title="WhatsApp",
    description="Sends a WhatsApp message with the snapshot through the Cloud API: free text "
    "within 24 h of the recipient's last message, an approved template otherwise.",
    icon="message-circle",
    inputs=(
        PortSpec(
            name="events",
            kind=PortKind.EVENT,
            title="Events",
            description="Events to notify.",
            multiple=True,
        ),
    ),
)


class _OutsideWindow(Exception):
    """WhatsApp answered 131047: the recipient's 24 h window is closed."""


class _Graph:
    """The Cloud API calls the node makes, with errors mapped to the task errors."""

    def __init__(
        self,
        client: httpx.Client,
        token: str,
        timeout_seconds: float,
        now: Callable[[], datetime],
    ) -> None:
        self.client = client
        self.token = token
        self.timeout_seconds = timeout_seconds
        self.now = now

    def post(self, path: str, what: str, **kwargs: Any) -> dict[str, Any]:
        """POST to ``path``; return the JSON answer of a 2xx.

        Raises:
            RetryAfter / TransientError / PermanentError / _OutsideWindow: see the module.
        """
        try:
            response = self.client.post(path, **kwargs)
        except httpx.TimeoutException as err:
            raise TransientError(
                f"WhatsApp did not answer {what} within {self.timeout_seconds:g} s"
            ) from err
        except httpx.TransportError as err:
            reason = redact(str(err), [self.token]) or type(err).__name__
            raise TransientError(f"could not reach WhatsApp ({what}): {reason}") from err
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if not isinstance(answer, dict):
            answer = {}
        if response.is_success:
            return answer
        error = answer.get("error")
        error = error if isinstance(error, dict) else {}
        code = error.get("code")
        data = error.get("error_data")
        details = data.get("details") if isinstance(data, dict) else None
        message = str(error.get("message") or response.reason_phrase)
        if details and details not in message:
            message += f": {details}"
        reason = redact(
            f"WhatsApp refused {what} (HTTP {response.status_code}, code {code}): {message}",
            [self.token],
        )
        if response.status_code == 429 or code in RATE_LIMIT_CODES:
            wait = parse_retry_after(response.headers.get("Retry-After"), self.now())
            raise RetryAfter(DEFAULT_RETRY_AFTER_SECONDS if wait is None else wait, reason)
        if code == REENGAGEMENT_CODE:
            raise _OutsideWindow(reason)
        if response.status_code >= 500 or code in TRANSIENT_CODES or error.get("is_transient"):
            raise TransientError(reason)
        if code == 190 or response.status_code == 401:
            reason += "; renew the access token in its secret"
        raise PermanentError(reason)


class WhatsAppAction(Action[WhatsAppConfig]):
    """Sends the event to each recipient as text/image inside the window, template outside."""

    channel = "whatsapp"

    def _token(self) -> str:
        return self.secret(self.config.access_token_secret, "the WhatsApp Cloud API access token")

    def check_configured(self, request: TaskRequest) -> None:
        """Raise :class:`NotConfigured` when the token, sender or recipients are missing."""
        self._token()
        if not self.config.phone_number_id:
            raise NotConfigured("set 'phone_number_id' to the sending number's ID")
        if not self.config.recipients:
            raise NotConfigured(
                "add the phone numbers that should receive messages to 'recipients'"
            )

    def _snapshot(self, request: TaskRequest) -> bytes | None:
        ref = request.event.get("snapshot")
        wanted = self.config.send_snapshot or self.config.template_header_image
        if not wanted or not isinstance(ref, str) or not ref:
            return None
        try:
            data = self.services.blobs.read(ref)
        except OSError as err:
            self.services.logger.warning(
                "whatsapp node %s: snapshot %s unreadable (%s); sending without it",
                request.node_id,
                ref,
                err,
            )
            return None
        if len(data) > IMAGE_LIMIT_BYTES:
            self.services.logger.warning(
                "whatsapp node %s: snapshot %s is over 5 MB; sending without it",
                request.node_id,
                ref,
            )
            return None
        return data

    def _media_id(self, graph: _Graph, progress: Progress, image: bytes) -> str:
        """Upload the snapshot once per execution and event; return its media id."""
        known = progress.get("media")
        if isinstance(known, str):
            return known
        answer = graph.post(
            f"{self.config.phone_number_id}/media",
            "the snapshot upload",
            data={"messaging_product": "whatsapp", "type": "image/jpeg"},
            files={"file": ("snapshot.jpg", image, "image/jpeg")},
        )
        media_id = answer.get("id")
        if not isinstance(media_id, str) or not media_id:
            raise TransientError("WhatsApp's media upload answer had no media id")
        progress.put(media_id, "media")
        return media_id

    def _message(self, graph: _Graph, to: str, kind: str, body: dict[str, Any]) -> str:
        answer = graph.post(
            f"{self.config.phone_number_id}/messages",
            f"the {kind} message to {to}",
            json={
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": to,
                "type": kind,
                kind: body,
            },
        )
        messages = answer.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[0], dict):
            return str(messages[0].get("id", ""))
        return ""

    def _free_form(
        self, graph: _Graph, progress: Progress, to: str, text: str, image: bytes | None
    ) -> list[str]:
        parts: list[tuple[str, dict[str, Any]]] = []
        if image is not None:
            caption, text = cut_message(text, CAPTION_LIMIT)
            body: dict[str, Any] = {"id": self._media_id(graph, progress, image)}
            if caption.strip():
                body["caption"] = caption
            parts.append(("image", body))
        parts += [
            ("text", {"body": p, "preview_url": False}) for p in split_message(text, TEXT_LIMIT)
        ]
        if not parts:
            raise PermanentError("the message template rendered empty text; check 'message'")
        ids: list[str] = []
        for index, (kind, body) in enumerate(parts):
            earlier = progress.get(to, "free", index)
            if earlier is None:
                earlier = self._message(graph, to, kind, body)
                progress.put(earlier, to, "free", index)
            ids.append(str(earlier))
        return ids

    def _template(
        self,
        graph: _Graph,
        progress: Progress,
        request: TaskRequest,
        to: str,
        image: bytes | None,
    ) -> list[str]:
        cfg = self.config
        assert cfg.template_name is not None
        components: list[dict[str, Any]] = []
        if cfg.template_header_image:
            if image is None:
                raise PermanentError(
                    f"template '{cfg.template_name}' has an image header but the event has no "
                    "snapshot; turn off 'template_header_image' or save snapshots upstream"
                )
            media_id = self._media_id(graph, progress, image)
            components.append(
                {"type": "header", "parameters": [{"type": "image", "image": {"id": media_id}}]}
            )
        if cfg.template_body_parameters:
            values = [_template_parameter(render(t, request)) for t in cfg.template_body_parameters]
            components.append(
                {"type": "body", "parameters": [{"type": "text", "text": v} for v in values]}
            )
        body: dict[str, Any] = {
            "name": cfg.template_name,
            "language": {"code": cfg.template_language},
        }
        if components:
            body["components"] = components
        earlier = progress.get(to, "template")
        if earlier is None:
            earlier = self._message(graph, to, "template", body)
            progress.put(earlier, to, "template")
        return [str(earlier)]

    def send(self, request: TaskRequest) -> dict[str, Any]:
        """Send to every recipient; return per recipient the ``mode`` and ``message_ids``.

        Raises:
            RetryAfter: a rate limit (the recipients already served are not sent again).
            TransientError: 5xx, timeout, connection failure.
            PermanentError: some recipients failed (listed); the others were sent.
        """
        cfg = self.config
        token = self._token()
        now = self.services.now()
        progress = Progress(self.services.state, request)
        image = self._snapshot(request)
        text = render(cfg.message, request)
        sent: dict[str, dict[str, Any]] = {}
        failed: list[str] = []
        with httpx.Client(
            base_url=f"{cfg.api_base_url}/{cfg.api_version}/",
            headers={"Authorization": f"Bearer {token}"},
            timeout=cfg.timeout_seconds,
        ) as client:
            graph = _Graph(client, token, cfg.timeout_seconds, self.services.now)
            for to in cfg.recipients:
                done = progress.get(to, "done")
                if isinstance(done, dict):
                    sent[to] = done
                    continue
                try:
                    result = self._send_to(
                        graph=graph,
                        progress=progress,
                        request=request,
                        to=to,
                        text=text,
                        image=image,
                        now=now,
                    )
                except PermanentError as err:
                    failed.append(f"{to}: {err.message}")
                    continue
                progress.put(result, to, "done")
                sent[to] = result
        if failed:
            served = f" (sent to {', '.join(sent)})" if sent else ""
            raise PermanentError(
                f"WhatsApp failed for {len(failed)} recipient(s){served}: " + "; ".join(failed)
            )
        return {"recipients": sent, "note": ACCEPTED_NOTE}

    def _send_to(
        self,
        *,
        graph: _Graph,
        progress: Progress,
        request: TaskRequest,
        to: str,
        text: str,
        image: bytes | None,
        now: datetime,
    ) -> dict[str, Any]:
        cfg = self.config
        if window_open(self.services.state, to, now):
            photo = image if cfg.send_snapshot else None
            try:
                ids = self._free_form(graph, progress, to, text, photo)
                return {"mode": "text", "message_ids": ids, "image": photo is not None}
            except _OutsideWindow as err:
                if cfg.template_name is None:
                    raise PermanentError(
                        f"{err}; set 'template_name' to an approved template for recipients "
                        "outside the 24 h window"
                    ) from err
        elif cfg.template_name is None:
            raise PermanentError(
                "outside the 24 h customer-service window (no message from this number in the "
                "last 24 hours); set 'template_name' to an approved template"
            )
        try:
            ids = self._template(graph, progress, request, to, image)
        except _OutsideWindow as err:  # not expected for templates
            raise PermanentError(str(err)) from err
        return {"mode": "template", "message_ids": ids, "image": cfg.template_header_image}


NODE = NodeType(
    manifest=MANIFEST,
    config_model=WhatsAppConfig,
    implementation=WhatsAppAction,
    event_role=EventRole.ACTION,
)
