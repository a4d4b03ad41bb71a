"""The API's Lambda authorizer (``functions/authorizer.py``, TOKEN type) on moto: the
platform's access tokens checked as the API checks them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cloud_functions import Deployment, deploy

from aios.api.auth import Authenticator, load_jwt_secret
from aios.domain import Role, User
from aios.services import Services

METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/test/GET/api/v1/devices"
API_METHODS = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/test/*/*"
FUNCTION = "AuthorizerFunction"


@dataclass
class Tokens:
    user: User
    access: str
    refresh: str
    auth: Authenticator
    services: Services


@pytest.fixture
def deployment(moto: None) -> Iterator[Deployment]:
    yield deploy({FUNCTION})


@pytest.fixture
def tokens(deployment: Deployment) -> Tokens:
    """An operator of the deployment and tokens issued with the deployment's key."""
    services = deployment.services(FUNCTION)
    auth = Authenticator(services, load_jwt_secret(services.settings))
    now = datetime.now(UTC)
    user = services.store.users.create(
        User(
            username="oscar",
            display_name="Oscar",
            role=Role.OPERATOR,
            password_hash="$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$unused",
            created_at=now,
            updated_at=now,
        )
    )
    issued = auth.issue_tokens(user)
    return Tokens(user, issued.access_token, issued.refresh_token, auth, services)


def authorize(deployment: Deployment, header: str | None, method_arn: str = METHOD_ARN) -> Any:
    event: dict[str, Any] = {"type": "TOKEN", "methodArn": method_arn}
    if header is not None:
        event["authorizationToken"] = header
    return deployment.invoke(FUNCTION, event)


def refused(deployment: Deployment, header: str | None, method_arn: str = METHOD_ARN) -> None:
    with pytest.raises(Exception) as raised:
        authorize(deployment, header, method_arn)
    assert str(raised.value) == "Unauthorized"  # what API Gateway answers with a 401


def test_a_valid_access_token_is_allowed_on_the_api(
    deployment: Deployment,
    tokens: Tokens,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Allow on every method of the API's stage (API Gateway caches the policy per token),
    the user's id, role and name in the context; the token is not logged."""
    caplog.set_level(logging.DEBUG)
    answer = authorize(deployment, f"Bearer {tokens.access}")
    assert answer["principalId"] == tokens.user.id
    statement = answer["policyDocument"]["Statement"]
    assert statement == [
        {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": API_METHODS}
    ]
    assert answer["context"] == {
        "user_id": tokens.user.id,
        "role": "operator",
        "username": "oscar",
    }
    # the scheme is case-insensitive; another API's ARN gives a policy for that API only
    other = "arn:aws:execute-api:eu-west-1:210987654321:zz99/prod/POST/api/v1/pipelines"
    answer = authorize(deployment, f"bearer {tokens.access}", other)
    resource = answer["policyDocument"]["Statement"][0]["Resource"]
    assert resource == "arn:aws:execute-api:eu-west-1:210987654321:zz99/prod/*/*"
    printed = capsys.readouterr()
    assert tokens.access not in caplog.text + printed.out + printed.err
    for record in caplog.records:
        assert tokens.access not in repr(vars(record))


def test_every_other_token_is_unauthorized(
    deployment: Deployment,
    tokens: Tokens,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Expired, wrongly signed, a refresh token, garbage, another scheme, missing, a
    disabled user, a method ARN that is not one: all 401, none logged."""
    caplog.set_level(logging.DEBUG)
    # expired: issued by the same key an hour and a half ago (lifetime 15 minutes)
    past = Services(
        store=tokens.services.store,
        settings=tokens.services.settings,
        clock=lambda: datetime.now(UTC) - timedelta(minutes=90),
    )
    expired, _ = Authenticator(past, load_jwt_secret(past.settings)).issue_access_token(tokens.user)
    claims = jwt.decode(tokens.access, options={"verify_signature": False})
    forged = jwt.encode(claims, "another-key-of-at-least-thirty-two-bytes!", algorithm="HS256")
    unsigned = jwt.encode(claims, None, algorithm="none")
    bad = [
        f"Bearer {expired}",
        f"Bearer {forged}",
        f"Bearer {unsigned}",
        f"Bearer {tokens.refresh}",
        "Bearer not.a.jwt",
        f"Basic {tokens.access}",
        "Bearer ",
        tokens.access,
        None,
    ]
    for header in bad:
        refused(deployment, header)
    refused(deployment, f"Bearer {tokens.access}", method_arn="not-an-arn")
    # the token is fine, the user is not (disabled since)
    user = tokens.services.store.users.get(tokens.user.id)
    assert user is not None
    tokens.services.store.users.update(
        user.model_copy(update={"disabled": True}), expected_version=user.version
    )
    refused(deployment, f"Bearer {tokens.access}")
    printed = capsys.readouterr()
    logs = caplog.text + printed.out + printed.err
    for secret in (tokens.access, tokens.refresh, expired, forged):
        assert secret not in logs
    denied = [r for r in caplog.records if r.getMessage() == "request not authorized"]
    assert sorted({r.reason for r in denied}) == [  # type: ignore[attr-defined]
        "bad_method_arn",
        "expired",
        "invalid_token",
        "missing",
    ]
