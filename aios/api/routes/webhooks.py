"""``POST /api/v1/webhooks/{pipeline_id}/{hook}``: a sender posts to a webhook input
(``aios/webhook@1``) of a pipeline's active run through the API.

On one machine a webhook node listens on its own HTTP server at
``http://<host>:<port>/hooks/<name>`` (:mod:`aios.nodes.webhook`). Through the API — the
way in the cloud, where nodes have no servers of their own — the same hook is
``/api/v1/webhooks/<pipeline id>/<name>``: ``<name>`` as in the node's path
``/hooks/<name>`` (the node's id is accepted too), ``<pipeline id>`` the pipeline whose
active run takes the event (or the id of the run itself). The URL does not change from
one run to the next.

The request is checked as the node's own server checks it (:mod:`aios.events.webhooks`),
in the same order, with the node's configuration of the run's revision: ``Content-Type:
application/json`` (415), a body of at most the node's ``max_body_bytes`` (413), the
shared secret proven with ``X-AIOS-Token`` or ``X-AIOS-Signature: sha256=<hex HMAC-SHA256
of the raw body>`` as the node's ``auth`` says (401; :meth:`~aios.events.webhooks.Endpoint.
check_secret`), a JSON object (400), an idempotency key of 1 to 255 printable ASCII
characters (header ``Idempotency-Key``, else the body's ``event_id``; 400). The event is
the node's (:meth:`aios.nodes.webhook.WebhookSource.to_event`: ``webhook.received``, its
``fields``, its ``source_id``); with an idempotency key, a delivery repeating one seen
within the node's ``idempotency_seconds`` is answered 202 with ``"duplicate": true`` and
not processed again.

The route takes no access token: the shared secret is the credential (permission
``grant="webhook_secret"``: the body reaches the route as sent, for the signature). The
event is handed to the run launcher's :class:`aios.services.EventInputs` port (the cloud:
an execution of the run's event state machine); a launcher without it — ``aios up``, whose
webhook nodes listen on their own servers — answers 501 saying where to post instead.

Answers: 202 ``{"accepted": true, "event_id", "execution_id"}`` (``"duplicate": true`` and
no execution id for a repeated key); 404 no such pipeline or run, no active run, or no such
webhook node in the running revision; 503 the node's secret is not set, or the run cannot
take events yet (retry).
"""

from __future__ import annotations

import logging
from email.message import Message
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler.openapi.params import Path
from pydantic import BaseModel, Field

