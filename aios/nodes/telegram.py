"""``aios/telegram@1`` — sends each event to Telegram chats with python-telegram-bot.

Message
-------
The text is a Jinja2 template with ``event`` and ``context``. With ``format: markdown_v2``
(default) the template's own text is Telegram MarkdownV2 written by the operator (``*bold*``,
``_italic_``; the reserved characters ``_*[]()~`>#+-=|{}.!`` escaped with ``\\`` where meant
literally) and every inserted value — ``{{ event.zone }}``, ``{{ event.dwell_seconds |
round(1) }}`` — is escaped with :func:`telegram.helpers.escape_markdown` (version 2), so a
zone called ``dock_1 (north).`` cannot break the message. If Telegram still refuses the
markup ("can't parse entities", e.g. an unescaped ``!`` in the template's own text), the
message is rendered again without markup and sent as plain text; the result's
``detail.format`` says ``plain``. With ``format: plain`` nothing is escaped or parsed.

Limits (Bot API, https://core.telegram.org/bots/api#sendmessage and #sendphoto): a message
text is 1–4096 characters and a photo caption 0–1024, counted after entity parsing. Texts are
split at line boundaries where possible (then at spaces, then anywhere but inside a ``\\x``
escape); lengths are counted in UTF-16 code units, which is never less than Telegram's count.
With ``send_snapshot`` and an event ``snapshot``, the photo goes first with as much of the text
as fits the caption; the rest follows as messages.

Each part sent to each chat is remembered (state namespace ``progress/<pipeline>/<node>``,
per execution and event), so a retry after a rate limit or a failure part-way does not send
the earlier parts again.

Errors: flood control (HTTP 429 ``retry_after``) → :class:`~aios.events.actions.RetryAfter`;
timeouts and network errors → :class:`~aios.events.task.TransientError`; a rejected token, a
chat the bot cannot write to (``Forbidden``), a bad request or a migrated chat →
:class:`~aios.events.task.PermanentError`. One chat's permanent failure does not stop the
others; the error lists every failed chat.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import warnings
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from pydantic import Field, field_validator

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
from aios.events.state import StateStore
from aios.events.task import PermanentError, TaskRequest, TransientError

if TYPE_CHECKING:
    from telegram import Bot

TELEGRAM_API_URL = "https://api.telegram.org"
"""The official Bot API server; methods are ``<url>/bot<token>/<method>``."""

MESSAGE_LIMIT = 4096
"""Longest message text (Bot API ``sendMessage``: 1-4096 characters after entities parsing)."""

CAPTION_LIMIT = 1024
"""Longest photo caption (Bot API ``sendPhoto``: 0-1024 characters after entities parsing)."""

PROGRESS_TTL_SECONDS = 86_400.0
"""How long the parts already sent for one execution are remembered (retries end sooner)."""

DEFAULT_MESSAGE = (
    "*{{ event.event_type }}* on {{ event.source_id }}"
    "{% if event.zone %} in {{ event.zone }}{% endif %}"
    "{% if event.class_name %}: {{ event.class_name }}{% endif %}"
    "{% if event.dwell_seconds %}, {{ event.dwell_seconds | round(1) }} s{% endif %}\n"
    "{{ context.pipeline }}, {{ context.site.date }} {{ context.site.time }}"
)

ChatId = Annotated[
    str,
    Field(
        pattern=r"^(-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31})$",
        description="A chat id (e.g. '123456789', '-1001234567890' for groups) or a public "
        "channel's @username.",
    ),
]

T = TypeVar("T")


def utf16_len(text: str) -> int:
    """Return the length of ``text`` in UTF-16 code units (how Telegram measures text)."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def _fitting(text: str, limit: int) -> int:
    """Return the length of the longest prefix of ``text`` within ``limit`` UTF-16 units."""
    units = 0
    for i, ch in enumerate(text):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > limit:
            return i
    return len(text)


