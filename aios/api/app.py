"""The REST API: one Powertools resolver for API Gateway REST proxy events.

:func:`create_app` builds the resolver over a :class:`~aios.services.Services`;
:func:`handler` is the Lambda entry point (services built from the environment once per
container). ``aios up`` calls the same resolver with events its HTTP adapter builds.

Every request, in order: the ``Host`` header is checked against ``settings.allowed_hosts``
(400); a path without the request's method is 405 with ``Allow`` (404 if no route has it);
the route's permission is looked up in :mod:`aios.api.permissions` and the bearer token
checked (401/403) — before anything else about the request, so an anonymous caller learns
nothing from validation; query parameters the route does not declare are refused (422);
the body is read as JSON by :mod:`aios.api.body` (415 not ``application/json``, 400
``invalid_json``, 422 nested too deep; a route without a body refuses one other than
``{}``); then Powertools validates the parameters and body against the route's models
(422 ``validation_error``) and the route runs. Writes (POST/PUT/DELETE) are recorded in the
audit log with their outcome; the entry's ``detail.request_id`` is the HTTP request's id,
and a create that fails names the id its body gave. Every response carries
``X-Request-Id``. The Swagger UI page at ``/docs`` sends nothing to validator.swagger.io.

The resolver keeps per-request state in class attributes (Powertools' design for Lambda,
one request at a time), so :meth:`ApiResolver.resolve` serialises calls: a threaded local
server may call it from any thread.
"""

from __future__ import annotations

