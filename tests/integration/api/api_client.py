"""Drive the API resolver with API Gateway REST proxy events, as API Gateway (or the local
HTTP adapter of ``aios up``) sends them."""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from aios.api.app import ApiResolver

CLIENT_IP = "203.0.113.7"
USER_AGENT = "aios-tests/1.0"


def proxy_event(
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    query: dict[str, Any] | None = None,
    body: Any = None,
    source_ip: str = CLIENT_IP,
) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event. ``query`` values may be lists (repeated
    parameters); a ``body`` that is not a string is sent as JSON."""
    hdrs = {"Host": "localhost", "User-Agent": USER_AGENT, **(headers or {})}
    if body is not None and not isinstance(body, str):
        body = json.dumps(body)
        hdrs.setdefault("Content-Type", "application/json")
    multi_query: dict[str, list[str]] | None = None
    single_query: dict[str, str] | None = None
    if query:
        multi_query = {}
        for key, value in query.items():
            values = value if isinstance(value, list) else [value]
            multi_query[key] = [str(v) for v in values]
        single_query = {k: v[-1] for k, v in multi_query.items()}
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": hdrs,
        "multiValueHeaders": {k: [v] for k, v in hdrs.items()},
        "queryStringParameters": single_query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": path,
            "stage": "$default",
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": source_ip, "userAgent": hdrs.get("User-Agent")},
        },
        "body": body,
        "isBase64Encoded": False,
    }


@dataclass
class ApiResponse:
    """What the resolver answered."""

    status: int
    headers: dict[str, str]
    text: str
    raw: dict[str, Any] = field(repr=False)

    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def error(self) -> dict[str, Any]:
        """The ``error`` object of an error response."""
        body = self.json()
        assert set(body) == {"error"}, body
        return body["error"]  # type: ignore[no-any-return]

    def raw_bytes(self) -> bytes:
        """The body as sent (a binary body, e.g. a JPEG, is base64 in the proxy result)."""
        body = self.raw.get("body") or ""
        if not self.raw.get("isBase64Encoded"):
            return str(body).encode()
        data = base64.b64decode(body)
        if self.headers.get("content-encoding") == "gzip":
            data = gzip.decompress(data)
        return data

    def fields(self) -> list[str]:
        """The field paths of an error's details."""
        return [d["field"] for d in self.error["details"]]


class ApiClient:
    """Calls ``app.resolve`` with proxy events; ``token`` sets a bearer token."""

    def __init__(self, app: ApiResolver) -> None:
        self.app = app

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json_body: Any = None,
        query: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        source_ip: str = CLIENT_IP,
    ) -> ApiResponse:
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        event = proxy_event(
            method, path, headers=hdrs, query=query, body=json_body, source_ip=source_ip
        )
        return self._answer(self.app.resolve(event, None))

    def send_bytes(
        self,
        method: str,
        path: str,
        body: bytes,
        *,
        token: str | None = None,
        content_type: str | None = "application/json",
    ) -> ApiResponse:
        """Send ``body`` as API Gateway does: as text when it is UTF-8, else base64
        (``isBase64Encoded``); ``content_type`` ``None`` sends no Content-Type."""
        headers = {"Host": "localhost", "User-Agent": USER_AGENT}
        if content_type is not None:
            headers["Content-Type"] = content_type
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        event = proxy_event(method, path, headers=headers)
        try:
            event["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
        return self._answer(self.app.resolve(event, None))

    def _answer(self, raw: dict[str, Any]) -> ApiResponse:
        headers_out = {k.lower(): v for k, v in (raw.get("headers") or {}).items()}
        for key, values in (raw.get("multiValueHeaders") or {}).items():
            headers_out.setdefault(key.lower(), ",".join(values))
        body = raw.get("body") or ""
        if raw.get("isBase64Encoded"):
            data = base64.b64decode(body)
            if headers_out.get("content-encoding") == "gzip":
                data = gzip.decompress(data)
            body = data.decode("utf-8", errors="replace")  # binary bodies: raw_bytes()
        return ApiResponse(int(raw["statusCode"]), headers_out, body, raw)

    def get(self, path: str, **kw: Any) -> ApiResponse:
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> ApiResponse:
        return self.call("POST", path, json_body=body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> ApiResponse:
        return self.call("PUT", path, json_body=body, **kw)

    def delete(self, path: str, **kw: Any) -> ApiResponse:
        return self.call("DELETE", path, **kw)
