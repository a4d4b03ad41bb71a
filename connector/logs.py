"""The connector's logs: JSON lines on standard error, without secrets.

The format and the redaction are those of :mod:`aios.up.logs` (fields named like secrets,
secret query parameters, URL passwords such as ``rtsp://admin:…@camera``). The connector
also handles device private keys and bearer tokens, so on top of that a PEM private key
block (``-----BEGIN … PRIVATE KEY-----`` to its ``END`` line, or to the end of the text
when cut short) and the token after ``Bearer`` are replaced by ``[redacted]`` wherever they
appear: in the message, in extra fields (nested too) and in tracebacks.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, TextIO

from aios.up import logs as _base

REDACTED = _base.REDACTED

# RFC 7468 labels: "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY"…
_PEM_PRIVATE_KEY = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----.*?(?:-----END \1-----|\Z)", re.DOTALL
)
_BEARER = re.compile(r"(\bBearer\s+)[A-Za-z0-9._~+/=-]+", re.I)


def redact_text(text: str) -> str:
    """``text`` without secrets: :func:`aios.up.logs.redact_text` plus PEM private keys
    and bearer tokens."""
    text = _PEM_PRIVATE_KEY.sub(lambda m: f"-----BEGIN {m.group(1)}-----{REDACTED}", text)
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    return _base.redact_text(text)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: _scrub(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    return value


class ConnectorJsonFormatter(_base.JsonFormatter):
    """:class:`aios.up.logs.JsonFormatter` with the redactions of :func:`redact_text`
    applied to every string of the entry."""

    def format(self, record: logging.LogRecord) -> str:
        entry = json.loads(super().format(record))
        return json.dumps(_scrub(entry), default=str, ensure_ascii=False)


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Send every logger's records as JSON lines to ``stream`` (default: standard error).

    ``level`` is a level name in any case (``debug``, ``info``, ``warning``, ``error``).
    pymodbus and paho-mqtt log every retry: below ``warning`` only when ``level`` is
    ``debug``.

    Raises:
        ValueError: ``level`` is not a level name.
    """
    _base.configure_logging(level, stream=stream)
    root = logging.getLogger()
    for handler in root.handlers:
        handler.setFormatter(ConnectorJsonFormatter())
    chatty = logging.DEBUG if root.level <= logging.DEBUG else max(root.level, logging.WARNING)
    for name in ("pymodbus", "paho", "paho.mqtt"):
        logging.getLogger(name).setLevel(chatty)
