"""The API's errors: one JSON shape for every failure, and the mapping from domain errors.

Every error response has the body::

    {"error": {"code": "not_found", "message": "device 'cam-1' does not exist",
               "details": [...], "request_id": "..."}}

``code`` is stable (clients branch on it), ``message`` is for people and says what to
change, ``details`` lists field problems (``{"field": "body.location.lat", "message": ...,
"type": ...}``) or pipeline issues. A 500 never carries a stack trace: only the request id,
which is also in the log line of the exception.

Codes of request problems: ``invalid_json`` (400: the body is not UTF-8 JSON text),
``unsupported_media_type`` (415: a body not sent as ``application/json``),
``method_not_allowed`` (405, with ``Allow``), ``validation_error`` (422: any field of the
path, query or body is invalid or unknown — the details name each one).
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError as PowertoolsNotFound
from aws_lambda_powertools.event_handler.exceptions import ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)

from aios.fleet.service import DeviceUnreachable, InvalidRequest
from aios.pipeline.validation import PipelineInvalid
from aios.runs.service import LauncherUnavailable, RunCapacityExceeded
from aios.store.port import Conflict, NotFound

if TYPE_CHECKING:
    from aios.api.app import ApiResolver

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered as ``{"error": {...}}`` with ``status``.

    Raise it (or a subclass) from a route; ``headers`` are added to the response (e.g.
    ``Retry-After``).
    """

    status: int = HTTPStatus.BAD_REQUEST
    code: str = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or []
        self.headers = headers or {}


class BadRequest(ApiError):
    status = HTTPStatus.BAD_REQUEST
    code = "bad_request"


class Unauthorized(ApiError):
    status = HTTPStatus.UNAUTHORIZED
    code = "unauthorized"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message, code=code, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ApiError):
    status = HTTPStatus.FORBIDDEN
    code = "forbidden"


class NotFoundApi(ApiError):
    status = HTTPStatus.NOT_FOUND
    code = "not_found"


class MethodNotAllowed(ApiError):
    """The path exists, not with this method; ``headers`` carry ``Allow``."""

    status = HTTPStatus.METHOD_NOT_ALLOWED
    code = "method_not_allowed"


class UnsupportedMediaType(ApiError):
    """The body is not sent as ``application/json``."""

    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    code = "unsupported_media_type"


class ConflictApi(ApiError):
    status = HTTPStatus.CONFLICT
    code = "conflict"


class Unprocessable(ApiError):
    """A request that is well-formed but invalid: code ``validation_error``, whatever
    found the problem (the request models, the route, or the fleet service)."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY
    code = "validation_error"

    @classmethod
    def field(cls, field: str, message: str, *, type_: str = "value_error") -> Unprocessable:
        """An error about one field, e.g. ``field("query.cursor", "unknown cursor")``."""
        return cls(
            f"{field}: {message}",
            details=[{"field": field, "message": message, "type": type_}],
        )


class TooManyRequests(ApiError):
    status = HTTPStatus.TOO_MANY_REQUESTS
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after_seconds))})


class ServiceUnavailable(ApiError):
    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "unavailable"


class BadGateway(ApiError):
    """Something the API asked on the caller's behalf (a camera, a device) answered with
    an error."""

    status = HTTPStatus.BAD_GATEWAY
    code = "bad_gateway"


class GatewayTimeout(ApiError):
    """Something the API asked on the caller's behalf (a camera, a device) did not answer
    in time."""

    status = HTTPStatus.GATEWAY_TIMEOUT
    code = "gateway_timeout"


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    details: list[dict[str, Any]] | None = None,
    request_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    """Build the JSON error response."""
    error: dict[str, Any] = {"code": code, "message": message, "details": details or []}
    if request_id:
        error["request_id"] = request_id
    return Response(
        status_code=int(status),
        content_type=content_types.APPLICATION_JSON,
        body={"error": error},
        headers=dict(headers or {}),
    )


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "location", "lat")`` → ``"body.location.lat"``."""
    return ".".join(str(part) for part in loc)


