"""Reading request bodies: media type, text encoding, JSON syntax and nesting depth.

The API reads every request body here, before any route or Powertools' validation sees
it, so that a body the API cannot read is a 4xx in the API's error shape whatever carries
it (API Gateway to Lambda, or the local adapter of ``aios up``):

* a non-empty body must be sent as ``Content-Type: application/json`` (a ``charset``
  parameter, if any, must be ``utf-8``): anything else — a form, ``multipart/form-data``,
  ``text/plain``, or no ``Content-Type`` at all — is :class:`UnsupportedBody` (415). A
  missing type is refused rather than guessed: the usual sender of an untyped body is a
  tool defaulting to a form (``curl -d``), and guessing JSON would hide that;
* the body must be UTF-8 text (RFC 8259 §8.1) holding one JSON value, without ``NaN`` or
  ``Infinity`` (not JSON, RFC 8259 §6) and without unpaired UTF-16 surrogates (``"\\ud800"``:
  not Unicode, cannot be stored) — else :class:`InvalidJson` (400);
* it must nest objects and arrays at most :data:`MAX_BODY_DEPTH` levels — else
  :class:`BodyTooDeep` (422). Free-form fields are held to the tighter
  :data:`aios.domain.MAX_JSON_DEPTH` by the request models, which name the field.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from aios.domain import MAX_JSON_DEPTH

MAX_BODY_DEPTH = 256
"""Deepest nesting of objects and arrays read at all. Python's JSON parser recurses once
per level and counts against the interpreter's recursion limit (1000 frames by default),
so deeper bodies are refused before parsing. No valid request comes near: free-form values
nest at most :data:`aios.domain.MAX_JSON_DEPTH` levels inside bodies a few levels deep."""

JSON_MEDIA_TYPE = "application/json"

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]", re.ASCII)
_OPEN_CLOSE = str.maketrans({"[": "(", "{": "(", "]": ")", "}": ")"})


class BodyError(Exception):
    """A request body the API cannot read; ``message`` says what to send instead."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnsupportedBody(BodyError):
    """The body is not declared as JSON (415)."""


class InvalidJson(BodyError):
    """The body is not UTF-8 JSON text (400)."""


class BodyTooDeep(BodyError):
    """The body nests deeper than :data:`MAX_BODY_DEPTH` (422)."""


def check_media_type(content_type: str | None) -> None:
    """Refuse a body whose ``Content-Type`` is not JSON in UTF-8.

    Raises:
        UnsupportedBody: the type is missing, not ``application/json``, or names another
            charset.
    """
    send = "send the body as JSON with 'Content-Type: application/json'"
    if content_type is None or not content_type.strip():
        raise UnsupportedBody(f"the request has a body but no Content-Type; {send}")
    media_type, *params = content_type.split(";")
    media_type = media_type.strip().lower()
    if media_type != JSON_MEDIA_TYPE:
        shown = media_type[:100] or "(empty)"
        raise UnsupportedBody(f"this API reads JSON bodies only, not {shown}; {send}")
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
            if charset not in ("utf-8", "utf8"):
                raise UnsupportedBody(
                    f"JSON bodies are UTF-8 (RFC 8259), not {charset[:40] or '(empty)'}; "
                    "send 'Content-Type: application/json' or "
                    "'application/json; charset=utf-8'"
                )


def body_text(body: str, *, is_base64: bool) -> str:
    """The body as text: base64-decoded if the event says so, then UTF-8-decoded.

    Raises:
        InvalidJson: not valid base64, or the bytes are not UTF-8.
    """
    if not is_base64:
        raw: bytes | None = None
        text = body
    else:
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidJson("the body could not be read (broken base64 encoding)") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InvalidJson(
                f"the body is not UTF-8 text (byte {err.start} is 0x{raw[err.start]:02x}); "
                "send JSON encoded as UTF-8"
            ) from None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InvalidJson(
            f"the body is not valid Unicode (character {err.start} is an unpaired "
            "surrogate); send JSON encoded as UTF-8"
        ) from None
    return text


def nesting_depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` in JSON text, ignoring brackets inside strings.

    Linear in the text's length, without recursion; for text that is not JSON the result
    is only an estimate (the parser then reports the syntax error).
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text)).translate(_OPEN_CLOSE)
    depth = deepest = 0
    for part in re.finditer(r"\(+|\)+", brackets):
        run = part.end() - part.start()
        if part.group()[0] == "(":
            depth += run
            deepest = max(deepest, depth)
        else:
            depth -= run
    return deepest


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; send a number or null")


def _unpaired_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def parse_json(text: str) -> Any:
    """Parse JSON body text.

    Raises:
        BodyTooDeep: nested deeper than :data:`MAX_BODY_DEPTH`.
        InvalidJson: a syntax error (with line and column), ``NaN``/``Infinity``, a number
            too long to convert, or an escaped unpaired surrogate.
    """
    if text.count("[") + text.count("{") > MAX_BODY_DEPTH:
        depth = nesting_depth(text)
        if depth > MAX_BODY_DEPTH:
            raise BodyTooDeep(
                f"the body nests objects and arrays {depth} levels deep; at most "
                f"{MAX_BODY_DEPTH} are read (and free-form fields may nest at most "
                f"{MAX_JSON_DEPTH})"
            )
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as err:
        raise InvalidJson(
            f"the body is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from None
    except RecursionError:
        raise BodyTooDeep(
            f"the body nests objects and arrays too deeply; free-form fields may nest at "
            f"most {MAX_JSON_DEPTH} levels"
        ) from None
    except ValueError as err:  # NaN/Infinity, or an integer over Python's digit limit
        reason = str(err) if "JSON number" in str(err) else "a number has too many digits"
        raise InvalidJson(f"the body is not valid JSON: {reason}") from None
    if _SURROGATE_ESCAPE.search(text) and _unpaired_surrogate(value):
        raise InvalidJson(
            "the body is not valid JSON text: a string holds an unpaired UTF-16 surrogate "
            "escape (such as \\ud800); send valid Unicode"
        )
    return value
