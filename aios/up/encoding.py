"""JSON encoding of messages sent to consoles and devices."""

from __future__ import annotations

from typing import Any


def json_default(value: Any) -> Any:
    """``json.dumps`` fallback: datetimes (and dates, times) as ISO 8601 strings, pydantic
    models as their JSON form.

    Raises:
        TypeError: any other type.
    """
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        return isoformat()
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):
        return model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
