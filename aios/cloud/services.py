"""The ports of a cloud function, built from the environment ``template.yaml`` gives it.

:func:`cloud_services` is what every entry point of ``functions/`` calls once per container:

- ``settings``: :class:`aios.config.Settings` from ``AIOS_*``, with ``jwt_secret`` read from
  the Secrets Manager secret ``AIOS_JWT_SECRET_ARN`` (when set; read once per container);
- ``store``: the store of ``AIOS_DATABASE_URL`` (``dynamodb://<DataTable>``), its
  integration secrets on Secrets Manager under ``AIOS_INTEGRATION_SECRET_PREFIX`` when that
  is set (:class:`aios.cloud.secrets.SecretsManagerSecretStore`);
- ``link``: AWS IoT Core's data plane (:class:`aios.cloud.iot.IotDataLink`);
- ``launcher``: ``aios.cloud.launcher.launcher_from_environment(services)`` when that
  module is installed (``None`` otherwise: the API answers 503 for Play and Stop).
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
from typing import Any

from pydantic import SecretStr

from aios.cloud import env
from aios.config import Settings
from aios.services import RunLauncher, Services
from aios.store.factory import open_store

log = logging.getLogger(__name__)

JWT_SECRET_FIELDS = ("secret", "key", "jwt_secret")
"""Keys accepted when the JWT secret's ``SecretString`` is a JSON object (a secret generated
with ``GenerateSecretString.GenerateStringKey``); a plain string is used as it is."""


class CloudConfigError(RuntimeError):
    """The function's environment lacks something it needs; the message names it."""


def _secrets_client() -> Any:
    import boto3

    return boto3.client("secretsmanager")


def _secret_value(text: str) -> str:
    """The key in a ``SecretString``: the string itself, or one of :data:`JWT_SECRET_FIELDS`
    of a JSON object."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data: Any = json.loads(stripped)
        except ValueError:
            return stripped
        if isinstance(data, dict):
            for name in JWT_SECRET_FIELDS:
                value = data.get(name)
                if isinstance(value, str) and value:
                    return value
            strings = [v for v in data.values() if isinstance(v, str) and v]
            if len(strings) == 1:
                return strings[0]
            raise CloudConfigError(
                f"the JWT secret is a JSON object without one of {', '.join(JWT_SECRET_FIELDS)}"
            )
    return stripped


@functools.cache
def _read_jwt_secret(arn: str) -> str:
    response = _secrets_client().get_secret_value(SecretId=arn)
    text = response.get("SecretString")
    if not text:
        raise CloudConfigError(f"the secret {env.JWT_SECRET_ARN} names has no SecretString")
    return _secret_value(text)


def jwt_secret_from_environment() -> str | None:
    """The HS256 key of access tokens from the secret ``AIOS_JWT_SECRET_ARN`` names (read once
    per container and ARN), or ``None`` when the variable is unset.

    Raises:
        CloudConfigError: the secret has no usable value.
        botocore.exceptions.ClientError: Secrets Manager refused (missing, no permission).
    """
    arn = os.environ.get(env.JWT_SECRET_ARN)
    if not arn:
        return None
    return _read_jwt_secret(arn)


def settings_from_environment(*, with_jwt_secret: bool = True) -> Settings:
    """:class:`Settings` from ``AIOS_*``, the JWT key from Secrets Manager when
    ``AIOS_JWT_SECRET_ARN`` is set (it wins over ``AIOS_JWT_SECRET``) and
    ``with_jwt_secret``."""
    secret = jwt_secret_from_environment() if with_jwt_secret else None
    if secret is None:
        return Settings()
    return Settings(jwt_secret=SecretStr(secret))


def _optional_module(name: str) -> Any | None:
    """``importlib.import_module(name)``, or ``None`` when that module is not installed
    (an error inside an installed module propagates)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name is not None and (err.name == name or name.startswith(err.name + ".")):
            return None
        raise


def launcher_for(services: Services) -> RunLauncher | None:
    """The run launcher of ``aios.cloud.launcher`` (``launcher_from_environment``), or
    ``None`` when that module is absent or has no launcher for this environment."""
    module = _optional_module("aios.cloud.launcher")
    if module is None:
        return None
    launcher: RunLauncher | None = module.launcher_from_environment(services)
    return launcher


def cloud_services(
    *, with_link: bool = True, with_launcher: bool = True, with_jwt_secret: bool = True
) -> Services:
    """The ports of a cloud function (see the module docstring).

    Args:
        with_link: give an IoT Core link (its endpoint is resolved at the first publish).
        with_launcher: look up the run launcher.
        with_jwt_secret: read the JWT key (functions that neither issue nor check tokens,
            such as the ingest functions, have no permission to read it).

    Raises:
        CloudConfigError: the JWT secret has no usable value.
        aios.store.factory.DatabaseUrlError: ``AIOS_DATABASE_URL`` is not usable.
    """
    settings = settings_from_environment(with_jwt_secret=with_jwt_secret)
    store = open_store(settings)
    prefix = os.environ.get(env.INTEGRATION_SECRET_PREFIX)
    if prefix:
        from aios.cloud.secrets import SecretsManagerSecretStore

        store.secrets = SecretsManagerSecretStore(prefix)
    services = Services(store=store, settings=settings)
    if with_link:
        from aios.cloud.iot import IotDataLink

        services.link = IotDataLink.from_environment()
    if with_launcher:
        services.launcher = launcher_for(services)
    return services


def environment_key() -> tuple[tuple[str, str], ...]:
    """Every ``AIOS_*`` variable and the AWS region, as a hashable key: what per-container
    state built from the environment is cached on (functions of different environments may
    share one process in tests)."""
    return tuple(
        sorted(
            (name, value)
            for name, value in os.environ.items()
            if name.startswith("AIOS_") or name in ("AWS_REGION", "AWS_DEFAULT_REGION")
        )
    )


def reset_caches() -> None:
    """Forget what was read once per container (the JWT key): for tests."""
    _read_jwt_secret.cache_clear()
