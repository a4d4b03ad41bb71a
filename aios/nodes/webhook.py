"""``aios/webhook@1`` — an HTTP endpoint that turns posted JSON into pipeline events.

A sender POSTs a JSON object to ``http://<host>:<port>/hooks/<name>`` with
``Content-Type: application/json`` and proves it holds the shared secret — the secret in
``X-AIOS-Token``, or ``X-AIOS-Signature: sha256=<hex>``, the HMAC-SHA256 of the raw body
keyed with the secret. Status codes and checks: :mod:`aios.events.webhooks`. Webhook nodes
on the same host and port share one server.

The event (``data`` is the posted object, or only ``fields`` of it)::

    {"event_id": "…", "event_type": "webhook.received", "time": "2026-01-05T09:00:00.1Z",
     "source_id": "/hooks/door", "data": {"door": "north", "state": "open"}}

``event_id``: when the sender gives an idempotency key (header ``Idempotency-Key``, else the
body's ``event_id``), it is derived from that key and the node's source id, so a retried
delivery gets the same id — and within ``idempotency_seconds`` it is answered 202 with
``"duplicate": true`` and not emitted again. Without a key it is derived from the body's
SHA-256 (canonical JSON) and the arrival time: two identical posts are two events.
"""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, datetime
from http import HTTPStatus
from ipaddress import ip_address
from typing import Any

from pydantic import Field, field_validator

from aios.catalog.base import (
    Category,
    EventRole,
    NodeConfig,
    NodeManifest,
    NodeType,
    PortKind,
    PortSpec,
    Tier,
)
from aios.events import webhooks
from aios.events.secrets import SecretName, SecretNotFound, env_var_for
from aios.events.task import Emit, Event, PermanentError, TaskServices
from aios.events.webhooks import AuthMode, Endpoint, WebhookError, WebhookServer
from aios.runtime.events import event_key

EVENT_TYPE = "webhook.received"
PATH_PATTERN = r"^/hooks/[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$"


class WebhookConfig(NodeConfig):
    """Receive JSON posted by another system (alarm panel, ERP, IoT platform, script)."""

    path: str = Field(
        pattern=PATH_PATTERN,
        title="Path",
        description="URL path of this webhook, '/hooks/<name>' (letters, digits, '_', '.', "
        "'-'), e.g. '/hooks/door-alarm'.",
    )
    secret_name: SecretName = Field(
        title="Shared secret",
        description="Name of the secret the sender must prove it holds (never the secret itself).",
    )
    auth: AuthMode = Field(
        default="hmac_sha256",
        title="Secret check",
        description="'hmac_sha256': header X-AIOS-Signature = 'sha256=' + hex HMAC-SHA256 "
        "of the raw body keyed with the secret (the secret never travels); 'token': the "
        "secret itself in header X-AIOS-Token (only behind HTTPS).",
    )
    host: str = Field(
        default="127.0.0.1",
        title="Listen address",
        description="IP address to listen on: 127.0.0.1 for this machine only (e.g. behind "
        "a reverse proxy), 0.0.0.0 or :: for every interface.",
    )
    port: int = Field(
        default=8787,
        ge=0,
        le=65_535,
        title="Port",
        description="TCP port of the webhook server, shared by every webhook node with the "
        "same address and port (0: any free port).",
    )
    max_body_bytes: int = Field(
        default=262_144,
        ge=2,
        le=16_777_216,
        title="Largest body (bytes)",
        description="Bodies larger than this many bytes are refused with 413.",
    )
    fields: list[str] = Field(
        default_factory=list,
        max_length=100,
        title="Fields",
        description="Top-level fields of the body to keep in the event's data; empty: all.",
    )
    source_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        title="Source id",
        description="Device or system named as the event's source (empty: the path).",
    )
    idempotency_seconds: float = Field(
        default=86_400.0,
        ge=0.0,
        le=7 * 86_400.0,
        title="Remember idempotency keys for (s)",
        description="A delivery repeating an idempotency key seen within this many seconds "
        "is acknowledged but not emitted again (0: emit every delivery).",
    )

    @field_validator("host")
    @classmethod
    def _ip_literal(cls, value: str) -> str:
        try:
            ip_address(value)
        except ValueError as err:
            raise ValueError(
                f"listen address must be an IP address such as 127.0.0.1 or ::1, got {value!r}"
            ) from err
        return value

    @field_validator("fields")
    @classmethod
    def _valid_fields(cls, value: list[str]) -> list[str]:
        if any(not name.strip() for name in value):
            raise ValueError("field names must not be empty")
        return list(dict.fromkeys(value))


