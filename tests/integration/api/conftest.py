"""Fixtures of the API tests: a SQLite store on tmp_path, a controllable clock, the
resolver, and one user per role with tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_client import ApiClient
from api_support import PASSWORD, Account, ManualClock, add_user, make_settings
from argon2 import PasswordHasher

from aios.api.app import ApiResolver, create_app
from aios.domain import Role
from aios.services import Services
from aios.store.sqlite import SqliteStore


@pytest.fixture(scope="session")
def password_hash() -> str:
    """One Argon2id hash of PASSWORD, made once (hashing is slow on purpose)."""
    return PasswordHasher().hash(PASSWORD)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "aios.db")
    yield s
    s.close()


@pytest.fixture
def services(tmp_path: Path, store: SqliteStore, clock: ManualClock) -> Services:
    return Services(store=store, settings=make_settings(tmp_path), clock=clock)


@pytest.fixture
def app(services: Services) -> ApiResolver:
    return create_app(services)


@pytest.fixture
def api(app: ApiResolver) -> ApiClient:
    return ApiClient(app)


@pytest.fixture
def admin(app: ApiResolver, password_hash: str) -> Account:
    return add_user(app, "alice", Role.ADMIN, password_hash)


@pytest.fixture
def operator(app: ApiResolver, password_hash: str) -> Account:
    return add_user(app, "oscar", Role.OPERATOR, password_hash)


@pytest.fixture
def viewer(app: ApiResolver, password_hash: str) -> Account:
    return add_user(app, "vera", Role.VIEWER, password_hash)
