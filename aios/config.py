"""Settings of the service side, from the environment (``AIOS_*``), a ``.env`` file or a
config file given to ``aios up --config``. Every setting is documented in ``.env.example``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Service settings. Environment variables are the field names upper-cased with the
    ``AIOS_`` prefix (``AIOS_JWT_SECRET``); lists are JSON (``'["https://a.example"]'``)."""

    model_config = SettingsConfigDict(
        env_prefix="AIOS_", env_file=".env", extra="ignore", env_nested_delimiter="__"
    )

    data_dir: Path = Field(
        default=Path("data"), description="Folder of the database, blobs, logs and state."
    )
    database_url: str | None = Field(
        default=None,
        description="'sqlite:///path/aios.db' (default: <data_dir>/aios.db) or "
        "'dynamodb://TABLE' (region and endpoint from the AWS environment).",
    )
    host: str = Field(default="127.0.0.1", description="Address `aios up` listens on.")
    port: int = Field(default=8080, ge=1, le=65535, description="HTTP port of `aios up`.")
    broker_url: str | None = Field(
        default=None,
        description="External MQTT broker, 'mqtt://host:port' or 'mqtts://…'; unset: "
        "`aios up` starts an embedded one on broker_port.",
    )
    broker_port: int = Field(default=1883, ge=1, le=65535, description="Embedded broker port.")
    jwt_secret: SecretStr | None = Field(
        default=None,
        description="HMAC key of access tokens (HS256), ≥ 32 bytes. Unset: generated on "
        "first start and kept in <data_dir>/jwt.key.",
    )
    jwt_issuer: str = "aios"
    access_token_minutes: float = Field(default=15, gt=0, le=24 * 60)
    refresh_token_days: float = Field(default=7, gt=0, le=365)
    login_max_failures: int = Field(
        default=5, ge=1, description="Failed logins in a row before the account locks."
    )
    login_lockout_minutes: float = Field(default=15, gt=0)
    login_rate_per_minute: int = Field(
        default=20, ge=1, description="Login attempts per minute per client address."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS (empty: same origin only)."
    )
    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "localhost"],
        description="Host header values accepted ('*' for any).",
    )
    allow_pending_devices: bool = Field(
        default=False,
        description="Register unknown devices that publish as pending instead of refusing.",
    )
    model_path: Path | None = Field(
        default=None, description="Detection model (ONNX); default: the fetched one."
    )
    max_concurrent_streams: int = Field(default=4, ge=1, le=256)
    rtsp_timeout: float = Field(default=10.0, gt=0, description="Seconds per RTSP read.")
    command_timeout_seconds: float = Field(default=30.0, gt=0)
    telemetry_retention_days: float = Field(
        default=30,
        gt=0,
        description="Days telemetry samples are kept; `aios up` deletes older ones about "
        "hourly (DynamoDB: hidden at once, removed by TTL).",
    )
    secrets_file: Path | None = Field(
        default=None, description="JSON file of integration secrets by name."
    )
    log_level: str = "INFO"
