"""Sign-in, tokens, lockout, rate limiting, password changes, the first admin."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import jwt
import pytest
from api_client import CLIENT_IP, ApiClient, ApiResponse
from api_support import JWT_SECRET, PASSWORD, Account, ManualClock, add_user, make_settings
from argon2 import PasswordHasher

from aios.api.app import ApiResolver, create_app
from aios.api.auth import ensure_first_admin
from aios.domain import Role, User
from aios.services import Services
from aios.store.sqlite import SqliteStore

LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"


def login(api: ApiClient, username: str, password: str, source_ip: str = CLIENT_IP) -> ApiResponse:
    return api.post(LOGIN, {"username": username, "password": password}, source_ip=source_ip)


def test_login_returns_tokens_and_the_user(api: ApiClient, admin: Account) -> None:
    """A right password gives an access token (claims sub, role, iat, exp, iss, jti) and a
    refresh token; the user record carries no password hash."""
    res = api.post(LOGIN, {"username": "ALICE", "password": PASSWORD})
    assert res.status == 200, res.text
    body = res.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 15 * 60
    claims = jwt.decode(body["access_token"], JWT_SECRET, algorithms=["HS256"], issuer="aios")
    assert set(claims) == {"sub", "role", "iat", "exp", "iss", "jti"}
    assert (claims["sub"], claims["role"], claims["exp"] - claims["iat"]) == (
        admin.user.id,
        "admin",
        900,
    )
    assert body["user"]["username"] == "alice"
    assert "password_hash" not in res.text and "argon2" not in res.text
    # AND the token works
    me = api.get("/api/v1/auth/me", token=body["access_token"])
    assert me.status == 200 and me.json()["id"] == admin.user.id


def test_wrong_password_and_unknown_user_get_the_same_answer(
    api: ApiClient, admin: Account
) -> None:
    """No user enumeration: same status, code and message."""
    wrong = api.post(LOGIN, {"username": "alice", "password": "not it"})
    unknown = api.post(LOGIN, {"username": "nobody", "password": "not it"})
    assert wrong.status == unknown.status == 401
    assert wrong.error["code"] == unknown.error["code"] == "invalid_credentials"
    assert wrong.error["message"] == unknown.error["message"]
    # AND both attempts are audited, with the reason only in the audit log
    audit = api.get("/api/v1/audit", token=admin.token, query={"target_type": "user"})
    reasons = [
        (e["outcome"], e["detail"].get("reason"), e["source_ip"])
        for e in audit.json()["items"]
        if e["action"] == "auth.login"
    ]
    assert sorted(reasons) == [
        ("failure", "bad_password", "203.0.113.7"),
        ("failure", "unknown_user", "203.0.113.7"),
    ]
    assert "not it" not in audit.text


def test_account_locks_after_consecutive_failures_and_unlocks_later(
    tmp_path: Path, store: SqliteStore, clock: ManualClock, password_hash: str
) -> None:
    """login_max_failures failures in a row lock the account for login_lockout_minutes,
    even for the right password; a success before that resets the count."""
    services = Services(
        store=store,
        settings=make_settings(tmp_path, login_max_failures=3, login_lockout_minutes=10),
        clock=clock,
    )
    app = create_app(services)
    api = ApiClient(app)
    user = add_user(app, "lee", Role.OPERATOR, password_hash).user

    def stored() -> User:
        found = store.users.get(user.id)
        assert found is not None
        return found

    # GIVEN two failures, then a success: the count resets
    for _ in range(2):
        assert login(api, "lee", "wrong").status == 401
    assert stored().failed_logins == 2
    assert login(api, "lee", PASSWORD).status == 200
    assert stored().failed_logins == 0
    # WHEN three failures in a row
    for _ in range(3):
        assert login(api, "lee", "wrong").status == 401
    # THEN the account is locked: the right password is refused with the same message
    assert stored().locked_until is not None
    res = login(api, "lee", PASSWORD)
    assert res.status == 401 and res.error["code"] == "invalid_credentials"
    # AND after the lockout it works again
    clock.advance(minutes=10, seconds=1)
    assert login(api, "lee", PASSWORD).status == 200
    assert stored().locked_until is None


def test_admin_can_unlock_an_account(
    tmp_path: Path, store: SqliteStore, clock: ManualClock, password_hash: str
) -> None:
    """PUT users/{id} with unlock clears a lockout at once."""
    services = Services(
        store=store, settings=make_settings(tmp_path, login_max_failures=2), clock=clock
    )
    app = create_app(services)
    api = ApiClient(app)
    admin = add_user(app, "alice", Role.ADMIN, password_hash)
    user = add_user(app, "lee", Role.VIEWER, password_hash).user
    for _ in range(2):
        login(api, "lee", "wrong")
    assert login(api, "lee", PASSWORD).status == 401
    res = api.put(f"/api/v1/users/{user.id}", {"unlock": True}, token=admin.token)
    assert res.status == 200 and res.json()["locked_until"] is None
    assert login(api, "lee", PASSWORD).status == 200


def test_login_rate_limit_per_address(
    tmp_path: Path, store: SqliteStore, clock: ManualClock, password_hash: str
) -> None:
    """login_rate_per_minute attempts per address; the next is 429 with Retry-After, even
    with the right password; another address is not affected."""
    services = Services(
        store=store, settings=make_settings(tmp_path, login_rate_per_minute=3), clock=clock
    )
    app = create_app(services)
    api = ApiClient(app)
    add_user(app, "lee", Role.VIEWER, password_hash)
    for _ in range(3):
        assert login(api, "lee", "wrong", source_ip="198.51.100.1").status == 401
    res = login(api, "lee", PASSWORD, source_ip="198.51.100.1")
    assert res.status == 429, res.text
    assert res.error["code"] == "too_many_requests"
    assert 1 <= int(res.headers["retry-after"]) <= 60
    assert login(api, "lee", PASSWORD, source_ip="198.51.100.2").status == 200
    entries = store.audit.list(target_type="user").items
    assert "rate_limited" in [e.outcome for e in entries]


def test_refresh_rotates_and_reuse_revokes_the_family(
    api: ApiClient, admin: Account, store: SqliteStore
) -> None:
    """Each refresh spends the token; presenting a spent one revokes every token of its
    family (RFC 9700), so the thief's fresh token dies too."""
    first = login(api, "alice", PASSWORD).json()
    # WHEN refreshed
    second = api.post(REFRESH, {"refresh_token": first["refresh_token"]})
    assert second.status == 200, second.text
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    # THEN only the hash is stored
    digest = hashlib.sha256(rotated["refresh_token"].encode()).hexdigest()
    record = store.refresh_tokens.get_by_hash(digest)
    assert record is not None and record.revoked_at is None
    assert store.refresh_tokens.get_by_hash(rotated["refresh_token"]) is None
    # WHEN the spent token is presented again
    reuse = api.post(REFRESH, {"refresh_token": first["refresh_token"]})
    # THEN refused, and the newest token of the family is revoked as well
    assert reuse.status == 401 and reuse.error["code"] == "invalid_refresh_token"
    assert api.post(REFRESH, {"refresh_token": rotated["refresh_token"]}).status == 401
    # AND the reuse is in the audit log
    outcomes = [e.outcome for e in store.audit.list(target_type="user").items]
    assert "reuse_detected" in outcomes
    # AND another session (another family) is untouched
    assert api.post(REFRESH, {"refresh_token": admin.refresh_token}).status == 200


