"""Secret stores: environment, JSON file, chain; redaction; messages that never hold a value."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from aios.events.secrets import (
    ChainSecretStore,
    DictSecretStore,
    EnvSecretStore,
    FileSecretStore,
    SecretName,
    SecretNotFound,
    env_var_for,
    redact,
)

TOKEN = "123456:AAE-s3cr3t-t0ken"
PASSWORD = "hunter2-correct-horse"


def write_secrets(path: Path, content: str, mode: int = 0o600) -> Path:
    """Write a secrets file with the given permission bits."""
    path.write_text(content, encoding="utf-8")
    path.chmod(mode)
    return path


# --- environment ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "variable"),
    [
        ("telegram_bot_token", "AIOS_SECRET_TELEGRAM_BOT_TOKEN"),
        ("smtp.password", "AIOS_SECRET_SMTP_PASSWORD"),
        ("whatsapp-token", "AIOS_SECRET_WHATSAPP_TOKEN"),
        ("Plant1.modbus-Key", "AIOS_SECRET_PLANT1_MODBUS_KEY"),
    ],
)
def test_env_var_for_upper_cases_and_maps_dots_and_dashes(name: str, variable: str) -> None:
    """A secret name maps to AIOS_SECRET_<NAME>, '.' and '-' as '_'."""
    assert env_var_for(name) == variable


def test_env_store_reads_the_mapped_variable() -> None:
    """EnvSecretStore returns the value of AIOS_SECRET_<NAME>."""
    store = EnvSecretStore({"AIOS_SECRET_SMTP_PASSWORD": PASSWORD})
    assert store.get("smtp.password") == PASSWORD


def test_env_store_reads_the_process_environment_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without a mapping, EnvSecretStore reads os.environ at lookup time."""
    store = EnvSecretStore()
    monkeypatch.delenv("AIOS_SECRET_TELEGRAM_BOT_TOKEN", raising=False)
    with pytest.raises(SecretNotFound):
        store.get("telegram-bot.token")
    monkeypatch.setenv("AIOS_SECRET_TELEGRAM_BOT_TOKEN", TOKEN)
    assert store.get("telegram-bot.token") == TOKEN


@pytest.mark.parametrize("environ", [{}, {"AIOS_SECRET_TOKEN": ""}])
def test_env_store_unset_or_empty_is_not_found(environ: dict[str, str]) -> None:
    """An unset or empty variable is SecretNotFound."""
    with pytest.raises(SecretNotFound) as caught:
        EnvSecretStore(environ).get("token")
    assert caught.value.name == "token"


# --- file -------------------------------------------------------------------------------


def test_file_store_returns_values_and_rereads_the_file(tmp_path: Path) -> None:
    """FileSecretStore reads the JSON object on every lookup."""
    path = write_secrets(tmp_path / "secrets.json", json.dumps({"telegram_bot_token": TOKEN}))
    store = FileSecretStore(path)
    assert store.get("telegram_bot_token") == TOKEN
    # WHEN the file changes THEN the next lookup sees the change
    write_secrets(path, json.dumps({"telegram_bot_token": "rotated"}))
    assert store.get("telegram_bot_token") == "rotated"


def test_file_store_missing_file_is_not_found(tmp_path: Path) -> None:
    """A secrets file that does not exist means no secrets, not an error."""
    with pytest.raises(SecretNotFound):
        FileSecretStore(tmp_path / "absent.json").get("telegram_bot_token")


def test_file_store_absent_or_empty_entry_is_not_found(tmp_path: Path) -> None:
    """A name missing from the file, or mapped to '', is SecretNotFound."""
    path = write_secrets(tmp_path / "s.json", json.dumps({"empty": "", "other": PASSWORD}))
    store = FileSecretStore(path)
    for name in ("empty", "missing"):
        with pytest.raises(SecretNotFound):
            store.get(name)


@pytest.mark.parametrize(
    "content",
    [
        '{"telegram_bot_token": "123456:AAE-s3cr3t-t0ken"',  # truncated JSON
        "telegram_bot_token=123456:AAE-s3cr3t-t0ken",  # dotenv, not JSON
        '["123456:AAE-s3cr3t-t0ken"]',  # a list
        '{"telegram_bot_token": {"value": "123456:AAE-s3cr3t-t0ken"}}',  # nested
        '{"port": 587, "token": "123456:AAE-s3cr3t-t0ken"}',  # a number
    ],
)
def test_file_store_bad_file_says_the_expected_shape_without_values(
    tmp_path: Path, content: str
) -> None:
    """Bad JSON or a wrong shape is a ValueError saying the shape, never quoting the file."""
    path = write_secrets(tmp_path / "secrets.json", content)
    with pytest.raises(ValueError) as caught:
        FileSecretStore(path).get("telegram_bot_token")
    message = str(caught.value)
    assert "JSON object of names to strings" in message
    assert str(path) in message
    assert "s3cr3t" not in message