def cut_message(text: str, limit: int) -> tuple[str, str]:
    """Return ``(head, rest)``: the first part of ``text`` within ``limit`` UTF-16 units.

    Cuts at the last line break that fits (the break is dropped), else the last space
    (dropped), else at the limit — moved back one character if it would separate a MarkdownV2
    ``\\`` from the character it escapes.

    Raises:
        ValueError: ``limit`` is less than 2.
    """
    if limit < 2:
        raise ValueError("limit must be at least 2")
    if utf16_len(text) <= limit:
        return text, ""
    n = _fitting(text, limit)
    head = text[:n]
    cut = max(head.rfind("\n"), 0) or max(head.rfind(" "), 0)
    if cut > 0:
        return text[:cut], text[cut + 1 :]
    trailing = len(head) - len(head.rstrip("\\"))
    cut = n - 1 if trailing % 2 == 1 and n > 1 else n
    return text[:cut], text[cut:]


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` UTF-16 code units (see :func:`cut_message`).

    Blank parts are left out (Telegram rejects empty messages).
    """
    parts: list[str] = []
    rest = text
    while rest:
        head, rest = cut_message(rest, limit)
        if head.strip():
            parts.append(head)
    return parts


class Progress:
    """What one execution has already sent for an event, kept in the state store.

    Keys are ``<execution>/<event_id>/<part...>`` in namespace ``progress/<pipeline>/<node>``
    and expire after :data:`PROGRESS_TTL_SECONDS`. Without an ``event_id`` the record lives
    in this object only (one attempt).
    """

    def __init__(self, state: StateStore, request: TaskRequest) -> None:
        event_id = request.event.get("event_id")
        execution = request.context.get("execution") or ""
        self._state = state if event_id else None
        self._local: dict[str, Any] = {}
        self._namespace = f"progress/{request.pipeline}/{request.node_id}"
        self._prefix = f"{execution}/{event_id}"

    def _key(self, parts: tuple[object, ...]) -> str:
        return "/".join((self._prefix, *map(str, parts)))

    def get(self, *parts: object) -> Any | None:
        """Return what was recorded for this part (``None``: not done)."""
        if self._state is None:
            return self._local.get(self._key(parts))
        return self._state.get(self._namespace, self._key(parts))

    def put(self, value: Any, *parts: object) -> None:
        """Record that this part is done (``value`` must not be ``None``)."""
        if self._state is None:
            self._local[self._key(parts)] = value
        else:
            self._state.put(self._namespace, self._key(parts), value, PROGRESS_TTL_SECONDS)


def _escape_value(value: Any) -> str:
    """Jinja ``finalize``: escape an inserted value for MarkdownV2 (``None`` renders empty)."""
    from telegram.helpers import escape_markdown

    if value is None or isinstance(value, jinja2.Undefined):
        return ""
    return escape_markdown(str(value), version=2)


_MARKDOWN_TEMPLATES = SandboxedEnvironment(
    autoescape=False, keep_trailing_newline=False, finalize=_escape_value
)


@functools.lru_cache(maxsize=256)
def _markdown_template(text: str) -> jinja2.Template:
    return _MARKDOWN_TEMPLATES.from_string(text)


def render_markdown_v2(template: str, request: TaskRequest) -> str:
    """Render a message template with every inserted value escaped for MarkdownV2.

    Raises:
        PermanentError: the template fails while rendering.
    """
    try:
        return _markdown_template(template).render(event=request.event, context=request.context)
    except (jinja2.TemplateError, TypeError, ValueError) as err:
        raise PermanentError(f"message template failed: {err}") from err


def _check_api_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL, e.g. https://api.telegram.org")
    return value.rstrip("/")


class TelegramConfig(ActionConfig):
    """Send events to Telegram chats through a bot."""

    bot_token_secret: SecretName = Field(
        default="telegram_bot_token",
        title="Bot token secret",
        description="Name of the secret holding the bot token from @BotFather.",
    )
    chat_ids: list[ChatId] = Field(
        default_factory=list,
        max_length=20,
        title="Chats",
        description="Chats that receive the message: chat ids (negative for groups) or "
        "@channel usernames. The bot must be a member (or started by the user).",
    )
    message: Template = Field(
        default=DEFAULT_MESSAGE,
        min_length=1,
        max_length=10_000,
        title="Message",
        description="Jinja2 template with 'event' and 'context', e.g. "
        "'*{{ event.event_type }}* in {{ event.zone }}'. With MarkdownV2 the inserted values "
        "are escaped; escape reserved characters of your own text with a backslash.",
    )
    format: Literal["markdown_v2", "plain"] = Field(
        default="markdown_v2",
        title="Format",
        description="'markdown_v2': the template's text is Telegram MarkdownV2; 'plain': no "
        "formatting.",
    )
    send_snapshot: bool = Field(
        default=True,
        title="Send snapshot",
        description="Send the event's snapshot as a photo with the message as its caption "
        f"(captions hold {CAPTION_LIMIT} characters; the rest follows as a message).",
    )
    disable_notification: bool = Field(
        default=False,
        title="Silent",
        description="Deliver without a notification sound.",
    )
    api_base_url: str = Field(
        default=TELEGRAM_API_URL,
        max_length=500,
        title="Bot API server",
        description="Base URL of the Bot API server (a self-hosted telegram-bot-api server, "
        "or the official one).",
    )

    @field_validator("api_base_url")
    @classmethod
    def _valid_api_url(cls, value: str) -> str:
        return _check_api_url(value)

    @field_validator("chat_ids")
    @classmethod
    def _unique_chats(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


MANIFEST = NodeManifest(
    type="aios/telegram@1",
    category=Category.OUTPUT,
    tier=Tier.EVENT,
    title="Telegram",
    description="Sends a message (and the snapshot as a photo) to Telegram chats through a bot.",
    icon="send",
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


@dataclass(frozen=True)
class _Part:
    """One Bot API call: a text message, or a photo with a caption."""

    text: str
    photo: bytes | None = None


class _MarkupRejected(Exception):
    """Telegram could not parse the MarkdownV2 of a part."""


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code, on a private event loop.

    Inside a thread that already runs a loop, the coroutine runs on a new loop in a helper
    thread instead (``asyncio.run`` refuses nested loops).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _clean(err: Exception, bot: Bot) -> str:
    """Return a library error's message with the bot token masked."""
    return redact(getattr(err, "message", None) or str(err), [bot.token])


def _seconds(value: int | float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class TelegramAction(Action[TelegramConfig]):
    """Sends the rendered message (and snapshot) to each configured chat."""

    channel = "telegram"

    def _token(self) -> str:
        return self.secret(self.config.bot_token_secret, "the bot token from @BotFather")

    def check_configured(self, request: TaskRequest) -> None:
        """Raise :class:`NotConfigured` when the bot token or the chats are missing."""
        self._token()
        if not self.config.chat_ids:
            raise NotConfigured("add the chat ids that should receive messages to 'chat_ids'")

    # --- building the messages -------------------------------------------------------------

    def _snapshot(self, request: TaskRequest) -> bytes | None:
        ref = request.event.get("snapshot")
        if not self.config.send_snapshot or not isinstance(ref, str) or not ref:
            return None
        try:
            return self.services.blobs.read(ref)
        except OSError as err:
            self.services.logger.warning(
                "telegram node %s: snapshot %s unreadable (%s); sending text only",
                request.node_id,
                ref,
                err,
            )
            return None

    def _parts(self, text: str, photo: bytes | None) -> list[_Part]:
        """Return the calls that send ``text`` (and ``photo``) within Telegram's limits.

        Raises:
            PermanentError: nothing to send (the template rendered blank text, no photo).
        """
        if photo is None:
            parts = [_Part(p) for p in split_message(text, MESSAGE_LIMIT)]
            if not parts:
                raise PermanentError("the message template rendered empty text; check 'message'")
            return parts
        caption, rest = cut_message(text, CAPTION_LIMIT)
        return [
            _Part(caption if caption.strip() else "", photo),
            *(_Part(p) for p in split_message(rest, MESSAGE_LIMIT)),
        ]

    # --- sending ---------------------------------------------------------------------------

    async def _call(self, bot: Bot, chat: str, part: _Part, markdown: bool) -> int:
        from telegram import error as tg

        cfg = self.config
        parse_mode = "MarkdownV2" if markdown else None
        try:
            if part.photo is not None:
                message = await bot.send_photo(
                    chat_id=chat,
                    photo=part.photo,
                    filename="snapshot.jpg",
                    caption=part.text or None,
                    parse_mode=parse_mode,
                    disable_notification=cfg.disable_notification,
                )
            else:
                message = await bot.send_message(
                    chat_id=chat,
                    text=part.text,
                    parse_mode=parse_mode,
                    disable_notification=cfg.disable_notification,
                )
        except tg.RetryAfter as err:  # before the others: carries the wait
            with warnings.catch_warnings():  # int-valued retry_after is deprecated in v22.2
                warnings.simplefilter("ignore", DeprecationWarning)
                wait = _seconds(err.retry_after)
            raise RetryAfter(wait, f"Telegram flood control: retry after {wait:g} s") from err
        except tg.ChatMigrated as err:
            raise PermanentError(
                f"chat {chat} became the supergroup {err.new_chat_id}; put that id in chat_ids"
            ) from err
        except tg.InvalidToken as err:
            raise PermanentError(
                f"Telegram rejected the bot token in secret '{cfg.bot_token_secret}'; set the "
                "token @BotFather gave"
            ) from err
        except tg.Forbidden as err:
            raise PermanentError(
                f"the bot may not write to chat {chat} ({_clean(err, bot)}); add the bot to "
                "the chat or have the user start it"
            ) from err
        except tg.BadRequest as err:  # subclass of NetworkError: caught before it
            if markdown and "can't parse entities" in err.message.lower():
                raise _MarkupRejected(err.message) from err
            raise PermanentError(
                f"Telegram refused the message to chat {chat}: {_clean(err, bot)}"
            ) from err
        except tg.TimedOut as err:
            raise TransientError(
                f"Telegram did not answer within {cfg.timeout_seconds:g} s"
            ) from err
        except tg.NetworkError as err:
            raise TransientError(f"could not reach Telegram: {_clean(err, bot)}") from err
        except tg.TelegramError as err:
            raise PermanentError(f"Telegram error for chat {chat}: {_clean(err, bot)}") from err
        return message.message_id

    async def _deliver(
        self, token: str, request: TaskRequest, parts: list[_Part], markdown: bool
    ) -> dict[str, list[int]]:
        from telegram import Bot
        from telegram.request import HTTPXRequest

        cfg = self.config
        timeout = cfg.timeout_seconds
        http = HTTPXRequest(
            connection_pool_size=4,
            connect_timeout=timeout,
            read_timeout=timeout,
            write_timeout=timeout,
            pool_timeout=timeout,
            media_write_timeout=timeout,
        )
        bot = Bot(
            token,
            base_url=f"{cfg.api_base_url}/bot",
            base_file_url=f"{cfg.api_base_url}/file/bot",
            request=http,
            get_updates_request=http,
        )
        progress = Progress(self.services.state, request)
        fmt = "markdown_v2" if markdown else "plain"
        sent: dict[str, list[int]] = {}
        failed: list[str] = []
        await http.initialize()  # no getMe: each call is one request
        try:
            for chat in cfg.chat_ids:
                done = progress.get(chat, "done")
                if done is not None:  # all parts went out on an earlier attempt
                    sent[chat] = done
                    continue
                ids: list[int] = []
                try:
                    for index, part in enumerate(parts):
                        earlier = progress.get(chat, fmt, index)
                        if earlier is None:
                            earlier = await self._call(bot, chat, part, markdown)
                            progress.put(earlier, chat, fmt, index)
                        ids.append(earlier)
                except PermanentError as err:  # this chat only; the others still get it
                    failed.append(err.message)
                    continue
                progress.put(ids, chat, "done")
                sent[chat] = ids
        finally:
            await http.shutdown()
        if failed:
            served = f" (sent to {', '.join(sent)})" if sent else ""
            raise PermanentError(
                f"Telegram failed for {len(failed)} chat(s){served}: " + "; ".join(failed)
            )
        return sent

    def _send_as(
        self, token: str, request: TaskRequest, photo: bytes | None, markdown: bool
    ) -> dict[str, list[int]]:
        if markdown:
            text = render_markdown_v2(self.config.message, request)
        else:
            text = render(self.config.message, request)
        return _run(self._deliver(token, request, self._parts(text, photo), markdown))

    def send(self, request: TaskRequest) -> dict[str, Any]:
        """Send the message to every chat; return ``chats``, ``message_ids``, ``format``, ``photo``.

        Raises:
            RetryAfter: Telegram's flood control asked to wait.
            TransientError: timeout or network failure.
            PermanentError: token rejected, chat not writable, request refused, empty text.
        """
        token = self._token()
        photo = self._snapshot(request)
        markdown = self.config.format == "markdown_v2"
        sent: dict[str, list[int]] | None = None
        if markdown:
            try:
                sent = self._send_as(token, request, photo, markdown=True)
            except _MarkupRejected as rejected:
                self.services.logger.warning(
                    "telegram node %s: MarkdownV2 refused (%s); sending plain text",
                    request.node_id,
                    rejected,
                )
                markdown = False
        if sent is None:
            sent = self._send_as(token, request, photo, markdown=False)
        return {
            "chats": list(sent),
            "message_ids": sent,
            "format": "markdown_v2" if markdown else "plain",
            "photo": photo is not None,
        }


NODE = NodeType(
    manifest=MANIFEST,
    config_model=TelegramConfig,
    implementation=TelegramAction,
    event_role=EventRole.ACTION,
)