def test_refresh_token_expires(api: ApiClient, admin: Account, clock: ManualClock) -> None:
    """After refresh_token_days the token is refused."""
    clock.advance(days=7, seconds=1)
    assert api.post(REFRESH, {"refresh_token": admin.refresh_token}).status == 401


def test_logout_revokes_the_refresh_token(api: ApiClient, admin: Account) -> None:
    """After logout the refresh token no longer works; logout is audited."""
    res = api.post("/api/v1/auth/logout", {"refresh_token": admin.refresh_token})
    assert res.status == 204 and res.text == ""
    assert api.post(REFRESH, {"refresh_token": admin.refresh_token}).status == 401
    audit = api.get("/api/v1/audit", token=admin.token).json()["items"]
    assert ("auth.logout", "alice", "success") in [
        (e["action"], e["actor"], e["outcome"]) for e in audit
    ]
    # AND an unknown token is accepted silently (nothing to revoke)
    assert api.post("/api/v1/auth/logout", {"refresh_token": "nope"}).status == 204


def test_access_token_expires(api: ApiClient, admin: Account, clock: ManualClock) -> None:
    """Past exp (plus 30 s of skew) the token is refused with token_expired."""
    clock.advance(minutes=15, seconds=31)
    res = api.get("/api/v1/auth/me", token=admin.token)
    assert res.status == 401 and res.error["code"] == "token_expired"


