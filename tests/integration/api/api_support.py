"""Helpers of the API tests: settings, a controllable clock, users with tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from aios.api.app import ApiResolver
from aios.config import Settings
from aios.domain import Role, User

PASSWORD = "correct horse battery staple"
JWT_SECRET = "test-secret-" + "k" * 40


class ManualClock:
    """A clock the test moves (timezone-aware UTC)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings of a test service (no .env file read)."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "jwt_secret": SecretStr(JWT_SECRET),
        "allowed_hosts": ["localhost", "127.0.0.1", "api.example.com"],
        "cors_origins": ["https://console.example.com"],
        "login_rate_per_minute": 100,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class Account:
    """A stored user and its tokens."""

    user: User
    token: str
    refresh_token: str


def add_user(
    app: ApiResolver, username: str, role: Role, password_hash: str, **fields: Any
) -> Account:
    """Store a user (password: PASSWORD) and mint its tokens."""
    now = app.services.clock()
    user = app.services.store.users.create(
        User(
            username=username,
            role=role,
            password_hash=password_hash,
            created_at=now,
            updated_at=now,
            **fields,
        )
    )
    tokens = app.auth.issue_tokens(user)
    return Account(user, tokens.access_token, tokens.refresh_token)