def _validation_details(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    details = []
    for err in errors:
        loc = tuple(err.get("loc", ()))
        message = str(err.get("msg", "invalid value"))
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            message = f"the body is not valid JSON: {ctx.get('error', 'decode error')}"
            loc = ("body",)
        elif err.get("type") == "missing" and loc == ("body",):
            message = "a JSON body is required"
        elif err.get("type") == "extra_forbidden":
            message = "unknown field (check the spelling)"
        details.append(
            {"field": field_path(loc), "message": message, "type": str(err.get("type", ""))}
        )
    return details


def register_error_handlers(app: ApiResolver) -> None:
    """Answer every exception with the JSON error shape (500 for unexpected ones)."""

    def rid() -> str:
        return app.request_id()

    def _api_error(exc: ApiError) -> Response[Any]:
        return error_response(
            exc.status,
            exc.code,
            exc.message,
            details=exc.details,
            request_id=rid(),
            headers=exc.headers,
        )

    def _validation(exc: RequestValidationError) -> Response[Any]:
        details = _validation_details(list(exc.errors()))
        fields = ", ".join(d["field"] for d in details[:5])
        return error_response(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            "validation_error",
            f"the request is invalid at: {fields}" if fields else "the request is invalid",
            details=details,
            request_id=rid(),
        )

    def _content_type(exc: RequestUnsupportedContentType) -> Response[Any]:
        return error_response(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with 'Content-Type: application/json'",
            request_id=rid(),
        )

    def _pipeline_invalid(exc: PipelineInvalid) -> Response[Any]:
        return error_response(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            "pipeline_invalid",
            f"the pipeline has {len(exc.issues)} problem(s); fix them in the editor "
            "(see details) and save a new revision",
            details=[issue.to_dict() for issue in exc.issues],
            request_id=rid(),
        )

    def _invalid_request(exc: InvalidRequest) -> Response[Any]:
        message = str(exc)
        details = []
        match = re.match(r"^([a-z_]+): (.+)$", message, re.DOTALL)
        if match:
            details.append(
                {"field": f"body.{match[1]}", "message": match[2], "type": "value_error"}
            )
        return error_response(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            "validation_error",
            message,
            details=details,
            request_id=rid(),
        )

    def _unreachable(exc: DeviceUnreachable) -> Response[Any]:
        return error_response(
            HTTPStatus.SERVICE_UNAVAILABLE, "device_unreachable", str(exc), request_id=rid()
        )

    def _no_launcher(exc: LauncherUnavailable) -> Response[Any]:
        return error_response(
            HTTPStatus.SERVICE_UNAVAILABLE, "runs_unavailable", str(exc), request_id=rid()
        )

    def _capacity(exc: RunCapacityExceeded) -> Response[Any]:
        return error_response(
            HTTPStatus.CONFLICT, "run_capacity_exceeded", str(exc), request_id=rid()
        )

    def _store_not_found(exc: NotFound) -> Response[Any]:
        return error_response(
            HTTPStatus.NOT_FOUND, "not_found", str(exc) or "not found", request_id=rid()
        )

    def _store_conflict(exc: Conflict) -> Response[Any]:
        return error_response(
            HTTPStatus.CONFLICT,
            "conflict",
            str(exc) or "the record changed since it was read; reload it and try again",
            request_id=rid(),
        )

    def _route_not_found(exc: PowertoolsNotFound) -> Response[Any]:
        return error_response(
            HTTPStatus.NOT_FOUND,
            "route_not_found",
            "no such endpoint; see /docs for the API",
            request_id=rid(),
        )

    def _service_error(exc: ServiceError) -> Response[Any]:
        try:
            code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
        except ValueError:
            code = "error"
        return error_response(exc.status_code, code, str(exc.msg), request_id=rid())

    def _unexpected(exc: Exception) -> Response[Any]:
        request_id = rid()
        log.exception("unhandled error in request %s", request_id)
        return error_response(
            HTTPStatus.INTERNAL_SERVER_ERROR,
            "internal_error",
            f"an internal error occurred; quote request id {request_id} when reporting it",
            request_id=request_id,
        )

    app.exception_handler(ApiError)(_api_error)
    app.exception_handler(RequestValidationError)(_validation)
    app.exception_handler(RequestUnsupportedContentType)(_content_type)
    app.exception_handler(PipelineInvalid)(_pipeline_invalid)
    app.exception_handler(InvalidRequest)(_invalid_request)
    app.exception_handler(DeviceUnreachable)(_unreachable)
    app.exception_handler(LauncherUnavailable)(_no_launcher)
    app.exception_handler(RunCapacityExceeded)(_capacity)
    app.exception_handler(NotFound)(_store_not_found)
    app.exception_handler(Conflict)(_store_conflict)
    app.exception_handler(ServiceError)(_service_error)
    app.exception_handler(Exception)(_unexpected)
    app.not_found(_route_not_found)
