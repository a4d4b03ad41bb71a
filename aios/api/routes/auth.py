"""``/api/v1/auth``: sign in, refresh, sign out, who am I, change my password."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_lambda_powertools.event_handler import Response

from aios.api.auth import AuthFailed, Principal, RateLimited
from aios.api.errors import TooManyRequests, Unauthorized, Unprocessable
from aios.api.models import (
    LoginRequest,
    PasswordChange,
    RefreshRequest,
    TokenResponse,
    UserOut,
)
from aios.api.permissions import API_PREFIX
from aios.store.port import Conflict

if TYPE_CHECKING:
    from aios.api.app import ApiResolver

LOGIN_FAILED = "invalid username or password, or the account is locked after too many failures"
"""The one answer to every failed login (no user enumeration)."""


def register(app: ApiResolver) -> None:
    """Add the authentication routes."""
    auth = app.auth
    store = app.services.store

    @app.post(f"{API_PREFIX}/auth/login", tags=["auth"], summary="Sign in")
    def login(body: LoginRequest) -> TokenResponse:
        client = app.client()
        try:
            auth.check_rate(client)
        except RateLimited as err:
            app.audit(
                "auth.login",
                target_type="user",
                outcome="rate_limited",
                detail={"username": body.username[:100]},
            )
            raise TooManyRequests(
                f"too many sign-in attempts from this address; retry in {err.retry_after} s",
                retry_after_seconds=err.retry_after,
            ) from None
        try:
            user, tokens = auth.login(body.username, body.password)
        except AuthFailed as err:
            known = store.users.get_by_username(body.username)
            app.audit(
                "auth.login",
                target_type="user",
                target_id=known.id if known else None,
                outcome="failure",
                detail={"username": body.username[:100], "reason": err.reason},
            )
            raise Unauthorized(LOGIN_FAILED, code="invalid_credentials") from None
        app.audit(
            "auth.login",
            target_type="user",
            target_id=user.id,
            actor=Principal.of(user),
        )
        return TokenResponse(
            access_token=tokens.access_token,
            expires_in=tokens.access_expires_in,
            refresh_token=tokens.refresh_token,
            refresh_expires_at=tokens.refresh_expires_at,
            user=UserOut.of(user),
        )

    @app.post(f"{API_PREFIX}/auth/refresh", tags=["auth"], summary="Trade a refresh token")
    def refresh(body: RefreshRequest) -> TokenResponse:
        try:
            user, tokens = auth.refresh(body.refresh_token)
        except AuthFailed as err:
            app.audit(
                "auth.refresh",
                target_type="user",
                outcome="reuse_detected" if err.reason == "reuse_detected" else "failure",
                detail={"reason": err.reason},
            )
            raise Unauthorized(
                "the refresh token is not valid (expired, revoked or already used); sign in again",
                code="invalid_refresh_token",
            ) from None
        app.audit("auth.refresh", target_type="user", target_id=user.id, actor=Principal.of(user))
        return TokenResponse(
            access_token=tokens.access_token,
            expires_in=tokens.access_expires_in,
            refresh_token=tokens.refresh_token,
            refresh_expires_at=tokens.refresh_expires_at,
            user=UserOut.of(user),
        )

    @app.post(
        f"{API_PREFIX}/auth/logout",
        tags=["auth"],
        summary="Sign out: revoke the refresh token and its family",
        status_code=204,
    )
    def logout(body: RefreshRequest) -> Response[None]:
        user_id = auth.logout(body.refresh_token)
        user = store.users.get(user_id) if user_id else None
        app.audit(
            "auth.logout",
            target_type="user",
            target_id=user_id,
            actor=Principal.of(user) if user else None,
            outcome="success" if user_id else "unknown_token",
        )
        return Response(status_code=204, body=None)

    @app.get(f"{API_PREFIX}/auth/me", tags=["auth"], summary="The signed-in user")
    def me() -> UserOut:
        user = store.users.get(app.principal().user_id)
        if user is None:
            raise Unauthorized("the account no longer exists", code="invalid_token")
        return UserOut.of(user)

    @app.post(
        f"{API_PREFIX}/auth/password",
        tags=["auth"],
        summary="Change my password (signs out other sessions)",
    )
    def change_password(body: PasswordChange) -> TokenResponse:
        principal = app.principal()
        user = store.users.get(principal.user_id)
        if user is None:
            raise Unauthorized("the account no longer exists", code="invalid_token")
        if not auth.verify_password(user, body.current_password):
            auth.record_failure(user.id)
            raise Unprocessable.field("body.current_password", "does not match")
        changed = user.model_copy(
            update={
                "password_hash": auth.hash_password(body.new_password),
                "updated_at": app.services.clock(),
            }
        )
        try:
            changed = store.users.update(changed, expected_version=user.version)
        except Conflict:
            raise Conflict("the account changed meanwhile; try again") from None
        auth.revoke_user(user.id)
        app.audit_target(user.id)
        tokens = auth.issue_tokens(changed)
        return TokenResponse(
            access_token=tokens.access_token,
            expires_in=tokens.access_expires_in,
            refresh_token=tokens.refresh_token,
            refresh_expires_at=tokens.refresh_expires_at,
            user=UserOut.of(changed),
        )