from aios.api.errors import (
    ApiError,
    BadRequest,
    NotFoundApi,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from aios.api.permissions import API_PREFIX
from aios.api.routes.media import _request_bytes
from aios.domain import Run
from aios.services import EventInputs, InputUnavailable

if TYPE_CHECKING:
    from aios.api.app import ApiResolver
    from aios.nodes.webhook import WebhookConfig

log = logging.getLogger(__name__)


class PayloadTooLarge(ApiError):
    """413: the body is larger than the webhook node accepts."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    code = "body_too_large"


class NotImplementedApi(ApiError):
    """501: this process cannot hand webhook events to runs."""

    status = HTTPStatus.NOT_IMPLEMENTED
    code = "not_implemented"


class WebhookAccepted(BaseModel):
    """The answer to an accepted delivery."""

    accepted: bool = Field(True, description="Always true: the body was taken.")
    event_id: str = Field(description="The event's id (stable for a given idempotency key).")
    execution_id: str | None = Field(
        None, description="The execution that processes the event (none for a duplicate)."
    )
    duplicate: bool = Field(
        False, description="The idempotency key was seen recently: nothing new was done."
    )


TargetId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        description="The pipeline whose active run takes the event (or that run's id).",
    ),
]
Hook = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$",
        description="The webhook's name, as in the node's path '/hooks/<name>' (or the node's id).",
    ),
]


def _headers(raw: dict[str, object]) -> Message[str, str]:
    """The request's headers as the local server sees them (case-insensitive lookups)."""
    message: Message[str, str] = Message()
    headers = raw.get("headers")
    if isinstance(headers, dict):
        for name, value in headers.items():
            if isinstance(name, str) and isinstance(value, str):
                message[name] = value
    return message


def register(app: ApiResolver) -> None:
    """Add the webhook delivery route."""
    from aios.events.task import TaskServices
    from aios.events.webhooks import (
        Endpoint,
        WebhookError,
        idempotency_key,
        parse_body,
    )
    from aios.nodes.webhook import WebhookSource
    from aios.runs.service import PipelineRuns
    from aios.store.secrets import secret_chain

    services = app.services
    store = services.store

    def active_run(target_id: str) -> Run:
        pipeline = store.pipelines.get(target_id)
        if pipeline is not None:
            run = PipelineRuns(services).active(target_id)
            if run is None:
                raise NotFoundApi(
                    f"pipeline '{target_id}' has no active run: Play it to receive webhooks"
                )
            return run
        run = store.runs.get(target_id)
        if run is None:
            raise NotFoundApi(f"no pipeline or run '{target_id}'")
        if not run.status.active:
            raise NotFoundApi(f"run '{target_id}' is {run.status.value}: Play the pipeline again")
        return run

    def webhook_node(run: Run, hook: str) -> tuple[str, WebhookConfig]:
        from aios.nodes import CATALOG
        from aios.nodes.webhook import WebhookConfig
        from aios.pipeline.validation import validate_pipeline

        stored = store.pipelines.get_revision(run.pipeline_id, run.revision)
        if stored is None:
            raise NotFoundApi(f"pipeline '{run.pipeline_id}' has no revision {run.revision}")
        pipeline = validate_pipeline(stored.document, CATALOG)
        hooks = {
            node_id: resolved.config
            for node_id, resolved in sorted(pipeline.nodes.items())
            if isinstance(resolved.config, WebhookConfig)
        }
        for node_id, config in hooks.items():
            if config.path == f"/hooks/{hook}":
                return node_id, config
        if hook in hooks:
            return hook, hooks[hook]
        known = ", ".join(c.path.removeprefix("/hooks/") for c in hooks.values()) or "none"
        raise NotFoundApi(
            f"the running revision of pipeline '{run.pipeline_id}' has no webhook '{hook}' "
            f"(its webhooks: {known})"
        )

    @app.post(
        f"{API_PREFIX}/webhooks/<target_id>/<hook>",
        tags=["pipelines"],
        summary="Deliver a JSON body to a webhook input of a pipeline's active run",
        description="For other systems, not users: no access token, the webhook's shared "
        "secret instead ('X-AIOS-Signature: sha256=<hex HMAC-SHA256 of the raw body>', or "
        "the secret in 'X-AIOS-Token', as the node's 'Secret check' says). The body is a "
        "JSON object of at most the node's 'Largest body' bytes. 'Idempotency-Key' (or the "
        "body's 'event_id') makes a retried delivery a duplicate. 202: the event was taken "
        "(an execution of the run's event tier started). 501: this server's runs take "
        "webhooks on their own address (the node's host, port and path).",
        status_code=202,
    )
    def deliver_webhook(target_id: TargetId, hook: Hook) -> WebhookAccepted:
        raw = app.current_event.raw_event
        run = active_run(target_id)
        node_id, config = webhook_node(run, hook)
        launcher = services.launcher
        if not isinstance(launcher, EventInputs):
            raise NotImplementedApi(
                f"this server does not hand webhook events to runs; post to the node's own "
                f"address instead (http://{config.host}:{config.port}{config.path})"
            )
        headers = _headers(raw)

        try:
            if headers.get_content_type() != "application/json":
                raise WebhookError(
                    HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json"
                )
            body = _request_bytes(raw)
            if len(body) > config.max_body_bytes:
                raise WebhookError(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    f"body of {len(body)} bytes is larger than the limit of "
                    f"{config.max_body_bytes} bytes",
                )
            task_services = TaskServices(secrets=secret_chain(store.secrets), now=services.clock)
            try:
                secret = task_services.secrets.get(config.secret_name)
            except LookupError:
                log.error(
                    "webhook %s of run %s: secret %s not set", node_id, run.id, config.secret_name
                )
                raise ServiceUnavailable(
                    f"the webhook's shared secret '{config.secret_name}' is not set",
                    code="webhook_not_configured",
                ) from None
            source = WebhookSource(config, task_services)
            endpoint = Endpoint(
                path=config.path,
                auth=config.auth,
                secret=secret,
                max_body_bytes=config.max_body_bytes,
                on_accept=lambda _body, _key: {},
            )
            endpoint.check_secret(headers, body)
            value = parse_body(body)
            key = idempotency_key(headers, value)
        except WebhookError as err:
            raise _api_error(err) from None
        event = source.to_event(value, key)
        remember = config.idempotency_seconds if key is not None else 0.0
        try:
            execution = launcher.deliver(run.id, node_id, event, remember_seconds=remember)
        except InputUnavailable as err:
            raise ServiceUnavailable(str(err), code="run_not_ready") from None
        except Exception as err:
            log.error(
                "webhook %s of run %s: event %s not taken: %s",
                node_id,
                run.id,
                event["event_id"],
                type(err).__name__,
            )
            raise ServiceUnavailable(
                "the pipeline could not take the event; retry", code="unavailable"
            ) from None
        if execution is None:
            return WebhookAccepted(event_id=event["event_id"], duplicate=True)
        return WebhookAccepted(event_id=event["event_id"], execution_id=execution)


def _api_error(err: object) -> ApiError:
    """The API error of a :class:`aios.events.webhooks.WebhookError` (same status)."""
    status = getattr(err, "status", HTTPStatus.BAD_REQUEST)
    message = str(getattr(err, "message", "") or err)
    if status == HTTPStatus.UNAUTHORIZED:
        return _WebhookUnauthorized(message)
    if status == HTTPStatus.UNSUPPORTED_MEDIA_TYPE:
        return UnsupportedMediaType(message)
    if status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
        return PayloadTooLarge(message)
    return BadRequest(message, code="invalid_webhook_body")


class _WebhookUnauthorized(ApiError):
    """401 without ``WWW-Authenticate: Bearer``: the credential is the shared secret."""

    status = HTTPStatus.UNAUTHORIZED
    code = "webhook_unauthorized"


__all__ = ["WebhookAccepted", "register"]
