"""The contract every action node shares (notifications, HTTP POST, PLC write, dashboard).

An action, per event:

1. does nothing if ``disabled`` (result ``disabled``);
2. reports ``not_configured`` — without failing the run — when a credential or a
   recipient it needs is missing (see :class:`NotConfigured`);
3. drops an event it has already acted on (same ``event_id``, result ``duplicate``);
4. acts at most once per ``cooldown_seconds`` per pipeline node and source device (or per
   pipeline node, with ``cooldown_scope: pipeline``); an event inside the cooldown gets
   ``throttled``. Both checks are conditional writes to the state store, so concurrent
   executions cannot both act;
5. sends, retrying in the task when the service answers "retry after N s" (HTTP 429 and
   ``retry_after``) as long as N is at most ``retry.max_retry_after_seconds``;
6. returns a result (``sent`` with details) that the state machine records on the
   execution, or raises :class:`~aios.events.task.TransientError` /
   :class:`~aios.events.task.PermanentError`; the compiled ``Retry`` retries transient
   errors with backoff and ``Catch`` records the failure with its reason.

Message templates are Jinja2 rendered in a sandbox, with ``event`` and ``context`` in scope:
``"{{ event.event_type }} in {{ event.zone }} ({{ event.dwell_seconds | round(1) }} s)"``.
A missing or null field renders as empty text (also through ``round`` and nested lookups
such as ``event.data.reading.value``); attributes the sandbox deems unsafe (``__class__``...)
render empty too, and calling through one fails the send as a permanent error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
)

from aios.catalog.base import NodeConfig
from aios.events.secrets import SecretNotFound, env_var_for
from aios.events.task import PermanentError, TaskRequest, TaskServices, TransientError

ActionStatus = Literal["sent", "recorded", "throttled", "duplicate", "disabled", "not_configured"]
"""What an action did with an event (a failure is an ASL error caught by the state machine)."""


class NotConfigured(Exception):
    """The action lacks a credential or recipient; the result says what to set."""


class RetryAfter(TransientError):
    """The service asked to retry after ``seconds`` (HTTP 429 ``Retry-After``, ``retry_after``)."""

    def __init__(self, seconds: float, message: str) -> None:
        super().__init__(message)
        self.seconds = max(0.0, float(seconds))


def _empty_if_none(value: Any) -> Any:
    return "" if value is None else value


# Immutable: a template cannot change the event it renders (``event.update(...)``).
# ChainableUndefined: ``event.data.a.b`` with ``a`` missing is empty, not an error.
_TEMPLATES = ImmutableSandboxedEnvironment(
    autoescape=False,
    keep_trailing_newline=False,
    undefined=jinja2.ChainableUndefined,
    finalize=_empty_if_none,
)
_jinja_round = _TEMPLATES.filters["round"]


def _round(value: Any, *args: Any, **kwargs: Any) -> Any:
    """Jinja's ``round``, except that a missing or null field stays empty."""
    if value is None or isinstance(value, jinja2.Undefined):
        return ""
    return _jinja_round(value, *args, **kwargs)


_TEMPLATES.filters["round"] = _round
_TEMPLATE_CACHE: dict[str, jinja2.Template] = {}
_TEMPLATE_LOCK = threading.Lock()


def _check_template(text: str) -> str:
    try:
        _TEMPLATES.parse(text)
    except jinja2.TemplateSyntaxError as err:
        raise ValueError(
            f"template syntax error on line {err.lineno}: {err.message}; "
            "fields are written {{ event.zone }}"
        ) from err
    return text


Template = Annotated[str, AfterValidator(_check_template)]
"""A config field holding a Jinja2 message template (syntax checked when the config is)."""


def render(template: str, request: TaskRequest) -> str:
    """Render a message template with ``event`` and ``context`` of the request.

    Missing and null fields render as empty text. Raises :class:`PermanentError` if the
    template fails while rendering (e.g. arithmetic on a missing field, a filter applied to
    the wrong type, a call through an attribute the sandbox refuses).
    """
    with _TEMPLATE_LOCK:
        compiled = _TEMPLATE_CACHE.get(template)
        if compiled is None:
            compiled = _TEMPLATES.from_string(template)
            _TEMPLATE_CACHE[template] = compiled
    try:
        return compiled.render(event=request.event, context=request.context)
    except jinja2.TemplateError as err:
        raise PermanentError(f"message template failed: {err}") from err
    except (TypeError, ValueError) as err:
        raise PermanentError(f"message template failed: {err}") from err