def test_file_store_non_utf8_file_is_a_value_error(tmp_path: Path) -> None:
    """A file that is not UTF-8 text is a ValueError saying the expected shape."""
    path = tmp_path / "secrets.json"
    path.write_bytes(b'{"token": "\xff\xfe"}')
    path.chmod(0o600)
    with pytest.raises(ValueError, match="JSON object of names to strings"):
        FileSecretStore(path).get("token")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_file_store_warns_when_group_or_others_can_read(
    tmp_path: Path, mode: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A group- or world-readable secrets file logs a warning naming the file, not values."""
    path = write_secrets(tmp_path / "secrets.json", json.dumps({"token": TOKEN}), mode)
    with caplog.at_level(logging.WARNING, logger="aios.events.secrets"):
        assert FileSecretStore(path).get("token") == TOKEN
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(path) in warnings[0].getMessage()
    assert "chmod 600" in warnings[0].getMessage()
    assert TOKEN not in caplog.text


def test_file_store_owner_only_file_does_not_warn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file readable by its owner only is read silently."""
    path = write_secrets(tmp_path / "secrets.json", json.dumps({"token": TOKEN}), 0o600)
    with caplog.at_level(logging.WARNING, logger="aios.events.secrets"):
        FileSecretStore(path).get("token")
    assert caplog.records == []


# --- chain ------------------------------------------------------------------------------


def test_chain_asks_stores_in_order_and_the_first_that_has_it_answers(tmp_path: Path) -> None:
    """The environment wins over the file; the file answers what the environment lacks."""
    path = write_secrets(
        tmp_path / "secrets.json", json.dumps({"token": "from-file", "smtp.password": PASSWORD})
    )
    chain = ChainSecretStore(
        EnvSecretStore({"AIOS_SECRET_TOKEN": "from-env"}), FileSecretStore(path)
    )
    assert chain.get("token") == "from-env"
    assert chain.get("smtp.password") == PASSWORD
    reversed_chain = ChainSecretStore(FileSecretStore(path), EnvSecretStore({}))
    assert reversed_chain.get("token") == "from-file"


def test_chain_with_no_store_holding_it_is_not_found() -> None:
    """When no store has the secret the chain raises SecretNotFound for that name."""
    chain = ChainSecretStore(EnvSecretStore({}), DictSecretStore({"other": PASSWORD}))
    with pytest.raises(SecretNotFound) as caught:
        chain.get("whatsapp.token")
    assert caught.value.name == "whatsapp.token"


def test_not_found_message_names_the_secret_but_holds_no_value(tmp_path: Path) -> None:
    """SecretNotFound's message names the missing secret and no stored value."""
    path = write_secrets(tmp_path / "secrets.json", json.dumps({"smtp.password": PASSWORD}))
    chain = ChainSecretStore(
        EnvSecretStore({"AIOS_SECRET_TELEGRAM_BOT_TOKEN": TOKEN}),
        FileSecretStore(path),
        DictSecretStore({"whatsapp": TOKEN}),
    )
    with pytest.raises(SecretNotFound) as caught:
        chain.get("telegram_token")
    message = f"{caught.value!s} {caught.value!r}"
    assert "telegram_token" in message
    assert TOKEN not in message
    assert PASSWORD not in message
    assert isinstance(caught.value, LookupError)


# --- names and redaction ------------------------------------------------------------------


class _Config(BaseModel):
    token: SecretName


@pytest.mark.parametrize("name", ["telegram_bot_token", "smtp.password", "a-b_c.d"])
def test_secret_name_accepts_names(name: str) -> None:
    """A SecretName field accepts letters, digits, '_', '.', '-' starting with a letter."""
    assert _Config(token=name).token == name


@pytest.mark.parametrize("value", ["", "1token", "has space", "123456:AAE-s3cr3t", "x" * 129])
def test_secret_name_rejects_what_looks_like_a_value(value: str) -> None:
    """A SecretName field refuses text that is not a name (e.g. a pasted token)."""
    with pytest.raises(ValidationError):
        _Config(token=value)


def test_redact_masks_every_occurrence_of_every_secret() -> None:
    """redact replaces each secret value wherever it appears."""
    text = f"POST /bot{TOKEN}/sendMessage failed; auth={PASSWORD}; again {TOKEN}"
    assert redact(text, [TOKEN, PASSWORD]) == "POST /bot***/sendMessage failed; auth=***; again ***"


def test_redact_ignores_empty_values_and_leaves_clean_text_alone() -> None:
    """An empty secret masks nothing; text without secrets is unchanged."""
    assert redact("nothing to hide", ["", "absent"]) == "nothing to hide"


def test_redact_masks_a_secret_that_contains_another_whole() -> None:
    """When one secret contains another, no part of the longer one is left visible."""
    short, long = "abc123", "abc123-EXTRA-PART"
    assert redact(f"key={long}", [short, long]) == "key=***"
    assert redact(f"key={long}", [long, short]) == "key=***"
