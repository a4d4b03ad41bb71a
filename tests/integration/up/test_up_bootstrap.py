"""Settings sources, the services ``aios up`` builds, and its JSON logs."""

from __future__ import annotations

import io
import json
import logging
import os
import stat
from pathlib import Path

import pytest

from aios.api.auth import Authenticator, load_jwt_secret
from aios.domain import Role, User
from aios.up.bootstrap import (
    ConfigError,
    UpSettings,
    build_services,
    database_path,
    load_settings,
)
from aios.up.broker import BrokerAddress
from aios.up.feed import WebSocketFeed
from aios.up.logs import configure_logging


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AIOS_* variable from the outside, and a working directory without .env."""
    for name in list(os.environ):
        if name.startswith("AIOS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_precedence_options_env_dotenv_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Options beat the environment, which beats .env, which beats the config file."""
    # GIVEN a TOML config file, a .env and environment variables that overlap
    config = tmp_path / "aios.toml"
    config.write_text(
        'host = "0.0.0.0"\nport = 9000\nbroker_port = 1990\nlog_level = "DEBUG"\n'
        'allowed_hosts = ["aios.example.com"]\nrtsp_timeout = 4.5\n',
        encoding="utf-8",
    )
    (tmp_path / ".env").write_text(
        "AIOS_PORT=9100\nAIOS_BROKER_PORT=1991\nAIOS_SECRET_TELEGRAM_BOT=from-dotenv\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("AIOS_PORT", "9200")
    monkeypatch.delenv("AIOS_SECRET_TELEGRAM_BOT", raising=False)
    # WHEN settings are loaded with a --data-dir option
    settings = load_settings(config, data_dir=tmp_path / "d", host=None)
    # THEN each value comes from the highest source that sets it
    assert settings.data_dir == tmp_path / "d"  # option
    assert settings.port == 9200  # environment over .env and file
    assert settings.broker_port == 1991  # .env over file
    assert settings.host == "0.0.0.0"  # file (the None option is no option)
    assert settings.allowed_hosts == ["aios.example.com"]
    assert settings.rtsp_timeout == 4.5
    assert settings.log_level == "DEBUG"
    # AND the integration secret of .env is visible to the pipelines' secret store
    assert os.environ["AIOS_SECRET_TELEGRAM_BOT"] == "from-dotenv"
    monkeypatch.delenv("AIOS_SECRET_TELEGRAM_BOT")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("prot = 8080\n", "unknown setting.*prot"),
        ("port = \n", "not valid TOML"),
        ("port = 70000\n", "port: Input should be less than or equal to 65535"),
    ],
)
def test_bad_config_files_say_what_to_change(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "aios.toml"
    config.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_settings(config)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("AIOS_ALLOWED_HOSTS", "aios.example.com", "AIOS_ALLOWED_HOSTS cannot be read: lists"),
        ("AIOS_CORS_ORIGINS", "[https://a", "AIOS_CORS_ORIGINS cannot be read"),
        ("AIOS_LOG_LEVEL", "LOUD", "AIOS_LOG_LEVEL 'LOUD' is not one of DEBUG"),
        ("AIOS_PORT", "eighty", "port: Input should be a valid integer"),
    ],
)
def test_bad_environment_values_say_what_to_change(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_database_urls(tmp_path: Path) -> None:
    assert database_path(UpSettings(data_dir=tmp_path)) == tmp_path / "aios.db"
    url = f"sqlite:///{tmp_path}/x.db"  # an absolute path: four slashes in all
    assert database_path(UpSettings(database_url=url)) == tmp_path / "x.db"
    assert database_path(UpSettings(database_url="sqlite:///rel/x.db")) == Path("rel/x.db")
    assert database_path(UpSettings(database_url="dynamodb://table")) is None
    with pytest.raises(ConfigError, match="sqlite:///"):
        database_path(UpSettings(database_url="sqlite://x.db"))


def test_build_services_prepares_the_data_folder_and_the_ports(tmp_path: Path) -> None:
    """Data folder 0700, generated JWT key 0600, SQLite store, feed checking real tokens."""
    # GIVEN settings without a JWT secret, on a data folder that does not exist yet
    data_dir = tmp_path / "nested" / "data"
    settings = UpSettings(data_dir=data_dir)
    # WHEN the services are built (no broker runs: the link connects in the background)
    services, closers = build_services(settings, broker=BrokerAddress("127.0.0.1", 1))
    try:
        # THEN the folder, the key and the database exist with private modes
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        key = data_dir / "jwt.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert len(key.read_bytes().strip()) >= 32
        assert (data_dir / "aios.db").is_file()
        # AND the settings carry that key, so the API signs with it
        assert services.settings.jwt_secret is not None
        assert services.settings.jwt_secret.get_secret_value().encode() == key.read_bytes().strip()
        assert [name for name, _ in closers] == ["runs", "link", "store"]
        assert services.launcher is not None
        # AND the feed accepts the API's access tokens only
        user = services.store.users.create(
            User(username="op", role=Role.OPERATOR, password_hash="x")
        )
        auth = Authenticator(services, load_jwt_secret(services.settings))
        token, _ = auth.issue_access_token(user)
        feed = services.feed
        assert isinstance(feed, WebSocketFeed)
        assert feed.verify_token(token) == user.id
        assert feed.verify_token(token[:-2] + "xx") is None
        assert feed.verify_token("not-a-jwt") is None
    finally:
        for _name, close in closers:
            close()
    # WHEN built again: the same key is kept (tokens survive restarts)
    before = (data_dir / "jwt.key").read_bytes()
    services, closers = build_services(settings, broker=BrokerAddress("127.0.0.1", 1))
    for _name, close in closers:
        close()
    assert (data_dir / "jwt.key").read_bytes() == before


def test_unwritable_data_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot create the data folder"):
        build_services(UpSettings(data_dir=blocker / "data"))


def test_logs_are_json_lines_without_secrets() -> None:
    """One JSON object per line, extra fields kept, secrets redacted."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("INFO", stream)
        log = logging.getLogger("aios.test")
        log.info(
            "GET /ws/devices?token=eyJabc.def HTTP/1.1",
            extra={"device_id": "cam-1", "password": "hunter2", "broker": "mqtt://u:pw@h:1883"},
        )
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("failed")
        log.debug("not shown")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2
    first, second = lines
    assert first["level"] == "INFO"
    assert first["logger"] == "aios.test"
    assert first["message"] == "GET /ws/devices?token=[redacted] HTTP/1.1"
    assert first["device_id"] == "cam-1"
    assert first["password"] == "[redacted]"
    assert first["broker"] == "mqtt://u:[redacted]@h:1883"
    assert first["time"].endswith("+00:00")
    assert "RuntimeError: boom" in second["exception"]
    with pytest.raises(ValueError, match="log level"):
        configure_logging("LOUD")


def test_env_example_documents_every_setting_with_its_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """.env.example names every setting, nothing else, and its values are the defaults."""
    example = Path(__file__).resolve().parents[3] / ".env.example"
    lines = [
        line.removeprefix("# ").strip()
        for line in example.read_text(encoding="utf-8").splitlines()
        if line.startswith("# AIOS_")
    ]
    documented = {line.split("=", 1)[0] for line in lines}
    settings_names = {f"AIOS_{name.upper()}" for name in UpSettings.model_fields}
    assert documented - settings_names == {
        name for name in documented if name.startswith("AIOS_SECRET_")
    }
    assert settings_names - documented == set()
    # Uncommented as they are, the values load and equal the defaults.
    (tmp_path / ".env").write_text(
        "\n".join(line for line in lines if not line.startswith("AIOS_SECRET_")) + "\n",
        encoding="utf-8",
    )
    loaded = load_settings()
    assert loaded.model_dump() == UpSettings(_env_file=None).model_dump()  # type: ignore[call-arg]