import functools
import logging
import threading
import uuid
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response
from aws_lambda_powertools.event_handler.api_gateway import ResponseBuilder, Route
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.models import (
    HTTPBearer,
    OpenAPI,
    Server,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from aios.api.auth import Authenticator, AuthFailed, Client, Principal, load_jwt_secret
from aios.api.body import (
    JSON_MEDIA_TYPE,
    BodyTooDeep,
    InvalidJson,
    UnsupportedBody,
    body_text,
    check_media_type,
)
from aios.api.body import parse_json as parse_json_body
from aios.api.errors import (
    BadRequest,
    Forbidden,
    MethodNotAllowed,
    Unauthorized,
    Unprocessable,
    UnsupportedMediaType,
    register_error_handlers,
)
from aios.api.hosts import HOST_NOT_ALLOWED, host_allowed
from aios.api.permissions import Permission, permission_for, role_allows
from aios.config import Settings
from aios.domain import AuditEntry
from aios.services import Services
from aios.store.factory import open_store

log = logging.getLogger(__name__)

API_TITLE = "AIOS API"
API_VERSION = "1.0.0"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SWAGGER_UI_CALL = "var ui = SwaggerUIBundle(swaggerUIOptions)"
"""The statement of Powertools' Swagger UI page that starts the UI."""

_RESOLVE_LOCK = threading.RLock()


def _outcome(status: int) -> str:
    if status < 400:
        return "success"
    if status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
        return "denied"
    return "failure"


class ApiResolver(APIGatewayRestResolver):
    """The API's resolver: Powertools' REST resolver plus authentication, authorization,
    host checking, request ids and the audit of writes.

    Attributes:
        services: the process's ports.
        auth: passwords and tokens.
    """

    def __init__(
        self, services: Services, authenticator: Authenticator, cors: CORSConfig | None
    ) -> None:
        # debug=False whatever POWERTOOLS_DEV says: its debug mode prints whole events
        # (passwords, tokens) and answers 500s with tracebacks.
        super().__init__(cors=cors, enable_validation=True, debug=False)
        self.services = services
        self.auth = authenticator

    # ------------------------------------------------------------------ request state

    def resolve(self, event: Any, context: LambdaContext | None) -> dict[str, Any]:
        """Answer one API Gateway REST proxy event (serialised, see the module doc)."""
        with _RESOLVE_LOCK:
            return super().resolve(event, context)  # type: ignore[arg-type]

    def request_id(self) -> str:
        """The request's id: API Gateway's ``requestContext.requestId``, else a new one."""
        rid = self.context.get("_request_id")
        if isinstance(rid, str):
            return rid
        try:
            rid = (self.current_event.raw_event.get("requestContext") or {}).get("requestId")
        except AttributeError:
            rid = None
        if not isinstance(rid, str) or not rid:
            rid = uuid.uuid4().hex
        self.context["_request_id"] = rid
        return rid

    def client(self) -> Client:
        """The caller's address (``requestContext.identity.sourceIp``) and user agent."""
        raw = self.current_event.raw_event
        identity = (raw.get("requestContext") or {}).get("identity") or {}
        ip = identity.get("sourceIp") if isinstance(identity, dict) else None
        agent = self.current_event.headers.get("user-agent")
        if agent is None and isinstance(identity, dict):
            agent = identity.get("userAgent")
        return Client(ip=ip if isinstance(ip, str) else None, user_agent=agent)

    def principal(self) -> Principal:
        """The signed-in user. Raises :class:`Unauthorized` on a public route."""
        principal = self.context.get("_principal")
        if not isinstance(principal, Principal):
            raise Unauthorized("sign in first", code="unauthenticated")
        return principal

    def audit_target(self, target_id: str | None, **detail: Any) -> None:
        """Tell the audit of this write which record it made (e.g. a created id)."""
        self.context["_audit_target_id"] = target_id
        self.context.setdefault("_audit_detail", {}).update(detail)

    def audit(
        self,
        action: str,
        *,
        target_type: str | None = None,
        target_id: str | None = None,
        outcome: str = "success",
        actor: Principal | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Append an audit entry for this request (a failing audit store is logged, the
        request still answers: the write it records has been made)."""
        client = self.client()
        entry = AuditEntry(
            time=self.services.clock(),
            actor_id=actor.user_id if actor else None,
            actor=actor.username if actor else None,
            action=action,
            target_type=target_type,
            target_id=target_id,
            source_ip=client.ip,
            user_agent=(client.user_agent or "")[:512] or None,
            outcome=outcome,
            detail={**(detail or {}), "request_id": self.request_id()},
        )
        try:
            self.services.store.audit.append(entry)
        except Exception:
            log.exception("could not write the audit entry of request %s", self.request_id())

    # ------------------------------------------------------------------ the gate

    def registered_routes(self) -> list[Route]:
        """Every route added to the resolver (not the ones Powertools makes for a 404)."""
        return [*self._static_routes, *self._dynamic_routes]

    def _is_registered(self, route: Route) -> bool:
        return any(route is r for r in self.registered_routes())

    def bearer_token(self, missing: str) -> str:
        """The token of the request's ``Authorization: Bearer <token>`` header.

        Raises:
            Unauthorized: no such header (code ``unauthenticated``); ``missing`` says what
                to send.
        """
        header = self.current_event.headers.get("authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized(missing, code="unauthenticated")
        return token.strip()

    def _gate(self, route: Route) -> Permission | None:
        """Check host, token and role; return the route's permission."""
        if not host_allowed(
            self.current_event.headers.get("host"), self.services.settings.allowed_hosts
        ):
            raise BadRequest(HOST_NOT_ALLOWED, code="host_not_allowed")
        permission = permission_for(route.method, route.openapi_path)
        if permission is None:
            if self._is_registered(route):
                log.error("route %s %s has no permission entry", route.method, route.path)
                raise Forbidden("this endpoint is not open to anyone")
            return None  # unknown route (404) or CORS preflight
        if permission.role is None:
            return permission
        token = self.bearer_token(
            "sign in: send 'Authorization: Bearer <access token>' "
            "(POST /api/v1/auth/login gives one)"
        )
        try:
            principal = self.auth.authenticate(token)
        except AuthFailed as err:
            if err.reason == "expired":
                raise Unauthorized(
                    "the access token expired; get a new one from POST /api/v1/auth/refresh",
                    code="token_expired",
                ) from None
            raise Unauthorized(
                "the access token is not valid; sign in again", code="invalid_token"
            ) from None
        self.context["_principal"] = principal
        if not role_allows(principal.role, permission.role):
            raise Forbidden(
                f"this needs the {permission.role.value} role; you are {principal.role.value}"
            )
        return permission

    def _check_query(self, route: Route) -> None:
        """Refuse query parameters the route does not declare (a misspelt filter would
        otherwise be ignored silently and the list come back unfiltered)."""
        event = self.current_event
        given = set(event.multi_value_query_string_parameters or {}) | set(
            event.query_string_parameters or {}
        )
        if not given:
            return
        accepted = sorted(str(param.alias) for param in route.dependant.query_params)
        unknown = sorted(given - set(accepted))
        if not unknown:
            return
        listing = ", ".join(accepted) if accepted else "none"
        shown = ", ".join(repr(name[:100]) for name in unknown[:5])
        raise Unprocessable(
            f"unknown query parameter {shown}; this endpoint accepts: {listing}",
            details=[
                {
                    "field": f"query.{name[:100]}",
                    "message": f"unknown query parameter (check the spelling); accepted: {listing}",
                    "type": "extra_forbidden",
                }
                for name in unknown[:20]
            ],
        )

    @staticmethod
    def _canonical_content_type(raw: dict[str, Any]) -> None:
        """Announce the body as ``application/json`` to Powertools, which matches media
        types case-sensitively and parses by them (the body was checked already)."""
        for key in ("headers", "multiValueHeaders"):
            headers = raw.get(key)
            if isinstance(headers, dict):
                for name in [n for n in headers if str(n).lower() == "content-type"]:
                    headers[name] = (
                        [JSON_MEDIA_TYPE] if key == "multiValueHeaders" else (JSON_MEDIA_TYPE)
                    )

    def _read_body(self, route: Route, route_arguments: dict[str, str]) -> None:
        """Read the request body as JSON (see :mod:`aios.api.body`) before Powertools'
        validation does, so that a body the API cannot read is a 4xx, not a 500.

        The parsed value is handed to Powertools through the event's cached ``json_body``
        (parsed once). A route without a body refuses one (``{}`` aside): nothing sent is
        ignored silently.
        """
        raw = self.current_event.raw_event
        body = raw.get("body")
        if body is None or body == "":
            # No body: whatever media type was announced, there is nothing to parse
            # (Powertools would try a multipart parse of nothing and fail).
            self._canonical_content_type(raw)
            return
        try:
            if not isinstance(body, str):
                raise InvalidJson("the body could not be read (not text in the event)")
            check_media_type(self.current_event.headers.get("content-type"))
            text = body_text(body, is_base64=bool(raw.get("isBase64Encoded")))
            value = parse_json_body(text)
        except UnsupportedBody as err:
            raise UnsupportedMediaType(err.message) from None
        except InvalidJson as err:
            raise BadRequest(
                err.message,
                code="invalid_json",
                details=[{"field": "body", "message": err.message, "type": "json_invalid"}],
            ) from None
        except BodyTooDeep as err:
            raise Unprocessable(
                err.message,
                details=[{"field": "body", "message": err.message, "type": "too_deep"}],
            ) from None
        self._canonical_content_type(raw)
        # BaseProxyEvent caches these with functools.cached_property (instance __dict__).
        self.current_event.__dict__["decoded_body"] = text
        self.current_event.__dict__["json_body"] = value
        if not route.dependant.body_params and value is not None and value != {}:
            raise Unprocessable.field(
                "body",
                "this endpoint takes no request body; send none (parameters go in the "
                "path or the query string)",
                type_="extra_forbidden",
            )
        if not route_arguments and isinstance(value, dict) and isinstance(value.get("id"), str):
            # the record a create names, for the audit of a create that fails
            self.context["_body_target_id"] = value["id"][:128]

    def _call_route(self, route: Route, route_arguments: dict[str, str]) -> ResponseBuilder:  # type: ignore[type-arg]
        self.request_id()
        try:
            permission = self._gate(route)
            if self._is_registered(route):
                if route.include_in_schema:
                    self._check_query(route)
                if permission is None or permission.grant is None:
                    self._read_body(route, route_arguments)
        except Exception as exc:
            builder = self._call_exception_handler(exc, route)
            if builder is None:
                raise
            permission = permission_for(route.method, route.openapi_path)
        else:
            builder = super()._call_route(route, route_arguments)
        status = int(builder.response.status_code)
        if (
            permission is not None
            and permission.action is not None
            and not permission.self_audited
            and route.method in WRITE_METHODS
            and isinstance(self.context.get("_principal"), Principal)
        ):
            target_id = self.context.get("_audit_target_id")
            if target_id is None and route_arguments:
                target_id = next(iter(route_arguments.values()))
            if target_id is None:
                target_id = self.context.get("_body_target_id")
            self.audit(
                permission.action,
                target_type=permission.target,
                target_id=target_id,
                outcome=_outcome(status),
                actor=self.context["_principal"],
                detail={"status": status, **self.context.get("_audit_detail", {})},
            )
        builder.response.headers["X-Request-Id"] = self.request_id()
        return builder

    def _handle_not_found(self, method: str, path: str) -> ResponseBuilder:  # type: ignore[type-arg]
        """No route for ``method path``: 405 with ``Allow`` when the path has routes for
        other methods (CORS preflights aside), else 404."""
        allowed = sorted(
            {route.method for route in self.registered_routes() if route.rule.match(path)}
        )
        if not allowed or (method == "OPTIONS" and self._cors):
            return super()._handle_not_found(method=method, path=path)
        allow = ", ".join(allowed)

        def method_not_allowed() -> Response[Any]:
            raise MethodNotAllowed(
                f"{method[:20]} is not allowed here; this path accepts {allow}",
                headers={"Allow": allow},
            )

        route = Route(
            rule=self._compile_regex(r".*"),
            method=method,
            path=path,
            func=method_not_allowed,
            cors=self._cors_enabled,
            compress=False,
        )
        self.append_context(_route=route, _path=path)  # type: ignore[no-untyped-call]
        return self._call_route(route=route, route_arguments={})

    def get_openapi_schema(self, *args: Any, **kwargs: Any) -> OpenAPI:
        """Powertools' OpenAPI document without its ``HTTPValidationError``,
        ``ValidationError`` and ``ResponseValidationError`` schemas: every error of this API,
        422 included, has the ``{"error": {...}}`` shape each operation documents (and the
        last one would otherwise point at the removed ``ValidationError``)."""
        spec = super().get_openapi_schema(*args, **kwargs)
        if spec.components is not None and spec.components.schemas:
            for name in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
                spec.components.schemas.pop(name, None)
        return spec


def _swagger_without_validator(app: ApiResolver, next_middleware: NextMiddleware) -> Response[Any]:
    """Turn off Swagger UI's validator badge (``validatorUrl: null``): by default the page
    sends the document's URL to validator.swagger.io. Powertools has no option for it."""
    response = next_middleware(app)
    if isinstance(response.body, str) and SWAGGER_UI_CALL in response.body:
        response.body = response.body.replace(
            SWAGGER_UI_CALL, f"swaggerUIOptions.validatorUrl = null;\n  {SWAGGER_UI_CALL}", 1
        )
    return response


def _cors(services: Services) -> CORSConfig | None:
    origins = [o for o in services.settings.cors_origins if o]
    if not origins:
        return None
    return CORSConfig(
        allow_origin=origins[0],
        extra_origins=origins[1:],
        expose_headers=["X-Request-Id", "Retry-After"],
        max_age=600,
    )


def create_app(services: Services, *, authenticator: Authenticator | None = None) -> ApiResolver:
    """Build the API over ``services``.

    Args:
        services: the process's ports.
        authenticator: defaults to one keyed with :func:`aios.api.auth.load_jwt_secret`.

    Returns:
        The resolver: ``app.resolve(event, context)`` answers an API Gateway REST proxy
        event. OpenAPI at ``/openapi.json`` and ``/docs?format=json``, Swagger UI at
        ``/docs`` (its assets are inlined: it works offline).

    Raises:
        ValueError: the JWT secret is too short.
    """
    from aios.api.routes import register_routes

    auth = authenticator or Authenticator(services, load_jwt_secret(services.settings))
    app = ApiResolver(services, auth, _cors(services))
    register_error_handlers(app)
    register_routes(app)
    app.configure_openapi(
        title=API_TITLE,
        version=API_VERSION,
        description="Fleet, pipelines, runs, events, alerts and users of AIOS. "
        "Sign in with POST /api/v1/auth/login and send the access token as a bearer token.",
        security_schemes={"bearer": HTTPBearer(bearerFormat="JWT")},
        servers=[Server(url="/")],
    )

    document: list[str] = []  # generated on first use (about 0.3 s), then kept

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_json() -> Response[str]:
        if not document:
            document.append(app.get_openapi_json_schema())
        return Response(status_code=200, content_type="application/json", body=document[0])

    app.enable_swagger(
        path="/docs",
        title=API_TITLE,
        version=API_VERSION,
        compress=True,
        middlewares=[_swagger_without_validator],
    )
    return app


def services_from_environment() -> Services:
    """The ports of an API function: settings from ``AIOS_*``; the store of
    ``AIOS_DATABASE_URL`` (``dynamodb://TABLE`` in the cloud; SQLite otherwise). No device
    link or run launcher: the API answers 503 where those are needed."""
    settings = Settings()
    store = open_store(settings)
    return Services(store=store, settings=settings)


@functools.cache
def _app_from_environment() -> ApiResolver:
    return create_app(services_from_environment())


def handler(event: dict[str, Any], context: LambdaContext | None) -> dict[str, Any]:
    """Lambda entry point: services from the environment once per container (cold
    start), then resolve the API Gateway REST proxy event."""
    return _app_from_environment().resolve(event, context)
