"""API Gateway Lambda authorizer (``TOKEN`` type) for the REST API's non-public routes.

The identity source is the ``Authorization`` header, ``Bearer <access token>``. The token is
checked by :meth:`aios.api.auth.Authenticator.authenticate`, the code the API itself runs
(signature with the key of ``AIOS_JWT_SECRET_ARN``, issuer, expiry, the user still enabled),
so both always agree; the API checks the token again and applies the route's role.

Valid: an IAM policy allowing ``execute-api:Invoke`` on every method of the API's stage
(``arn:aws:execute-api:<region>:<account>:<api id>/<stage>/*/*``, from the ``methodArn``:
API Gateway caches the policy for the token, so it must cover the other routes too), with
``principalId`` the user id and ``context`` ``{user_id, role, username}``.
Missing, malformed, expired, wrongly signed, a refresh token, a disabled user: raises
``Exception("Unauthorized")``, which API Gateway answers with 401. The token is never
logged.
"""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from aios.api.auth import Authenticator, AuthFailed, Principal, load_jwt_secret
from aios.cloud.services import cloud_services, environment_key
from functions._common import entry, logger, metrics

UNAUTHORIZED = "Unauthorized"
"""The exact message API Gateway maps to a 401 response."""


@functools.cache
def _authenticator(key: tuple[tuple[str, str], ...]) -> Authenticator:
    services = cloud_services(with_link=False, with_launcher=False)
    return Authenticator(services, load_jwt_secret(services.settings))


def authenticator() -> Authenticator:
    """The authenticator of this container (store and JWT key from the environment)."""
    return _authenticator(environment_key())


def api_resource(method_arn: str) -> str:
    """Every method of the stage a ``methodArn`` is in:
    ``arn:aws:execute-api:<region>:<account>:<api id>/<stage>/*/*``.

    Raises:
        ValueError: ``method_arn`` is not an execute-api method ARN.
    """
    parts = method_arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "execute-api":
        raise ValueError("not an execute-api method ARN")
    path = parts[5].split("/")
    if len(path) < 2 or not path[0] or not path[1]:
        raise ValueError("the method ARN names no API id and stage")
    return ":".join(parts[:5]) + f":{path[0]}/{path[1]}/*/*"


def policy(principal: Principal, resource: str) -> dict[str, Any]:
    """The authorizer's answer allowing ``principal`` on ``resource``."""
    return {
        "principalId": principal.user_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": resource}
            ],
        },
        "context": {
            "user_id": principal.user_id,
            "role": principal.role.value,
            "username": principal.username,
        },
    }


def _bearer(event: dict[str, Any]) -> str | None:
    header = event.get("authorizationToken")
    if not isinstance(header, str):
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def _deny(reason: str) -> Exception:
    metrics.add_metric(name="AuthorizerDenied", unit=MetricUnit.Count, value=1)
    logger.info("request not authorized", extra={"reason": reason})
    return Exception(UNAUTHORIZED)


@entry
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Answer a ``TOKEN`` authorizer event (``authorizationToken``, ``methodArn``).

    Raises:
        Exception: ``"Unauthorized"`` (API Gateway's 401) for every refused token.
    """
    token = _bearer(event) if isinstance(event, dict) else None
    if token is None:
        raise _deny("missing")
    try:
        resource = api_resource(str(event.get("methodArn", "")))
    except ValueError:
        raise _deny("bad_method_arn") from None
    try:
        principal = authenticator().authenticate(token)
    except AuthFailed as err:
        raise _deny(err.reason) from None
    metrics.add_metric(name="AuthorizerAllowed", unit=MetricUnit.Count, value=1)
    logger.info("request authorized", extra={"user_id": principal.user_id})
    return policy(principal, resource)
