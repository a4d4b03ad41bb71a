"""Structured logs: one JSON object per line on standard error.

Each line holds ``time`` (ISO 8601 UTC, milliseconds), ``level``, ``logger``, ``message``,
the record's extra fields (``log.info("…", extra={"device_id": …})``) and, for errors,
``exception`` (the formatted traceback). Values of fields whose name says they hold a secret
(password, secret, token, authorization, cookie) are replaced by ``"[redacted]"``, and so
are secret query parameters (``?token=…``) and URL passwords (``mqtt://user:…@host``)
written in messages.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

_SECRET_FIELD = re.compile(r"pass(word)?|secret|token|authori[sz]ation|cookie|api[_-]?key", re.I)
REDACTED = "[redacted]"
# Credentials in URLs written into messages (uvicorn logs WebSocket request lines, whose
# query may carry ?token=): query parameters named like secrets, and URL user info.
_SECRET_QUERY = re.compile(
    r"([?&](?:access_|refresh_|id_)?(?:token|password|secret|api_?key)=)[^&\s\"']+", re.I
)
_URL_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@", re.I)

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_FIELDS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "color_message", "taskName"}
)


def redact_text(text: str) -> str:
    """``text`` with secret query parameters and URL passwords replaced by ``[redacted]``."""
    text = _SECRET_QUERY.sub(lambda m: m.group(1) + REDACTED, text)
    return _URL_USERINFO.sub(lambda m: m.group(1) + REDACTED + "@", text)


def _redact(key: str, value: Any) -> Any:
    if _SECRET_FIELD.search(key):
        return REDACTED
    if isinstance(value, dict):
        return {str(k): _redact(str(k), v) for k, v in value.items()}
    if isinstance(value, str):
        return redact_text(value)
    return value


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON (see the module docstring for the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                entry[key] = _redact(key, value)
        if record.exc_info:
            entry["exception"] = redact_text(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = redact_text(record.exc_text)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send every logger's records, as JSON lines, to ``stream`` (default: standard error).

    ``level`` is a level name (``DEBUG``, ``INFO``, ``WARNING``…). Replaces the root
    logger's handlers; uvicorn's and amqtt's loggers propagate to it.

    Raises:
        ValueError: ``level`` is not a level name.
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"log level {level!r} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # amqtt logs every connection and packet at INFO, the ASL interpreter every branch
    # worker it starts and ends, httpx every request it sends: their warnings are what
    # matter here.
    for name in ("amqtt", "transitions", "moto.stepfunctions", "httpx"):
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
