"""Authentication: passwords, access and refresh tokens, login throttling, the first admin.

- Passwords: Argon2id (argon2-cffi ``PasswordHasher`` with the library's defaults, RFC 9106's
  second recommended option); a stored hash made with other parameters is re-hashed at the
  next successful login.
- Access tokens: JWT, HS256, lifetime ``settings.access_token_minutes``; claims ``sub``
  (user id), ``role``, ``iat``, ``exp``, ``iss``, ``jti``. The role used for authorization is
  the stored user's current one (a demotion or a disabled account applies at once).
- Refresh tokens: ``secrets.token_urlsafe(32)`` (256 bits), stored as their SHA-256 hash,
  lifetime ``settings.refresh_token_days``, rotated on every use; presenting a rotated or
  revoked token again revokes its whole family (RFC 9700 §4.14.2). Logout revokes the family.
- Login throttling: per account, ``settings.login_max_failures`` consecutive failures lock it
  for ``settings.login_lockout_minutes`` (a conditional write on the user record); per
  client address, ``settings.login_rate_per_minute`` attempts in a moving one-minute window
  (``limits``, in-memory: per process — in a Lambda, per container).
- Unknown user, wrong password, locked or disabled account all get the same answer, and an
  unknown user's attempt verifies against a dummy hash so its timing matches.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from aios.config import Settings
from aios.domain import RefreshToken, Role, User
from aios.services import Services
from aios.store.port import Conflict

log = logging.getLogger(__name__)

JWT_ALGORITHM = "HS256"
MIN_JWT_SECRET_BYTES = 32
"""RFC 7518 §3.2: an HS256 key must be at least as long as the hash output (256 bits)."""

CLOCK_SKEW_SECONDS = 30
"""Leeway when checking ``exp``/``iat`` against the service clock."""

FIRST_ADMIN_USERNAME = "admin"


@dataclass(frozen=True)
class Principal:
    """The signed-in user of a request."""

    user_id: str
    username: str
    role: Role

    @classmethod
    def of(cls, user: User) -> Principal:
        """The principal of a stored user."""
        return cls(user.id, user.username, user.role)


@dataclass(frozen=True)
class Client:
    """Where a request came from (for throttling and the audit log)."""

    ip: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True)
class IssuedTokens:
    """A new access token (expires in ``access_expires_in`` seconds) and refresh token."""

    access_token: str
    access_expires_in: int
    refresh_token: str
    refresh_expires_at: datetime


class AuthFailed(Exception):
    """Authentication refused. ``reason`` is for the audit log, never for the client:
    ``unknown_user``, ``bad_password``, ``locked``, ``disabled``, ``invalid_token``,
    ``expired``, ``reuse_detected``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RateLimited(Exception):
    """Too many login attempts from one address; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


def hash_token(token: str) -> str:
    """SHA-256 of a refresh token, hex (what the store keeps)."""
    return hashlib.sha256(token.encode()).hexdigest()


def load_jwt_secret(settings: Settings) -> bytes:
    """The HS256 key: ``settings.jwt_secret``, else ``<data_dir>/jwt.key`` (created with
    48 random bytes, mode 0600, on first use).

    Raises:
        ValueError: the configured secret is shorter than 32 bytes.
    """
    if settings.jwt_secret is not None:
        secret = settings.jwt_secret.get_secret_value().encode()
        if len(secret) < MIN_JWT_SECRET_BYTES:
            raise ValueError(
                f"AIOS_JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes; generate one "
                'with: python -c "import secrets; print(secrets.token_urlsafe(48))"'
            )
        return secret
    path = Path(settings.data_dir) / "jwt.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_bytes().strip()
        if len(secret) < MIN_JWT_SECRET_BYTES:
            raise ValueError(
                f"{path} holds a key shorter than {MIN_JWT_SECRET_BYTES} bytes; delete it to "
                "generate a new one (signed-in users will have to sign in again)"
            ) from None
        return secret
    secret = secrets.token_urlsafe(48).encode()
    with os.fdopen(fd, "wb") as fh:
        fh.write(secret)
    return secret


class LoginRateLimiter:
    """Login attempts per client address per minute, in a moving window (in memory)."""

    def __init__(self, per_minute: int) -> None:
        self._item = RateLimitItemPerMinute(per_minute)
        self._storage = MemoryStorage()
        self._limiter = MovingWindowRateLimiter(self._storage)

    def hit(self, key: str) -> None:
        """Count one attempt from ``key`` (wall-clock time, as ``limits`` keeps it).

        Raises:
            RateLimited: the address used up its attempts for this minute.
        """
        if not self._limiter.hit(self._item, "login", key):
            stats = self._limiter.get_window_stats(self._item, "login", key)
            raise RateLimited(max(1, math.ceil(stats.reset_time - time.time())))


class Authenticator:
    """Passwords and tokens of one service (build once per process: it holds the login
    rate limiter's counters and the dummy hash)."""

    def __init__(
        self,
        services: Services,
        jwt_secret: bytes,
        *,
        hasher: PasswordHasher | None = None,
    ) -> None:
        if len(jwt_secret) < MIN_JWT_SECRET_BYTES:
            raise ValueError(f"the JWT secret must be at least {MIN_JWT_SECRET_BYTES} bytes")
        self._services = services
        self._secret = jwt_secret
        self._hasher = hasher or PasswordHasher()
        self._dummy_hash: str | None = None
        self._limiter = LoginRateLimiter(services.settings.login_rate_per_minute)

    @property
    def settings(self) -> Settings:
        return self._services.settings

    def _now(self) -> datetime:
        return self._services.clock()

    # ------------------------------------------------------------------ passwords

    def hash_password(self, password: str) -> str:
        """Argon2id PHC string of ``password``."""
        return self._hasher.hash(password)

    def verify_password(self, user: User, password: str) -> bool:
        """Whether ``password`` is the user's (a malformed stored hash counts as wrong)."""
        try:
            return self._hasher.verify(user.password_hash, password)
        except VerifyMismatchError:
            return False
        except (InvalidHashError, VerificationError):
            log.error("user %s has an unusable password hash; reset the password", user.id)
            return False

    def _dummy_verify(self, password: str) -> None:
        if self._dummy_hash is None:
            self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))
        with contextlib.suppress(VerificationError):
            self._hasher.verify(self._dummy_hash, password)

    # ------------------------------------------------------------------ login

    def check_rate(self, client: Client) -> None:
        """Count a login attempt from the client's address. Raises :class:`RateLimited`."""
        self._limiter.hit(client.ip or "unknown")

    def login(self, username: str, password: str) -> tuple[User, IssuedTokens]:
        """Check the credentials and issue tokens.

        Returns:
            The user (its failure counter reset, its hash upgraded if needed) and tokens.

        Raises:
            AuthFailed: unknown user, wrong password, locked or disabled account.
        """
        users = self._services.store.users
        user = users.get_by_username(username)
        if user is None:
            self._dummy_verify(password)
            raise AuthFailed("unknown_user")
        now = self._now()
        if user.locked_until is not None and user.locked_until > now:
            self._dummy_verify(password)
            raise AuthFailed("locked")
        if not self.verify_password(user, password):
            self.record_failure(user.id)
            raise AuthFailed("bad_password")
        if user.disabled:
            raise AuthFailed("disabled")
        user = self._after_success(user, password)
        return user, self.issue_tokens(user)

    def record_failure(self, user_id: str) -> User | None:
        """Count a failed password check; lock the account at the limit.

        A conditional write (retried on a concurrent change) so that parallel attempts
        cannot slip past the limit. Returns the updated user (``None`` if it vanished).
        """
        users = self._services.store.users
        for _ in range(8):
            user = users.get(user_id)
            if user is None:
                return None
            now = self._now()
            failures = user.failed_logins + 1
            changes: dict[str, Any] = {"failed_logins": failures, "updated_at": now}
            if failures >= self.settings.login_max_failures:
                changes["failed_logins"] = 0
                changes["locked_until"] = now + timedelta(
                    minutes=self.settings.login_lockout_minutes
                )
                log.warning("account %s locked after %d failed logins", user.id, failures)
            try:
                return users.update(user.model_copy(update=changes), expected_version=user.version)
            except Conflict:
                continue
        return None

    def _after_success(self, user: User, password: str) -> User:
        changes: dict[str, Any] = {}
        if user.failed_logins or user.locked_until is not None:
            changes.update(failed_logins=0, locked_until=None)
        if self._hasher.check_needs_rehash(user.password_hash):
            changes["password_hash"] = self._hasher.hash(password)
        if not changes:
            return user
        changes["updated_at"] = self._now()
        try:
            return self._services.store.users.update(
                user.model_copy(update=changes), expected_version=user.version
            )
        except Conflict:
            # Changed meanwhile (an admin edit, another login): the login still stands.
            return user

    # ------------------------------------------------------------------ tokens

    def issue_tokens(self, user: User, *, family_id: str | None = None) -> IssuedTokens:
        """A new access token and a new refresh token (of a new family unless given)."""
        access, expires_in = self.issue_access_token(user)
        refresh, record = self._new_refresh(user, family_id)
        self._services.store.refresh_tokens.put(record)
        return IssuedTokens(access, expires_in, refresh, record.expires_at)

    def issue_access_token(self, user: User) -> tuple[str, int]:
        """A signed access token for the user and its lifetime in seconds."""
        now = self._now()
        lifetime = int(self.settings.access_token_minutes * 60)
        claims = {
            "sub": user.id,
            "role": user.role.value,
            "iat": int(now.timestamp()),
            "exp": int(now.timestamp()) + lifetime,
            "iss": self.settings.jwt_issuer,
            "jti": secrets.token_hex(16),
        }
        return jwt.encode(claims, self._secret, algorithm=JWT_ALGORITHM), lifetime

    def _new_refresh(self, user: User, family_id: str | None) -> tuple[str, RefreshToken]:
        token = secrets.token_urlsafe(32)
        now = self._now()
        record = RefreshToken(
            user_id=user.id,
            family_id=family_id or f"fam_{secrets.token_hex(8)}",
            token_hash=hash_token(token),
            issued_at=now,
            expires_at=now + timedelta(days=self.settings.refresh_token_days),
        )
        return token, record

    def authenticate(self, access_token: str) -> Principal:
        """The user an access token speaks for.

        Raises:
            AuthFailed: bad signature, wrong issuer, expired, or the user is gone/disabled.
        """
        try:
            claims = jwt.decode(
                access_token,
                self._secret,
                algorithms=[JWT_ALGORITHM],
                issuer=self.settings.jwt_issuer,
                options={
                    "require": ["sub", "role", "iat", "exp", "iss", "jti"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as err:
            raise AuthFailed("invalid_token") from err
        now = self._now().timestamp()
        exp, iat, sub = claims.get("exp"), claims.get("iat"), claims.get("sub")
        if not isinstance(exp, (int, float)) or not isinstance(iat, (int, float)):
            raise AuthFailed("invalid_token")
        if not isinstance(sub, str):
            raise AuthFailed("invalid_token")
        if exp <= now - CLOCK_SKEW_SECONDS:
            raise AuthFailed("expired")
        if iat > now + CLOCK_SKEW_SECONDS:
            raise AuthFailed("invalid_token")
        user = self._services.store.users.get(sub)
        if user is None or user.disabled:
            raise AuthFailed("invalid_token")
        return Principal.of(user)

    def upload_grant(self, token: str) -> UploadGrant:
        """The media upload grant ``token`` is (:func:`verify_upload_grant` with this
        service's key and issuer). Raises :class:`AuthFailed`."""
        return verify_upload_grant(
            self._secret, token, issuer=self.settings.jwt_issuer, now=self._now()
        )

    def refresh(self, refresh_token: str) -> tuple[User, IssuedTokens]:
        """Rotate a refresh token: the presented one is spent, a new pair is issued.

        Raises:
            AuthFailed: unknown or expired token, user gone or disabled (a revoked token of
                a deleted or disabled user: ``unknown_user`` or ``disabled``, logged at
                INFO), or reuse of a spent token (``reuse_detected``: the whole family is
                revoked, logged as a WARNING).
        """
        tokens = self._services.store.refresh_tokens
        record = tokens.get_by_hash(hash_token(refresh_token))
        if record is None:
            raise AuthFailed("invalid_token")
        now = self._now()
        if record.revoked_at is not None or record.replaced_by is not None:
            owner = self._services.store.users.get(record.user_id)
            if owner is None or owner.disabled:
                # Deleting or disabling a user revokes its tokens: not a sign of theft.
                state = "deleted" if owner is None else "disabled"
                tokens.revoke_family(record.family_id, at=now)
                log.info("refresh token refused: user %s is %s", record.user_id, state)
                raise AuthFailed("unknown_user" if owner is None else "disabled")
            revoked = tokens.revoke_family(record.family_id, at=now)
            log.warning(
                "refresh token reuse for user %s: family revoked (%d live)",
                record.user_id,
                revoked,
            )
            raise AuthFailed("reuse_detected")
        if record.expires_at <= now:
            raise AuthFailed("expired")
        user = self._services.store.users.get(record.user_id)
        if user is None or user.disabled:
            tokens.revoke_family(record.family_id, at=now)
            raise AuthFailed("invalid_token")
        new_token, new_record = self._new_refresh(user, record.family_id)
        if not tokens.rotate(record.id, new_record, at=now):
            # Spent between our read and our write: a concurrent use of the same token.
            tokens.revoke_family(record.family_id, at=now)
            raise AuthFailed("reuse_detected")
        access, expires_in = self.issue_access_token(user)
        return user, IssuedTokens(access, expires_in, new_token, new_record.expires_at)

    def logout(self, refresh_token: str) -> str | None:
        """Revoke the token's family; return its user id (``None``: unknown token)."""
        tokens = self._services.store.refresh_tokens
        record = tokens.get_by_hash(hash_token(refresh_token))
        if record is None:
            return None
        tokens.revoke_family(record.family_id, at=self._now())
        return record.user_id

    def revoke_user(self, user_id: str) -> int:
        """Revoke every refresh token of the user (password change, disable, delete)."""
        return self._services.store.refresh_tokens.revoke_user(user_id, at=self._now())


def ensure_first_admin(services: Services) -> str | None:
    """Create the first account when there is none.

    Returns:
        The generated password of the new ``admin`` account (``secrets.token_urlsafe(18)``;
        show it once, it is not stored in clear), or ``None`` when users exist already.
    """
    users = services.store.users
    if users.count() > 0:
        return None
    password = secrets.token_urlsafe(18)
    now = services.clock()
    admin = User(
        username=FIRST_ADMIN_USERNAME,
        display_name="Administrator",
        role=Role.ADMIN,
        password_hash=PasswordHasher().hash(password),
        created_at=now,
        updated_at=now,
    )
    try:
        users.create(admin)
    except Conflict:
        return None  # another process created it first
    log.info("created the first admin account %r", FIRST_ADMIN_USERNAME)
    return password


# ---------------------------------------------------------------------- upload grants

UPLOAD_GRANT_AUDIENCE = "aios-media-upload"
"""``aud`` of a media upload grant: a grant is not an access token, nor the other way round
(an access token has no ``aud``; :meth:`Authenticator.authenticate` refuses any token that
has one, and :func:`verify_upload_grant` requires this one)."""

UPLOAD_GRANT_SECONDS = 30 * 24 * 3600
"""Lifetime of an upload grant, 30 days: it travels in a stream plan, which must not change
while its run goes on (a new grant would restart the connector's worker). The route also
refuses uploads to a run that is no longer active, which is the bound that matters."""


@dataclass(frozen=True)
class UploadGrant:
    """What a media upload grant allows: uploading files of run ``run_id`` from connector
    ``connector_id`` until ``expires_at`` (UTC)."""

    run_id: str
    connector_id: str
    expires_at: datetime


def issue_upload_grant(
    secret: bytes,
    *,
    run_id: str,
    connector_id: str,
    issuer: str,
    now: datetime,
    lifetime_seconds: int = UPLOAD_GRANT_SECONDS,
) -> str:
    """A JWT (HS256, key ``secret``) allowing ``connector_id`` to upload the media of run
    ``run_id`` (``PUT /api/v1/runs/{run_id}/media/{kind}/{name}``).

    Claims: ``aud`` :data:`UPLOAD_GRANT_AUDIENCE`, ``iss``, ``run_id``, ``connector_id``,
    ``iat``, ``exp`` (``iat`` + ``lifetime_seconds``), ``jti``; no ``sub``/``role``: it
    signs nobody in.

    Raises:
        ValueError: ``lifetime_seconds`` is not positive, or the key is shorter than 32 bytes.
    """
    if lifetime_seconds <= 0:
        raise ValueError(f"lifetime_seconds must be positive, got {lifetime_seconds}")
    if len(secret) < MIN_JWT_SECRET_BYTES:
        raise ValueError(f"the JWT secret must be at least {MIN_JWT_SECRET_BYTES} bytes")
    issued = int(now.timestamp())
    claims = {
        "aud": UPLOAD_GRANT_AUDIENCE,
        "iss": issuer,
        "run_id": run_id,
        "connector_id": connector_id,
        "iat": issued,
        "exp": issued + lifetime_seconds,
        "jti": secrets.token_hex(16),
    }
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM)


def verify_upload_grant(secret: bytes, token: str, *, issuer: str, now: datetime) -> UploadGrant:
    """Check a media upload grant (signature, audience, issuer, times); return what it allows.

    Raises:
        AuthFailed: ``invalid_token`` (bad signature, another audience — an access token —,
            missing claims, issued in the future) or ``expired``.
    """
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[JWT_ALGORITHM],
            audience=UPLOAD_GRANT_AUDIENCE,
            issuer=issuer,
            options={
                "require": ["aud", "iss", "run_id", "connector_id", "iat", "exp"],
                "verify_exp": False,
                "verify_iat": False,
            },
        )
    except jwt.PyJWTError as err:
        raise AuthFailed("invalid_token") from err
    exp, iat = claims.get("exp"), claims.get("iat")
    run_id, connector_id = claims.get("run_id"), claims.get("connector_id")
    if not isinstance(exp, (int, float)) or not isinstance(iat, (int, float)):
        raise AuthFailed("invalid_token")
    if not isinstance(run_id, str) or not isinstance(connector_id, str):
        raise AuthFailed("invalid_token")
    at = now.timestamp()
    if exp <= at - CLOCK_SKEW_SECONDS:
        raise AuthFailed("expired")
    if iat > at + CLOCK_SKEW_SECONDS:
        raise AuthFailed("invalid_token")
    return UploadGrant(
        run_id=run_id,
        connector_id=connector_id,
        expires_at=datetime.fromtimestamp(exp, tz=now.tzinfo),
    )
