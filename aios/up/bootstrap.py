"""Settings and services of ``aios up``.

Settings come from, highest precedence first: command-line options, environment variables
(``AIOS_*``), the ``.env`` file of the working directory, the config file given with
``--config`` (TOML: top-level keys are the setting names in lower case, e.g.
``data_dir = "/var/lib/aios"``, ``allowed_hosts = ["aios.example.com"]``), then defaults.
Every setting is documented in ``.env.example``.

Integration secrets (``AIOS_SECRET_<NAME>``) written in ``.env`` are exported to the
process environment (unless already set) so the pipelines' secret store finds them.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from aios.config import Settings
from aios.services import Services
from aios.store import factory
from aios.store.port import Store
from aios.up.broker import BrokerAddress, MqttDeviceLink, parse_broker_url
from aios.up.feed import TokenVerifier, WebSocketFeed

log = logging.getLogger(__name__)

LOG_LEVEL_NAMES = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_LEVELS = frozenset(logging.getLevelName(name) for name in LOG_LEVEL_NAMES)

SECRET_ENV_PREFIX = "AIOS_SECRET_"

Closers = list[tuple[str, Callable[[], None]]]
"""What to close at shutdown, in order, by name: ``runs``, ``link``, ``store``."""

_CONFIG_FILE_VALUES: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "aios_config_file_values", default=None
)


class ConfigError(ValueError):
    """The configuration cannot be used; the message says what to change."""


class UpSettings(Settings):
    """:class:`~aios.config.Settings` plus what only ``aios up`` reads. An empty variable
    (``AIOS_MODEL_PATH=``) counts as unset."""

    model_config = SettingsConfigDict(**{**Settings.model_config, "env_ignore_empty": True})

    broker_host: str = Field(
        default="127.0.0.1",
        description="Address the embedded MQTT broker listens on ('0.0.0.0': every "
        "interface; it accepts anonymous clients, so keep it on a trusted network).",
    )
    local_connector: Path | None = Field(
        default=None,
        description="A connector configuration (YAML, as aios-connector reads it) for the "
        "cameras, PLCs and sensors beside this machine: started in this process against "
        "the broker of aios up (the file's platform section is not used), its devices "
        "registered in the fleet.",
    )
    demo: bool = Field(
        default=False,
        description="Start the demo site (see aios.up.demo): a simulated PLC in this "
        "process, a local connector playing the demo video as a camera with the PLC and "
        "simulated sensors, and the intrusion pipeline playing on them. Same as --demo.",
    )
    demo_plc_port: int = Field(
        default=5020,
        ge=1,
        le=65535,
        description="TCP port of the demo's simulated Modbus PLC on 127.0.0.1.",
    )
    web_dir: Path | None = Field(
        default=None,
        description="The built console (index.html and assets), served at '/'. Default: "
        "web/dist beside the aios package, when it exists.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Options, environment, ``.env``, then the ``--config`` file (see module doc)."""
        file_values = _CONFIG_FILE_VALUES.get() or {}
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            InitSettingsSource(settings_cls, init_kwargs=file_values),
            file_secret_settings,
        )


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings of a TOML config file.

    Raises:
        ConfigError: the file cannot be read, is not TOML, or names unknown settings.
    """
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from err
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from err
    known = set(UpSettings.model_fields)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown setting(s) {', '.join(unknown)}; the settings are "
            f"{', '.join(sorted(known))} (see .env.example)"
        )
    return values


def export_dotenv_secrets(env_file: Path = Path(".env")) -> list[str]:
    """Copy ``AIOS_SECRET_*`` entries of ``env_file`` into ``os.environ`` (variables
    already set win); return the names exported."""
    if not env_file.is_file():
        return []
    exported = []
    for name, value in dotenv_values(env_file).items():
        if name.startswith(SECRET_ENV_PREFIX) and value and name not in os.environ:
            os.environ[name] = value
            exported.append(name)
    return exported


def load_settings(config_file: Path | None = None, **overrides: Any) -> UpSettings:
    """Settings from options (``overrides``, ``None`` values ignored), environment,
    ``.env`` and ``config_file`` (see the module doc).

    Raises:
        ConfigError: the config file is unusable, or a setting is invalid (the message
            names the setting and the problem).
    """
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    file_values = read_config_file(config_file) if config_file is not None else {}
    token = _CONFIG_FILE_VALUES.set(file_values)
    try:
        settings = UpSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from err
    except SettingsError as err:
        # pydantic-settings parses list and object settings as JSON before validating.
        match = re.search(r'field "([a-z_]+)"', str(err))
        name = f"AIOS_{match.group(1).upper()}" if match else "a setting"
        raise ConfigError(
            f"{name} cannot be read: lists and objects are written as JSON, "
            """e.g. AIOS_ALLOWED_HOSTS='["aios.example.com", "127.0.0.1"]'"""
        ) from err
    finally:
        _CONFIG_FILE_VALUES.reset(token)
    if logging.getLevelName(settings.log_level.upper()) not in LOG_LEVELS:
        raise ConfigError(
            f"AIOS_LOG_LEVEL {settings.log_level!r} is not one of {', '.join(LOG_LEVEL_NAMES)}"
        )
    export_dotenv_secrets()
    return settings


def database_path(settings: Settings) -> Path | None:
    """The SQLite file the settings name, or ``None`` for DynamoDB
    (:func:`aios.store.factory.database_path`).

    Raises:
        ConfigError: a malformed or unsupported database URL.
    """
    try:
        return factory.database_path(settings)
    except factory.DatabaseUrlError as err:
        raise ConfigError(str(err)) from err


def open_store(settings: Settings) -> Store:
    """The store the settings name (:func:`aios.store.factory.open_store`).

    Raises:
        ConfigError: a malformed or unsupported database URL.
    """
    try:
        return factory.open_store(settings)
    except factory.DatabaseUrlError as err:
        raise ConfigError(str(err)) from err


def broker_address(settings: Settings, embedded: BrokerAddress | None = None) -> BrokerAddress:
    """Where the service's MQTT clients connect: ``embedded`` (the broker ``aios up``
    started), else ``settings.broker_url``, else ``127.0.0.1:<broker_port>``.

    Raises:
        ConfigError: the broker URL is malformed.
    """
    if embedded is not None:
        return embedded
    if settings.broker_url:
        try:
            return parse_broker_url(settings.broker_url)
        except ValueError as err:
            raise ConfigError(f"AIOS_BROKER_URL: {err}") from err
    return BrokerAddress(host="127.0.0.1", port=settings.broker_port)


def access_token_verifier(services: Services) -> TokenVerifier:
    """Who an access token speaks for (its user id), checked as the API checks it."""
    from aios.api.auth import Authenticator, AuthFailed, load_jwt_secret

    authenticator = Authenticator(services, load_jwt_secret(services.settings))

    def verify(token: str) -> str | None:
        try:
            return authenticator.authenticate(token).user_id
        except AuthFailed:
            return None

    return verify


def _prepare_data_dir(settings: Settings) -> Path:
    data_dir = Path(settings.data_dir)
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"cannot create the data folder {data_dir}: {err.strerror}; set AIOS_DATA_DIR "
            "to a writable folder"
        ) from err
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"the data folder {data_dir} is not writable; set AIOS_DATA_DIR")
    return data_dir


def with_jwt_secret(settings: Settings) -> Settings:
    """``settings`` with ``jwt_secret`` set: the configured one, else the key kept in
    ``<data_dir>/jwt.key`` (48 random bytes, mode 0600, generated on first start).

    Raises:
        ConfigError: the configured or stored secret is shorter than 32 bytes.
    """
    from aios.api.auth import load_jwt_secret

    try:
        secret = load_jwt_secret(settings)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    if settings.jwt_secret is not None:
        return settings
    return settings.model_copy(update={"jwt_secret": SecretStr(secret.decode())})


def build_services(
    settings: Settings, *, broker: BrokerAddress | None = None
) -> tuple[Services, Closers]:
    """Open the store and build the process's ports.

    Creates the data folder (mode 0700), opens the store (:func:`open_store`), fixes the
    JWT secret (:func:`with_jwt_secret`), and builds a :class:`~aios.services.Services`
    with the WebSocket feed, an MQTT device link to ``broker`` (see
    :func:`broker_address`; it connects in the background) and the local run launcher
    (run files under ``<data_dir>/runs``, at most ``max_concurrent_streams`` runs).

    Returns:
        The services, and the closers to call at shutdown in order: ``runs`` (stop runs),
        ``link`` (flush and disconnect), ``store``.

    Raises:
        ConfigError: see the functions above.
    """
    from aios.runs.local import LocalRunLauncher

    data_dir = _prepare_data_dir(settings)
    settings = with_jwt_secret(settings)
    address = broker_address(settings, broker)
    store = open_store(settings)
    feed = WebSocketFeed(verify_token=lambda _token: None)
    link = MqttDeviceLink(address)
    services = Services(store=store, settings=settings, feed=feed, link=link)
    feed.verify_token = access_token_verifier(services)
    launcher = LocalRunLauncher(
        services, data_dir=data_dir, max_concurrent=settings.max_concurrent_streams
    )
    services.launcher = launcher
    link.start()
    closers: Closers = [("runs", launcher.shutdown), ("link", link.close), ("store", store.close)]
    return services, closers