def test_disabled_or_deleted_user_token_stops_working(
    api: ApiClient, admin: Account, viewer: Account
) -> None:
    """Authorization uses the stored user: disabling applies at once."""
    assert api.get("/api/v1/auth/me", token=viewer.token).status == 200
    res = api.put(f"/api/v1/users/{viewer.user.id}", {"disabled": True}, token=admin.token)
    assert res.status == 200
    assert api.get("/api/v1/auth/me", token=viewer.token).status == 401
    assert api.post(REFRESH, {"refresh_token": viewer.refresh_token}).status == 401
    assert login(api, "vera", PASSWORD).status == 401


def test_refresh_token_of_a_deleted_user_is_not_reported_as_theft(
    api: ApiClient,
    admin: Account,
    viewer: Account,
    store: SqliteStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Deleting a user revokes its tokens; presenting one afterwards is a 401 logged at
    INFO with the real reason (the user is gone), not a WARNING about token reuse."""
    caplog.set_level(logging.INFO, logger="aios.api.auth")
    res = api.delete(f"/api/v1/users/{viewer.user.id}", token=admin.token)
    assert res.status == 204, res.text
    refused = api.post(REFRESH, {"refresh_token": viewer.refresh_token})
    assert refused.status == 401 and refused.error["code"] == "invalid_refresh_token"
    records = [r for r in caplog.records if r.name == "aios.api.auth"]
    assert not [r for r in records if r.levelno >= logging.WARNING], records
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.INFO, f"refresh token refused: user {viewer.user.id} is deleted")
    ]
    outcomes = [e.outcome for e in store.audit.list(target_type="user").items]
    assert "reuse_detected" not in outcomes


def test_role_change_applies_at_once(api: ApiClient, admin: Account, viewer: Account) -> None:
    """A promoted viewer may write with the token it already has."""
    body = {"id": "cam-1", "name": "Gate", "kind": "camera"}
    assert api.post("/api/v1/devices", body, token=viewer.token).status == 403
    api.put(f"/api/v1/users/{viewer.user.id}", {"role": "operator"}, token=admin.token)
    assert api.post("/api/v1/devices", body, token=viewer.token).status == 201


def test_password_is_rehashed_when_parameters_change(
    api: ApiClient, app: ApiResolver, store: SqliteStore
) -> None:
    """A hash made with other Argon2 parameters is upgraded at the next good login."""
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    user = add_user(app, "old", Role.VIEWER, weak).user
    assert login(api, "old", PASSWORD).status == 200
    stored = store.users.get(user.id)
    assert stored is not None and stored.password_hash != weak
    assert not PasswordHasher().check_needs_rehash(stored.password_hash)
    assert login(api, "old", PASSWORD).status == 200


def test_change_own_password(api: ApiClient, viewer: Account, store: SqliteStore) -> None:
    """POST auth/password needs the current password; it signs out other sessions and
    returns a new session."""
    bad = api.post(
        "/api/v1/auth/password",
        {"current_password": "nope", "new_password": "a much better one"},
        token=viewer.token,
    )
    assert bad.status == 422 and bad.fields() == ["body.current_password"]
    short = api.post(
        "/api/v1/auth/password",
        {"current_password": PASSWORD, "new_password": "short"},
        token=viewer.token,
    )
    assert short.status == 422 and short.fields() == ["body.new_password"]
    res = api.post(
        "/api/v1/auth/password",
        {"current_password": PASSWORD, "new_password": "a much better one"},
        token=viewer.token,
    )
    assert res.status == 200, res.text
    assert api.post(REFRESH, {"refresh_token": viewer.refresh_token}).status == 401
    assert api.post(REFRESH, {"refresh_token": res.json()["refresh_token"]}).status == 200
    assert login(api, "vera", PASSWORD).status == 401
    assert login(api, "vera", "a much better one").status == 200


def test_first_admin_is_created_once(services: Services, store: SqliteStore) -> None:
    """With no users, an 'admin' with a generated password; afterwards, nothing."""
    password = ensure_first_admin(services)
    assert password is not None and len(password) >= 24
    admin = store.users.get_by_username("admin")
    assert admin is not None and admin.role is Role.ADMIN
    assert PasswordHasher().verify(admin.password_hash, password)
    assert password not in admin.password_hash
    assert ensure_first_admin(services) is None
    assert store.users.count() == 1
    api = ApiClient(create_app(services))
    assert login(api, "admin", password).status == 200


def test_short_jwt_secret_is_refused(tmp_path: Path, store: SqliteStore) -> None:
    """A JWT secret under 32 bytes is a configuration error saying how to make one."""
    import pytest
    from pydantic import SecretStr

    services = Services(
        store=store, settings=make_settings(tmp_path, jwt_secret=SecretStr("short"))
    )
    with pytest.raises(ValueError, match="at least 32 bytes"):
        create_app(services)


def test_generated_jwt_key_is_kept_private(tmp_path: Path, store: SqliteStore) -> None:
    """Without a configured secret, one is generated in <data_dir>/jwt.key (0600) and reused."""
    services = Services(store=store, settings=make_settings(tmp_path, jwt_secret=None))
    first = create_app(services)
    key = tmp_path / "data" / "jwt.key"
    assert key.stat().st_mode & 0o777 == 0o600
    account = add_user(first, "k", Role.VIEWER, PasswordHasher().hash(PASSWORD))
    second = ApiClient(create_app(services))
    assert second.get("/api/v1/auth/me", token=account.token).status == 200


def test_unknown_user_takes_as_long_as_a_wrong_password(api: ApiClient, admin: Account) -> None:
    """An unknown username still costs one Argon2 verification (no timing oracle)."""

    def duration(username: str) -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            assert login(api, username, "wrong password").status == 401
            times.append(time.perf_counter() - started)
        return sorted(times)[1]

    known, unknown = duration("alice"), duration("nobody-here")
    assert unknown > 0.5 * known, (known, unknown)


def test_secrets_stay_out_of_logs_and_audit(
    api: ApiClient, admin: Account, store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Passwords, tokens and the JWT secret appear in no log record or audit entry."""
    caplog.set_level(logging.DEBUG)
    session = login(api, "alice", PASSWORD).json()
    login(api, "alice", "my-wrong-password")
    api.post(REFRESH, {"refresh_token": session["refresh_token"]})
    api.post(REFRESH, {"refresh_token": session["refresh_token"]})  # reuse
    api.post(
        "/api/v1/users", {"username": "newbie", "password": "newbie-password"}, token=admin.token
    )
    logged = "\n".join(r.getMessage() for r in caplog.records)
    audited = json.dumps([e.model_dump(mode="json") for e in store.audit.list(limit=1000).items])
    for secret in (
        PASSWORD,
        "my-wrong-password",
        "newbie-password",
        session["refresh_token"],
        session["access_token"],
        admin.token,
        JWT_SECRET,
        "argon2id",
    ):
        assert secret not in logged
        assert secret not in audited