MANIFEST = NodeManifest(
    type="aios/webhook@1",
    category=Category.INPUT,
    tier=Tier.EVENT,
    title="Webhook",
    description="An HTTP endpoint other systems POST JSON to, checked with a shared secret; "
    "each accepted body is an event.",
    icon="webhook",
    outputs=(
        PortSpec(
            name="events",
            kind=PortKind.EVENT,
            title="Received",
            description="One 'webhook.received' event per accepted POST; the body in data.",
        ),
    ),
)


def _utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class WebhookSource:
    """Registers the configured path on the shared webhook server and emits each accepted body.

    Attributes:
        config: the validated configuration.
        source_id: ``config.source_id``, or the path.
    """

    def __init__(self, config: WebhookConfig, services: TaskServices) -> None:
        self.config = config
        self.services = services
        self.source_id = config.source_id or config.path
        self.log = services.logger.getChild("webhook")
        self._server: WebhookServer | None = None
        self._emit: Emit | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The URL senders post to (the bound port when the config asks for port 0).

        Raises:
            RuntimeError: the node is not started.
        """
        if self._server is None:
            raise RuntimeError("the webhook node is not started")
        return self._server.url(self.config.path)

    def start(self, emit: Emit) -> None:
        """Register the path (starting the shared server if needed) and emit accepted bodies.

        Raises:
            PermanentError: the secret is not set, the path is taken, or the port is in use.
        """
        cfg = self.config
        with self._lock:
            if self._server is not None:
                return
            try:
                secret = self.services.secrets.get(cfg.secret_name)
            except SecretNotFound as err:
                raise PermanentError(
                    f"set secret '{cfg.secret_name}' ({env_var_for(cfg.secret_name)}) to the "
                    f"shared secret senders of {cfg.path} use"
                ) from err
            endpoint = Endpoint(
                path=cfg.path,
                auth=cfg.auth,
                secret=secret,
                max_body_bytes=cfg.max_body_bytes,
                on_accept=self._accept,
            )
            self._emit = emit
            try:
                self._server = webhooks.register(cfg.host, cfg.port, endpoint)
            except ValueError as err:
                raise PermanentError(f"{err}; give each webhook node its own path") from err
            except OSError as err:
                raise PermanentError(
                    f"cannot listen on {cfg.host}:{cfg.port} for webhooks: {err}; choose "
                    "another port or stop the program using it"
                ) from err
        self.log.info("webhook: receiving on %s (%s)", self.url, cfg.auth)

    def stop(self) -> None:
        """Unregister the path (stopping the server if it was the last); safe to call twice."""
        with self._lock:
            server, self._server = self._server, None
            self._emit = None
        if server is not None:
            webhooks.unregister(server, self.config.path)

    def to_event(self, body: dict[str, Any], key: str | None) -> Event:
        """Return the event for an accepted body (see the module doc for ``event_id``)."""
        received = self.services.now()
        if key is not None:
            event_id = event_key(EVENT_TYPE, self.source_id, key)
        else:
            canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
            digest = hashlib.sha256(canonical.encode()).hexdigest()
            event_id = event_key(EVENT_TYPE, self.source_id, digest, _utc_iso(received))
        fields = self.config.fields
        data = {k: body[k] for k in fields if k in body} if fields else dict(body)
        return {
            "event_id": event_id,
            "event_type": EVENT_TYPE,
            "time": _utc_iso(received),
            "source_id": self.source_id,
            "data": data,
        }

    def _accept(self, body: dict[str, Any], key: str | None) -> dict[str, Any]:
        """Emit the event for a checked body; runs in the server's request thread."""
        emit = self._emit
        if emit is None:
            raise WebhookError(HTTPStatus.SERVICE_UNAVAILABLE, "the webhook is stopping")
        event = self.to_event(body, key)
        event_id = event["event_id"]
        state, namespace = self.services.state, f"webhook/{self.source_id}"
        claimed = key is not None and self.config.idempotency_seconds > 0
        if claimed and not state.put_if_absent(
            namespace, event_id, event["time"], self.config.idempotency_seconds
        ):
            return {"event_id": event_id, "duplicate": True}
        try:
            emit(event)
        except Exception as err:
            if claimed:
                state.delete(namespace, event_id)
            self.log.error(
                "webhook %s: the pipeline did not take event %s: %s: %s",
                self.config.path,
                event_id,
                type(err).__name__,
                err,
            )
            raise WebhookError(
                HTTPStatus.SERVICE_UNAVAILABLE, "the pipeline could not take the event; retry"
            ) from err
        return {"event_id": event_id}


NODE = NodeType(
    manifest=MANIFEST,
    config_model=WebhookConfig,
    implementation=WebhookSource,
    event_role=EventRole.SOURCE,
)
