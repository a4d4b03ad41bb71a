"""The REST API function: API Gateway REST proxy events answered by :mod:`aios.api.app`.

The resolver is built once per container over :func:`aios.cloud.services.cloud_services`
(DynamoDB store, integration secrets on Secrets Manager, IoT Core link, the lifecycle
launcher when installed, media in S3). The API checks the bearer token itself on every
request, whatever the Lambda authorizer let through; the authorizer's ``principalId`` is
only added to the log lines.
"""

from __future__ import annotations

import functools
from typing import Any

from aios.api.app import ApiResolver, create_app
from aios.cloud.services import cloud_services, environment_key
from functions._common import entry, logger


@functools.cache
def _app(key: tuple[tuple[str, str], ...]) -> ApiResolver:
    return create_app(cloud_services())


def app() -> ApiResolver:
    """The API of this container (built at the first request, per environment)."""
    return _app(environment_key())


def _authorizer_user(event: Any) -> str | None:
    context = event.get("requestContext") if isinstance(event, dict) else None
    authorizer = context.get("authorizer") if isinstance(context, dict) else None
    user = authorizer.get("principalId") if isinstance(authorizer, dict) else None
    return user if isinstance(user, str) else None


@entry
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Answer one API Gateway REST proxy event."""
    user = _authorizer_user(event)
    if user is not None:
        logger.append_keys(user_id=user)
    return app().resolve(event, context)
