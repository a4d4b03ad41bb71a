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


def _api_url(event: Any) -> str | None:
    """The API's base URL as devices reach it, from API Gateway's request context:
    ``https://<domainName>`` plus ``/<stage>`` on an ``execute-api`` domain (a custom domain
    maps the stage itself)."""
    context = event.get("requestContext") if isinstance(event, dict) else None
    if not isinstance(context, dict):
        return None
    domain, stage = context.get("domainName"), context.get("stage")
    if not isinstance(domain, str) or not domain:
        return None
    if ".execute-api." in domain and isinstance(stage, str) and stage:
        return f"https://{domain}/{stage}"
    return f"https://{domain}"


def _learn_api_url(api: ApiResolver, event: Any) -> None:
    """Give the run launcher the API's URL (the media target of edge plans) when its
    environment does not name one: the template cannot, the API's URL depending on the
    function."""
    from aios.cloud.launcher import StepFunctionsLauncher

    launcher = api.services.launcher
    if isinstance(launcher, StepFunctionsLauncher) and not launcher.api_url:
        launcher.api_url = _api_url(event)


@entry
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Answer one API Gateway REST proxy event."""
    user = _authorizer_user(event)
    if user is not None:
        logger.append_keys(user_id=user)
    api = app()
    _learn_api_url(api, event)
    return api.resolve(event, context)