class RetryPolicy(BaseModel):
    """How a failed send is retried (compiled into the Task's ``Retry``)."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(
        default=3,
        ge=0,
        le=10,
        title="Retries",
        description="Retries after the first attempt for transient failures (0: none).",
    )
    interval_seconds: int = Field(
        default=2,
        ge=1,
        le=300,
        title="First retry after (s)",
        description="Seconds before the first retry.",
    )
    backoff_rate: float = Field(
        default=2.0,
        ge=1.0,
        le=10.0,
        title="Backoff rate",
        description="Each retry waits this many times longer than the one before.",
    )
    max_retry_after_seconds: float = Field(
        default=30.0,
        ge=0,
        le=300,
        title="Honour retry-after up to (s)",
        description=(
            "When a service answers 'retry after N seconds' (HTTP 429), wait and retry if N "
            "is at most this; otherwise the send fails as rate limited."
        ),
    )


class ActionConfig(NodeConfig):
    """Fields every action node has."""

    disabled: bool = Field(
        default=False,
        title="Disabled",
        description="Skip this action (the result says 'disabled').",
    )
    cooldown_seconds: float = Field(
        default=60.0,
        ge=0,
        le=86_400,
        title="Cooldown (s)",
        description="After acting, ignore further events for this long (0: act on every event).",
    )
    cooldown_scope: Literal["source", "pipeline"] = Field(
        default="source",
        title="Cooldown per",
        description="'source': one cooldown per camera or device; 'pipeline': one for all.",
    )
    dedup_seconds: float = Field(
        default=3_600.0,
        ge=0,
        le=7 * 86_400,
        title="Remember events for (s)",
        description="An event already acted on within this time is dropped (0: no check).",
    )
    timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=120,
        title="Timeout (s)",
        description="Longest wait for the service to answer one attempt.",
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy, title="Retry")


C = TypeVar("C", bound=ActionConfig)


class Action(Generic[C]):
    """Base of action nodes: implements the shared contract around :meth:`send`.

    Subclasses set ``channel`` and implement :meth:`send` (and :meth:`check_configured`
    when they need credentials or recipients).
    """

    channel: ClassVar[str] = "action"
    sent_status: ClassVar[ActionStatus] = "sent"

    def __init__(self, config: C, services: TaskServices) -> None:
        self.config = config
        self.services = services

    def check_configured(self, request: TaskRequest) -> None:
        """Raise :class:`NotConfigured` naming what to set when a secret or recipient is missing."""

    def secret(self, name: str, what: str) -> str:
        """Return secret ``name``; raise :class:`NotConfigured` saying it should hold ``what``."""
        try:
            return self.services.secrets.get(name)
        except SecretNotFound as err:
            raise NotConfigured(
                f"set secret '{name}' ({env_var_for(name)} or the secrets file) to {what}"
            ) from err

    def send(self, request: TaskRequest) -> dict[str, Any]:
        """Perform the action once; return details for the result.

        Raises:
            RetryAfter: the service asked to wait.
            TransientError / PermanentError: the attempt failed.
        """
        raise NotImplementedError

    # --- the contract ----------------------------------------------------------------------

    def _result(
        self, request: TaskRequest, status: ActionStatus, reason: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        return {
            "node_id": request.node_id,
            "channel": self.channel,
            "status": status,
            "reason": reason,
            "event_id": request.event.get("event_id"),
            "at": self.services.now().isoformat(),
            **extra,
        }

    def _claim(self, request: TaskRequest) -> tuple[list[Callable[[], None]], str | None]:
        """Take the dedup and cooldown claims; return undo actions and a refusal status."""
        state = self.services.state
        undo: list[Callable[[], None]] = []
        cfg = self.config
        base = f"{request.pipeline}/{request.node_id}"
        event_id = str(request.event.get("event_id") or "")
        if cfg.dedup_seconds > 0 and event_id:
            dedup_ns = f"dedup/{base}"
            if not state.put_if_absent(dedup_ns, event_id, True, cfg.dedup_seconds):
                return undo, "duplicate"
            undo.append(lambda: state.delete(dedup_ns, event_id))
        if cfg.cooldown_seconds > 0:
            cooldown_ns = f"cooldown/{base}"
            key = request.source_id if cfg.cooldown_scope == "source" else "*"
            until = (self.services.now() + timedelta(seconds=cfg.cooldown_seconds)).isoformat()
            if not state.put_if_absent(cooldown_ns, key, until, cfg.cooldown_seconds):
                for u in undo:
                    u()
                return [], "throttled"
            undo.append(lambda: state.delete(cooldown_ns, key))
        return undo, None

    def _send_honouring_retry_after(self, request: TaskRequest) -> tuple[dict[str, Any], int]:
        limit = self.config.retry.max_retry_after_seconds
        attempts = 0

        def wait(state: RetryCallState) -> float:
            outcome = state.outcome
            err = outcome.exception() if outcome is not None else None
            return err.seconds if isinstance(err, RetryAfter) else 0.0

        def acceptable(err: BaseException) -> bool:
            return isinstance(err, RetryAfter) and err.seconds <= limit

        retrying = Retrying(
            retry=retry_if_exception_type(RetryAfter) & retry_if_exception(acceptable),
            wait=wait,
            stop=stop_after_attempt(self.config.retry.max_attempts + 1),
            sleep=self.services.sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    attempts += 1
                    detail = self.send(request)
        except RetryAfter as err:
            if err.seconds > limit:
                raise PermanentError(
                    f"rate limited: the service asked to retry after {err.seconds:g} s, more "
                    f"than retry.max_retry_after_seconds ({limit:g} s); raise that limit, or "
                    f"cooldown_seconds to send less often ({err.message})"
                ) from err
            raise
        return detail, attempts

    def run(self, request: TaskRequest) -> dict[str, Any]:
        """Apply the contract and :meth:`send`; return the result to record."""
        if self.config.disabled:
            return self._result(request, "disabled", "the action is disabled")
        try:
            self.check_configured(request)
        except (NotConfigured, SecretNotFound) as err:
            return self._result(request, "not_configured", str(err))
        undo, refused = self._claim(request)
        if refused == "duplicate":
            return self._result(request, "duplicate", "this event was already handled")
        if refused == "throttled":
            return self._result(
                request,
                "throttled",
                f"cooldown of {self.config.cooldown_seconds:g} s after the last "
                f"{self.channel} action",
            )
        try:
            detail, attempts = self._send_honouring_retry_after(request)
        except (NotConfigured, SecretNotFound) as err:
            for u in undo:
                u()
            return self._result(request, "not_configured", str(err))
        except BaseException:
            for u in undo:  # let the state machine's Retry claim again
                u()
            raise
        return self._result(request, self.sent_status, None, attempts=attempts, detail=detail)
