"""The API's own URL as devices reach it, read from API Gateway's request context (the media
target of edge plans started by Play)."""

from __future__ import annotations

from typing import Any

import pytest

from functions.api import _api_url


def event(domain: Any, stage: Any = "prod") -> dict[str, Any]:
    return {"requestContext": {"domainName": domain, "stage": stage}}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            event("abc123.execute-api.eu-west-1.amazonaws.com"),
            "https://abc123.execute-api.eu-west-1.amazonaws.com/prod",
        ),
        (event("api.example.com"), "https://api.example.com"),
        (
            event("abc123.execute-api.eu-west-1.amazonaws.com", None),
            "https://abc123.execute-api.eu-west-1.amazonaws.com",
        ),
        (event(None), None),
        (event(""), None),
        ({"requestContext": "x"}, None),
        ({}, None),
        ("not an event", None),
    ],
)
def test_api_url_from_the_request_context(given: Any, expected: str | None) -> None:
    assert _api_url(given) == expected
