"""Open the store a process's settings name: SQLite on one machine, DynamoDB in the cloud.

``AIOS_DATABASE_URL``:

- unset: SQLite at ``<data_dir>/aios.db``;
- ``sqlite:///relative/aios.db`` or ``sqlite:////absolute/aios.db`` (as SQLAlchemy writes
  them);
- ``dynamodb://TABLE``: the single table of :mod:`aios.store.dynamodb`, with the region,
  credentials and endpoint from the AWS environment.
"""

from __future__ import annotations

from pathlib import Path

from aios.config import Settings
from aios.store.port import Store


class DatabaseUrlError(ValueError):
    """``AIOS_DATABASE_URL`` cannot be used; the message says what to write instead."""


def database_path(settings: Settings) -> Path | None:
    """The SQLite file of ``settings.database_url`` (``<data_dir>/aios.db`` when unset), or
    ``None`` for a DynamoDB URL.

    Raises:
        DatabaseUrlError: a malformed ``sqlite:`` URL, or a scheme other than ``sqlite`` and
            ``dynamodb``.
    """
    url = settings.database_url
    if not url:
        return Path(settings.data_dir) / "aios.db"
    if url.startswith("dynamodb://"):
        return None
    if not url.startswith("sqlite:"):
        raise DatabaseUrlError(
            f"AIOS_DATABASE_URL {url!r} is not supported: use sqlite:///path/aios.db, "
            "dynamodb://TABLE, or leave it unset"
        )
    if not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
        raise DatabaseUrlError(
            f"AIOS_DATABASE_URL {url!r}: write SQLite URLs as sqlite:///relative/path.db or "
            "sqlite:////absolute/path.db"
        )
    return Path(url[len("sqlite:///") :])


def open_store(settings: Settings) -> Store:
    """Open the store ``settings.database_url`` names (see the module docstring).

    Raises:
        DatabaseUrlError: see :func:`database_path`; also a ``dynamodb://`` URL without a
            table name.
    """
    path = database_path(settings)
    if path is not None:
        from aios.store.sqlite import SqliteStore

        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteStore(path)
    from aios.store.dynamodb import DynamoStore

    table = (settings.database_url or "").removeprefix("dynamodb://")
    if not table:
        raise DatabaseUrlError("AIOS_DATABASE_URL 'dynamodb://' names no table: dynamodb://TABLE")
    return DynamoStore(table, retention_days=settings.telemetry_retention_days)
