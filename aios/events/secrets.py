"""Secrets referenced by name: tokens and passwords never appear in pipelines or logs.

A node's configuration names a secret (``SecretName``); the node asks a
:class:`SecretStore` for its value when it acts. On one machine the store reads the
environment (``AIOS_SECRET_<NAME>``, upper-cased, ``.`` and ``-`` as ``_``) and then a local
JSON file (``{"name": "value"}``); in the cloud, AWS Secrets Manager.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Protocol

from pydantic import Field

log = logging.getLogger(__name__)

SECRET_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$"

SecretName = Annotated[
    str,
    Field(
        pattern=SECRET_NAME_PATTERN,
        description="Name of a secret in the secrets store (never the secret itself).",
    ),
]
"""Type of a config field that references a secret by name."""


class SecretNotFound(LookupError):
    """No secret of that name in the store; the action reports "not configured"."""

    def __init__(self, name: str) -> None:
        super().__init__(f"secret '{name}' is not set")
        self.name = name


class SecretStore(Protocol):
    """Looks up secret values by name."""

    def get(self, name: str) -> str:
        """Return the value; raise :class:`SecretNotFound` when it is not set."""
        ...


def env_var_for(name: str) -> str:
    """Return the environment variable that holds secret ``name``: ``AIOS_SECRET_<NAME>``."""
    return "AIOS_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


class EnvSecretStore:
    """Secrets from environment variables ``AIOS_SECRET_<NAME>``."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def get(self, name: str) -> str:
        """Return the variable's value; empty or unset is :class:`SecretNotFound`."""
        value = self._environ.get(env_var_for(name), "")
        if not value:
            raise SecretNotFound(name)
        return value


class FileSecretStore:
    """Secrets from a JSON file mapping names to values (read on every lookup).

    The file should be readable by its owner only; a warning is logged otherwise.

    Raises:
        ValueError: when the file exists but is not a JSON object of strings.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, str]:
        if not self.path.is_file():
            return {}
        mode = self.path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("secrets file %s is readable by others; chmod 600 it", self.path)
        shape = 'one JSON object of names to strings, e.g. {"telegram_bot_token": "123:abc"}'
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:  # its message gives a position, never the text
            raise ValueError(
                f"secrets file {self.path} is not valid JSON ({err.msg} at line {err.lineno} "
                f"column {err.colno}); it must be {shape}"
            ) from err
        except UnicodeDecodeError as err:
            raise ValueError(
                f"secrets file {self.path} is not UTF-8 text; it must be {shape}"
            ) from err
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()
        ):
            raise ValueError(f"secrets file {self.path} must be {shape}")
        return data

    def get(self, name: str) -> str:
        """Return the value stored under ``name``."""
        value = self._load().get(name, "")
        if not value:
            raise SecretNotFound(name)
        return value


class DictSecretStore:
    """Secrets held in memory (tests, and values resolved once at start)."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values = dict(values or {})

    def get(self, name: str) -> str:
        """Return the value stored under ``name``."""
        value = self._values.get(name, "")
        if not value:
            raise SecretNotFound(name)
        return value


class ChainSecretStore:
    """Asks each store in turn; the first that has the secret answers."""

    def __init__(self, *stores: SecretStore) -> None:
        self._stores = stores

    def get(self, name: str) -> str:
        """Return the first value found."""
        for store in self._stores:
            try:
                return store.get(name)
            except SecretNotFound:
                continue
        raise SecretNotFound(name)


def redact(text: str, secrets: Iterable[str]) -> str:
    """Return ``text`` with every occurrence of the given secret values masked as ``***``.

    Longer values are masked first, so a secret that contains another is masked whole.
    """
    for value in sorted({v for v in secrets if v}, key=len, reverse=True):
        text = text.replace(value, "***")
    return text
