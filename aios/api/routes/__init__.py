"""The API's routes, one module per area; :func:`register_routes` adds them all."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aios.api.permissions import API_PREFIX, permission_for

if TYPE_CHECKING:
    from aios.api.app import ApiResolver

BEARER: list[dict[str, list[str]]] = [{"bearer": []}]

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Error",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "description": "Stable machine-readable code."},
                "message": {"type": "string", "description": "What went wrong, what to do."},
                "details": {
                    "type": "array",
                    "description": "Field problems ({field, message, type}; field paths "
                    "such as body.location.lat) or pipeline issues.",
                    "items": {"type": "object"},
                },
                "request_id": {"type": "string"},
            },
        }
    },
}

_ERRORS = {
    400: "The Host header is not allowed (host_not_allowed), or the body is not UTF-8 "
    "JSON text (invalid_json).",
    401: "No valid access token (or, at sign-in, wrong credentials; on an upload, no valid "
    "upload grant; on a webhook, the shared secret not proven).",
    403: "The caller's role is below the one this endpoint needs (on an upload: the grant "
    "is for another run).",
    404: "The record (or route) does not exist.",
    409: "Conflict: the record exists, changed since it was read, or is in use (on an "
    "upload: the run is no longer active).",
    413: "The file is too large to be served or uploaded through the API (media_too_large), "
    "or a webhook's body is larger than its node accepts (body_too_large).",
    415: "The request has a body not sent as 'Content-Type: application/json' (on an "
    "upload: the body is not a file of the kind named).",
    422: "Invalid request (validation_error): the details name each field by path — "
    "unknown query parameters, a body where none is read, and JSON nested too deeply "
    "included.",
    429: "Too many sign-in attempts from this address; see Retry-After.",
    502: "A camera or device the API asked on the caller's behalf answered with an error "
    "(snapshot_failed, camera_unreachable, camera_auth_failed, live_failed).",
    501: "This server does not hand webhook deliveries to runs (its runs listen on their "
    "own webhook servers).",
    503: "This process cannot reach devices or start runs (on a webhook: its secret is not "
    "set, or the run cannot take events yet; retry).",
    504: "A camera or device the API asked on the caller's behalf did not answer in time "
    "(camera_timeout, live_timeout).",
}


def _error(status: int) -> dict[str, Any]:
    return {
        "description": _ERRORS[status],
        "content": {"application/json": {"schema": ERROR_SCHEMA}},
    }


def register_routes(app: ApiResolver) -> None:
    """Add every route, then describe in the OpenAPI document which need a token and the
    errors each can answer."""
    from aios.api.routes import (
        analytics,
        auth,
        backup,
        cameras,
        devices,
        integrations,
        live,
        media,
        pipelines,
        records,
        users,
        webhooks,
    )

    auth.register(app)
    users.register(app)
    pipelines.register(app)
    records.register(app)
    media.register(app)
    analytics.register(app)
    devices.register(app)
    live.register(app)
    cameras.register(app)
    integrations.register(app)
    backup.register(app)
    webhooks.register(app)
    for route in app.registered_routes():
        permission = permission_for(route.method, route.openapi_path)
        if permission is None:
            continue
        errors = {400, 422}
        if permission.role is not None:
            route.security = BEARER
            errors |= {401, 403}
        if permission.grant is not None:
            errors |= {401, 403, 409, 415}
        if re.search(r"\{\w+\}", route.openapi_path):
            errors.add(404)
        if route.method in ("POST", "PUT", "DELETE") and permission.action is not None:
            errors.add(409)
        if route.openapi_path.endswith("/auth/login"):
            errors |= {401, 429}
        if route.openapi_path.endswith(("/auth/refresh", "/auth/logout")):
            errors.add(401)
        if route.openapi_path.endswith(("/execute", "/stop", "/command")):
            errors.add(503)
        if route.openapi_path.endswith("/snapshot") or "/live" in route.openapi_path:
            errors |= {409, 502, 503, 504}
        if route.dependant.body_params:
            errors.add(415)
        if "/media/" in route.openapi_path:
            errors.add(413)
        if route.openapi_path.startswith(f"{API_PREFIX}/webhooks/"):
            errors = (errors - {403, 409}) | {413, 501, 503}
        success = (route.responses or {}).get(route.status_code) or {"description": "Success"}
        responses: dict[int, Any] = {route.status_code: success}
        responses.update({status: _error(status) for status in sorted(errors)})
        route.responses = responses
