"""The connector's configuration: one YAML file, validated by pydantic.

Example (``examples/connector/connector.yaml`` is a complete one)::

    connector:
      id: site1-gw                       # the connector's device id on the platform
    platform:
      mqtt_url: mqtts://abc123-ats.iot.eu-west-1.amazonaws.com:8883
      tls: {ca_file: AmazonRootCA1.pem, cert_file: gw.cert.pem, key_file: gw.private.key}
    cameras:
      - id: cam-gate
        vendor: hikvision
        host: 10.0.0.21
        stream: sub
        username: admin
        password: env:CAM_GATE_PASSWORD  # credentials by reference, never inline
    plcs:
      - id: plc-line1
        host: 10.0.0.50
        registers:
          - {name: tank_level, address: 40001, data_type: float32, order: CDAB, unit: "%"}

Errors name the file, the line and the field path of every problem at once
(:class:`ConfigError`). Relative paths (TLS files, the data directory, a camera file URL,
``file:`` secret references) are relative to the configuration file's folder, and ``~`` is
the user's home folder. Secrets (camera passwords, the broker
password) are references — ``env:NAME`` (an environment variable) or
``file:PATH`` (the first line of a file) — resolved when the connector starts, so the YAML
file can be shared and versioned without the secrets.
"""

from __future__ import annotations

import math
import os
import re
import urllib.parse
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from aios.domain import DEVICE_ID_PATTERN
from aios.messages import METRIC_PATTERN
from aios.plc.modbus import (
    DATA_TYPES,
    DataType,
    Order,
    Table,
    format_reference,
    parse_address,
    register_count,
)

# --------------------------------------------------------------------------- errors


class ConfigError(ValueError):
    """The configuration cannot be used. ``errors`` lists one line per problem:
    ``connector.yaml:12: plcs[0].registers[1].data_type: Input should be ...``."""

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        self.errors = errors or [message]
        super().__init__(message if errors is None else message + "\n" + "\n".join(errors))


class FieldProblems(ValueError):
    """Raised by a model's cross-field rules: each problem names the field it is about.

    ``problems`` holds ``(field path relative to the model, message)`` pairs, e.g.
    ``(("data_type",), "coils hold bits: data_type must be bool")``; :func:`parse_config`
    appends the path to the model's own location so that the error names the exact field
    and its line.
    """

    def __init__(self, problems: list[tuple[tuple[int | str, ...], str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{_path(loc) or '(model)'}: {msg}" for loc, msg in problems))


class _Checks:
    """Collects cross-field problems; ``raise_if_any`` raises them together."""

    def __init__(self) -> None:
        self.problems: list[tuple[tuple[int | str, ...], str]] = []

    def add(self, message: str, *loc: int | str) -> None:
        self.problems.append((loc, message))

    def raise_if_any(self) -> None:
        if self.problems:
            raise FieldProblems(self.problems)


# --------------------------------------------------------------------------- secrets


_SECRET_REF = re.compile(r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+)$")


def _check_secret_ref(value: str) -> str:
    if not _SECRET_REF.match(value):
        # the value is not echoed: it may be a password typed inline
        raise ValueError(
            "secrets are given by reference, not inline: write env:VARIABLE_NAME (an "
            "environment variable) or file:/path/to/file (its first line)"
        )
    return value


SecretRef = Annotated[str, AfterValidator(_check_secret_ref)]
"""``env:NAME`` or ``file:PATH``; see :func:`resolve_secret`."""


class SecretError(ValueError):
    """A secret reference cannot be resolved (variable unset, file missing)."""


def resolve_secret(ref: str, *, base: Path | None = None) -> str:
    """Return the secret a reference names.

    ``env:NAME`` → the environment variable's value; ``file:PATH`` → the file's first line
    without its line ending (``~`` is expanded; a relative path is taken from ``base``,
    which :func:`load_config` has already applied: the folder of the configuration file).
    The error messages name the reference, never the secret.

    Raises:
        SecretError: the variable is unset or empty, or the file cannot be read.
    """
    kind, _, name = ref.partition(":")
    if kind == "env":
        value = os.environ.get(name)
        if not value:
            raise SecretError(
                f"environment variable {name} is not set (referenced as {ref}): set it in "
                f"the connector's environment (for the service: add the line {name}=... to "
                "/etc/aios/connector.env)"
            )
        return value
    if kind == "file":
        path = Path(name).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise SecretError(f"cannot read secret file {path}: {err.strerror or err}") from err
        line = text.splitlines()[0] if text else ""
        if not line:
            raise SecretError(f"secret file {path} is empty")
        return line
    raise SecretError(f"unknown secret reference {kind!r}: use env:NAME or file:PATH")


# --------------------------------------------------------------------------- shared


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


DeviceId = Annotated[
    str, Field(pattern=DEVICE_ID_PATTERN, description="Device id on the platform.")
]


def _unique(checks: _Checks, items: list[Any], field: str, attr: str, what: str) -> None:
    """Add a problem at ``field[i].attr`` for every item repeating an earlier one's ``attr``."""
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        value = getattr(item, attr)
        if value in seen:
            checks.add(
                f"{what} {seen[value]} and {index} both have the {attr} {value!r}; "
                f"{attr}s must be unique",
                field,
                index,
                attr,
            )
        else:
            seen[value] = index


# --------------------------------------------------------------------------- platform


class TlsConfig(_Model):
    """Mutual TLS to the broker (AWS IoT Core, or a broker with client certificates)."""

    ca_file: Path = Field(
        description="CA certificate(s) that signed the broker's certificate (PEM)."
    )
    cert_file: Path | None = Field(
        default=None, description="The connector's certificate (PEM); with key_file for mTLS."
    )
    key_file: Path | None = Field(
        default=None, description="The connector's private key (PEM). Never logged."
    )

    @model_validator(mode="after")
    def _pair(self) -> Self:
        checks = _Checks()
        if self.cert_file is not None and self.key_file is None:
            checks.add("cert_file is given without key_file: give both (or neither)", "key_file")
        if self.key_file is not None and self.cert_file is None:
            checks.add("key_file is given without cert_file: give both (or neither)", "cert_file")
        checks.raise_if_any()
        return self


class PlatformConfig(_Model):
    """Where the platform is: its MQTT endpoint, and its HTTP API for media uploads."""

    mqtt_url: str = Field(
        default="mqtt://127.0.0.1:1883",
        description="mqtt://host[:port] (plain, default port 1883) or mqtts://host[:port] "
        "(TLS, default port 8883; AWS IoT Core: mqtts://<prefix>-ats.iot.<region>.amazonaws.com).",
    )
    client_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="MQTT client id; default: the connector id (AWS IoT Core policies "
        "usually require the thing name).",
    )
    tls: TlsConfig | None = Field(default=None, description="Required for mqtts://.")
    username: str | None = Field(default=None, max_length=256, description="Broker user name.")
    password: SecretRef | None = Field(default=None, description="Broker password (reference).")
    mqtt_version: Literal["5", "3.1.1"] = Field(
        default="5",
        description="MQTT protocol version. 5 (default; AWS IoT Core, Mosquitto): the broker "
        "says why it refuses a message. 3.1.1 for brokers without MQTT 5 (aios up's "
        "embedded broker): refusals are not reported, the session is kept by clean "
        "session = false.",
    )
    keepalive_seconds: int = Field(default=30, ge=5, le=1200, description="MQTT keep alive, s.")
    reconnect_min_seconds: float = Field(
        default=1.0, gt=0, le=60, description="First reconnection delay, s (doubles up to max)."
    )
    reconnect_max_seconds: float = Field(
        default=60.0, gt=0, le=3600, description="Longest reconnection delay, s."
    )

    @field_validator("mqtt_version", mode="before")
    @classmethod
    def _mqtt_version_number(cls, value: Any) -> Any:
        # YAML reads `mqtt_version: 5` as the integer 5
        if isinstance(value, int | float) and not isinstance(value, bool) and value == 5:
            return "5"
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        try:
            parts = urllib.parse.urlsplit(value)
        except ValueError:  # e.g. an unclosed IPv6 bracket; the URL is not quoted
            raise ValueError(
                "write mqtt://host[:port] or mqtts://host[:port] (an IPv6 address in "
                "brackets: mqtt://[::1]:1883)"
            ) from None
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("write mqtt://host[:port] or mqtts://host[:port]")
        if parts.username or parts.password:
            raise ValueError("no credentials in mqtt_url: use username and password (a reference)")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as err:
            raise ValueError(f"bad port in mqtt_url: {err}") from err
        return value

    @model_validator(mode="after")
    def _tls_for_mqtts(self) -> Self:
        checks = _Checks()
        secure = self.mqtt_url.startswith("mqtts:")
        if secure and self.tls is None:
            checks.add(
                "mqtts:// needs tls (at least ca_file; cert_file and key_file for mTLS)", "tls"
            )
        if not secure and self.tls is not None:
            checks.add(
                "tls is given but mqtt_url is plain mqtt://: write mqtts://host[:port] "
                "(or remove tls)",
                "tls",
            )
        if self.reconnect_min_seconds > self.reconnect_max_seconds:
            checks.add(
                f"reconnect_min_seconds ({self.reconnect_min_seconds:g}) is larger than "
                f"reconnect_max_seconds ({self.reconnect_max_seconds:g})",
                "reconnect_min_seconds",
            )
        checks.raise_if_any()
        return self

    @property
    def host(self) -> str:
        host = urllib.parse.urlsplit(self.mqtt_url).hostname
        assert host is not None
        return host

    @property
    def port(self) -> int:
        parts = urllib.parse.urlsplit(self.mqtt_url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)


# --------------------------------------------------------------------------- cameras


def _camera_url_problem(url: str) -> str | None:
    """What is wrong with a camera ``url`` (None: nothing). Never quotes the URL: it may
    hold a password."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return "url is not a valid URL: write rtsp://host[:port]/path (IPv6 in brackets)"
    if parts.scheme in ("rtsp", "rtsps"):
        if parts.username or parts.password or "@" in parts.netloc:
            return "no credentials inside url: give username and password (a reference)"
        if not parts.hostname:
            return "url has no host: write rtsp://host[:port]/path"
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            return "url has a bad port: write rtsp://host[:port]/path with a port 1..65535"
        return None
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            return (
                "a file URL has no host: write file:///absolute/path.mp4, or a plain path "
                "(relative to the configuration file)"
            )
        if not parts.path:
            return "the file URL names no file: write file:///absolute/path.mp4"
        return None
    if parts.scheme == "":
        return None if url.strip() else "url is empty"
    return "url must be rtsp://, rtsps://, file:// or a file path"


Vendor = Literal["hikvision", "dahua", "amcrest", "axis", "reolink", "uniview", "generic"]


class CameraConfig(_Model):
    """An IP camera: by vendor, host, channel and stream; or by a raw URL.

    The stream URL is built by :func:`connector.cameras.camera_url`. ``url`` may also be a
    video file (``file:`` URL or path) played in real time in a loop — a camera stand-in
    for demonstrations and tests.
    """

    id: DeviceId
    name: str | None = Field(default=None, max_length=200, description="Display name.")
    vendor: Vendor = Field(default="generic", description="Builds the RTSP path for the model.")
    host: str | None = Field(default=None, min_length=1, max_length=253)
    port: int = Field(default=554, ge=1, le=65_535, description="RTSP port.")
    channel: int = Field(default=1, ge=1, le=256, description="Channel (NVR input), from 1.")
    stream: Literal["main", "sub"] = Field(
        default="main", description="main: full resolution; sub: the low-resolution stream."
    )
    path: str | None = Field(
        default=None, max_length=512, description="generic vendor: the RTSP path on the camera."
    )
    url: str | None = Field(
        default=None,
        description="Raw URL instead of vendor/host: rtsp[s]://host/path (no credentials: "
        "use username/password), or a video file (file:///path, or a path; relative to "
        "the configuration file, ~ expanded).",
    )
    username: str | None = Field(default=None, max_length=128)
    password: SecretRef | None = Field(
        default=None, description="Reference: env:NAME or file:PATH."
    )
    enabled: bool = Field(default=True, description="false: configured but not captured.")
    kvs_upload: bool = Field(
        default=False,
        description="Upload this camera's video to Amazon Kinesis Video Streams (needs the "
        "kvs section; see connector.kvs).",
    )
    open_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    read_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    stall_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="Watchdog: seconds without a frame → reconnect."
    )
    reconnect_max_seconds: float = Field(default=30.0, gt=0, le=600)

    @model_validator(mode="after")
    def _source(self) -> Self:
        checks = _Checks()
        if self.url is not None and self.host is not None:
            checks.add("give either host (with vendor) or url, not both", "url")
        if self.url is None and self.host is None:
            checks.add("give host (with vendor) or url", "host")
        if self.url is not None:
            problem = _camera_url_problem(self.url)
            if problem:
                checks.add(problem, "url")
        if self.vendor == "generic" and self.host is not None and self.path is None:
            checks.add("vendor generic needs path (or choose a vendor)", "path")
        if self.password is not None and self.username is None:
            checks.add("password given without username", "username")
        checks.raise_if_any()
        return self

    @property
    def is_file(self) -> bool:
        """True when the camera is a video file played in real time."""
        return self.url is not None and urllib.parse.urlsplit(self.url).scheme in ("", "file")


# --------------------------------------------------------------------------- Modbus


RegisterDataType = Literal["bool", "int16", "uint16", "int32", "uint32", "float32"]


class RegisterConfig(_Model):
    """One value on a Modbus device: where it is, how it is encoded, how it is scaled.

    The published value is ``raw * scale + offset`` (booleans 0/1, unscaled).
    """

    name: str = Field(pattern=METRIC_PATTERN, description="Metric name, e.g. 'tank_level'.")
    table: Table = Field(default="holding_register", description="Modbus table.")
    address: int | str = Field(
        description="0-based PDU address (0..9999, e.g. 16) or a Modicon reference of the "
        "table: 5 digits (40001 = holding register 0, 00017 = coil 16) or 6 digits (400001; "
        "410001 = holding register 10000). Numbers of 5 or 6 digits are references."
    )
    data_type: RegisterDataType = Field(
        default="uint16", description="bool for coils and discrete inputs."
    )
    order: Order = Field(default="ABCD", description="Word and byte order: ABCD CDAB BADC DCBA.")
    scale: float = Field(default=1.0, allow_inf_nan=False)
    offset: float = Field(default=0.0, allow_inf_nan=False)
    unit: str | None = Field(default=None, max_length=32)
    poll_interval_seconds: float | None = Field(
        default=None, gt=0, le=86_400, description="Overrides the device's interval."
    )
    writable: bool = Field(default=False, description="Commands may write it by name.")

    @field_validator("address", mode="before")
    @classmethod
    def _address_text(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(
                "write a 0-based address (a number such as 16) or a Modicon reference "
                "(such as 40001)"
            )
        # YAML reads 40001 as an int; a 5- or 6-digit reference must stay a reference
        return str(value) if isinstance(value, int) and value >= 10_000 else value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        checks = _Checks()
        table = self.table.replace("_", " ")
        bit_table = self.table in ("coil", "discrete_input")
        if bit_table and self.data_type != "bool":
            checks.add(f"{table}s hold bits: data_type must be bool", "data_type")
        if not bit_table and self.data_type == "bool":
            checks.add(
                f"{table}s hold 16-bit words: data_type must be one of " + ", ".join(DATA_TYPES),
                "data_type",
            )
        try:
            start = parse_address(self.address, self.table)
        except ValueError as err:
            message = str(err)
            if isinstance(self.address, str) and self.address.isdigit() and len(self.address) == 5:
                message += (
                    f"; numbers of 5 or 6 digits are read as Modicon references: for a "
                    f"0-based address from 10000 up write its six-digit reference (e.g. "
                    f"{format_reference(10_000, self.table)} for {table} 10000)"
                )
            checks.add(message, "address")
        else:
            if start + self.count > 65_536:
                checks.add(f"{self.data_type} at {start} runs past address 65535", "address")
        if self.writable and self.table in ("discrete_input", "input_register"):
            checks.add(f"{table}s are read-only; writable must be false", "writable")
        if self.data_type == "bool" and (self.scale != 1.0 or self.offset != 0.0):
            checks.add(
                "bool values are published as 0/1, unscaled: remove scale and offset",
                ("scale" if self.scale != 1.0 else "offset"),
            )
        checks.raise_if_any()
        return self

    @property
    def pdu_address(self) -> int:
        """0-based address in the table."""
        return parse_address(self.address, self.table)

    @property
    def count(self) -> int:
        """Items (bits or registers) the value spans."""
        if self.data_type == "bool":
            return 1
        dt: DataType = self.data_type
        return register_count(dt)


class ModbusDeviceConfig(_Model):
    """A Modbus device (PLC, or a sensor with a Modbus interface) and its register map."""

    id: DeviceId
    name: str | None = Field(default=None, max_length=200)
    transport: Literal["tcp", "rtu"] = "tcp"
    host: str | None = Field(default=None, min_length=1, max_length=253, description="TCP.")
    port: int = Field(default=502, ge=1, le=65_535, description="TCP port.")
    serial_port: str | None = Field(default=None, min_length=1, description="RTU: /dev/ttyUSB0.")
    baudrate: int = Field(default=19_200, ge=300, le=921_600, description="RTU.")
    parity: Literal["E", "O", "N"] = Field(default="E", description="RTU.")
    stopbits: Literal[1, 2] = Field(default=1, description="RTU.")
    unit_id: int = Field(default=1, ge=0, le=255, description="Modbus unit id (slave address).")
    timeout_seconds: float = Field(default=1.0, gt=0, le=60, description="Per request.")
    poll_interval_seconds: float = Field(default=1.0, gt=0, le=86_400)
    max_gap_registers: int = Field(
        default=0,
        ge=0,
        le=124,
        description="Unmapped registers a grouped read may span. 0 (default): never read "
        "across a gap — many devices answer ILLEGAL DATA ADDRESS for unmapped registers.",
    )
    enabled: bool = True
    registers: list[RegisterConfig] = Field(default_factory=list, max_length=10_000)

    @model_validator(mode="after")
    def _checks(self) -> Self:
        checks = _Checks()
        if self.transport == "tcp":
            if not self.host:
                checks.add("set host for Modbus TCP (or transport: rtu with serial_port)", "host")
            if self.serial_port is not None:
                checks.add(
                    "serial_port is for Modbus RTU: set transport: rtu (and remove host), "
                    "or remove serial_port",
                    "serial_port",
                )
        else:
            if not self.serial_port:
                checks.add("set serial_port for Modbus RTU (e.g. /dev/ttyUSB0)", "serial_port")
            if self.host is not None:
                checks.add(
                    "host is for Modbus TCP: for RTU through a serial-to-TCP server write "
                    "serial_port: socket://host:port (and remove host)",
                    "host",
                )
            if not 1 <= self.unit_id <= 247:
                checks.add(
                    "Modbus RTU unit ids are 1..247 (0 is broadcast: a device never answers it)",
                    "unit_id",
                )
        _unique(checks, self.registers, "registers", "name", "registers")
        checks.raise_if_any()
        return self

    def describe(self) -> str:
        """Where the device is, for messages (no secrets)."""
        if self.transport == "tcp":
            return f"Modbus TCP {self.host}:{self.port} unit {self.unit_id}"
        return f"Modbus RTU {self.serial_port} unit {self.unit_id}"


class PlcConfig(ModbusDeviceConfig):
    """A PLC on Modbus; accepts commands (write coil / register)."""


class ModbusSensorConfig(ModbusDeviceConfig):
    """A sensor read over Modbus (the same register map as a PLC; read only)."""

    type: Literal["modbus"] = "modbus"


class SimulatedMetric(_Model):
    """A simulated reading: ``mid + amplitude·sin(2πt/period)`` plus uniform noise."""

    name: str = Field(pattern=METRIC_PATTERN)
    unit: str | None = Field(default=None, max_length=32)
    mid: float = Field(default=20.0, allow_inf_nan=False)
    amplitude: float = Field(default=5.0, ge=0, allow_inf_nan=False)
    period_seconds: float = Field(default=600.0, ge=0.001, le=1e9, allow_inf_nan=False)
    noise: float = Field(default=0.2, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _finite(self) -> Self:
        checks = _Checks()
        if not math.isfinite(abs(self.mid) + self.amplitude + self.noise):
            checks.add(
                "mid ± (amplitude + noise) overflows a 64-bit float: use smaller values",
                "amplitude",
            )
        checks.raise_if_any()
        return self


class SimulatedSensorConfig(_Model):
    """A simulated sensor for demonstrations: readings follow a sine wave with noise."""

    type: Literal["simulated"]
    id: DeviceId
    name: str | None = Field(default=None, max_length=200)
    poll_interval_seconds: float = Field(default=5.0, gt=0, le=86_400)
    enabled: bool = True
    metrics: list[SimulatedMetric] = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _names(self) -> Self:
        checks = _Checks()
        _unique(checks, self.metrics, "metrics", "name", "metrics")
        checks.raise_if_any()
        return self


SensorConfig = Annotated[ModbusSensorConfig | SimulatedSensorConfig, Field(discriminator="type")]


# --------------------------------------------------------------------------- connector


class IdentityConfig(_Model):
    """Who the connector is on the platform."""

    id: DeviceId
    name: str | None = Field(default=None, max_length=200)


class QueueConfig(_Model):
    """The store-and-forward queue (SQLite in data_dir)."""

    max_bytes: int = Field(
        default=1 << 30,
        ge=1 << 20,
        description="Payload bytes kept while the platform is unreachable; when full, new "
        "telemetry is refused (counted and logged), never older messages dropped.",
    )
    inflight: int = Field(
        default=20, ge=1, le=1000, description="Messages published but not yet acknowledged."
    )


class LiveConfig(_Model):
    """Live view: a camera's video with detection boxes, sent to a browser over WebRTC
    (:mod:`connector.live`). The platform forwards the browser's offer as the ``live.offer``
    command; the connector answers and streams directly to the browser."""

    enabled: bool = Field(default=True, description="Answer live.offer commands.")
    max_viewers_per_camera: int = Field(
        default=3,
        ge=1,
        le=16,
        description="Concurrent viewers of one camera; a further offer is refused "
        "(each viewer costs one video encoder).",
    )
    max_fps: float = Field(
        default=10.0, ge=1, le=30, description="Frames per second sent to a viewer, at most."
    )
    max_width: int = Field(
        default=1280, ge=160, le=3840, description="Pixels; larger frames are scaled down."
    )
    max_height: int = Field(
        default=720, ge=120, le=2160, description="Pixels; larger frames are scaled down."
    )
    detect_fps: float = Field(
        default=5.0,
        ge=0,
        le=30,
        description="When no stream plan runs on the camera, boxes come from the default "
        "detector run at most this many times per second (0: no boxes then).",
    )
    min_confidence: float = Field(
        default=0.35, ge=0, le=1, description="Score below which that detector's boxes are hidden."
    )
    host_addresses: list[str] | None = Field(
        default=None,
        max_length=32,
        description="Local IP addresses offered to browsers as ICE host candidates "
        "(e.g. [127.0.0.1] for a browser on this machine). Unset: the environment variable "
        "AIOS_WEBRTC_HOST_ADDRESSES (comma-separated), else every non-loopback address "
        "(127.0.0.1 if there is none).",
    )

    @field_validator("host_addresses")
    @classmethod
    def _addresses(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        return [_ip_address(v) for v in value]


def _ip_address(value: str) -> str:
    """``value`` as a normalized IP address.

    Raises:
        ValueError: not an IPv4 or IPv6 address.
    """
    import ipaddress

    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address (e.g. 127.0.0.1 or 192.168.1.10)"
        ) from None


_REGION_PATTERN = r"^[a-z]{2}(-[a-z]+)+-[0-9]+$"


class KvsConfig(_Model):
    """Video upload to Amazon Kinesis Video Streams (PutMedia, :mod:`connector.kvs`) of the
    cameras marked ``kvs_upload``: H.264 in Matroska, one fragment per ``fragment_seconds``,
    for cloud placement of stream plans and for the archive.

    Credentials: ``iot`` (default) — temporary credentials from the AWS IoT credentials
    provider, authenticated by the connector's certificate (``platform.tls``) for the role
    alias ``role_alias``; ``environment`` — the standard AWS chain (environment variables,
    shared files, instance role).
    """

    region: str = Field(pattern=_REGION_PATTERN, description="AWS region, e.g. eu-west-1.")
    name_prefix: str = Field(
        default="aios",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="The deployment's NamePrefix: streams are <name_prefix>-<stage>-<camera id>.",
    )
    stage: str = Field(
        default="dev", pattern=r"^[A-Za-z0-9_.-]{1,32}$", description="Deployment stage."
    )
    credentials: Literal["iot", "environment"] = Field(
        default="iot", description="iot: the IoT credentials provider; environment: AWS chain."
    )
    credentials_endpoint: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?$",
        description="IoT credentials provider host (DescribeEndpoint iot:CredentialProvider): "
        "<prefix>.credentials.iot.<region>.amazonaws.com.",
    )
    role_alias: str | None = Field(
        default=None,
        pattern=r"^[\w=,@-]{1,128}$",
        description="IoT role alias whose role may put media on the streams.",
    )
    endpoint_url: str | None = Field(
        default=None,
        pattern=r"^https://",
        description="Kinesis Video control-plane URL (default: the region's public one).",
    )
    ca_file: Path | None = Field(
        default=None,
        description="CA bundle (PEM) for the HTTPS endpoints (default: the system's; the "
        "credentials provider: platform.tls.ca_file).",
    )
    fragment_seconds: float = Field(
        default=2.0, ge=0.5, le=10, description="Fragment (MKV cluster) duration, s."
    )
    max_fps: float = Field(default=10.0, ge=1, le=30, description="Frames per second sent.")
    max_width: int = Field(default=1280, ge=160, le=3840, description="Pixels; larger: scaled.")
    max_height: int = Field(default=720, ge=120, le=2160, description="Pixels; larger: scaled.")
    bitrate_kbps: int = Field(default=1000, ge=100, le=20_000, description="H.264 bit rate.")
    buffer_seconds: float = Field(
        default=30.0,
        ge=0,
        le=600,
        description="Video kept while Kinesis Video is unreachable (sent on reconnection).",
    )
    reconnect_min_seconds: float = Field(default=1.0, gt=0, le=60)
    reconnect_max_seconds: float = Field(default=60.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _credentials(self) -> Self:
        checks = _Checks()
        if self.credentials == "iot":
            if self.credentials_endpoint is None:
                checks.add(
                    "credentials: iot needs credentials_endpoint (aws iot describe-endpoint "
                    "--endpoint-type iot:CredentialProvider)",
                    "credentials_endpoint",
                )
            if self.role_alias is None:
                checks.add("credentials: iot needs role_alias", "role_alias")
        if self.reconnect_min_seconds > self.reconnect_max_seconds:
            checks.add(
                "reconnect_min_seconds is larger than reconnect_max_seconds",
                "reconnect_min_seconds",
            )
        checks.raise_if_any()
        return self


class ConnectorConfig(_Model):
    """The whole file."""

    connector: IdentityConfig
    platform: PlatformConfig = Field(default_factory=PlatformConfig)
    data_dir: Path = Field(
        default=Path("connector-data"),
        description="Queue database and media (relative: to the file; ~ expanded).",
    )
    heartbeat_seconds: float = Field(default=30.0, ge=1, le=3600)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    queue: QueueConfig = Field(default_factory=QueueConfig)
    cameras: list[CameraConfig] = Field(default_factory=list, max_length=256)
    plcs: list[PlcConfig] = Field(default_factory=list, max_length=256)
    sensors: list[SensorConfig] = Field(default_factory=list, max_length=1024)
    live: LiveConfig = Field(default_factory=LiveConfig)
    kvs: KvsConfig | None = Field(
        default=None, description="Video upload to Kinesis Video Streams."
    )

    @model_validator(mode="after")
    def _ids(self) -> Self:
        checks = _Checks()
        seen = {self.connector.id: "connector.id"}
        for group, items in (
            ("cameras", self.cameras),
            ("plcs", self.plcs),
            ("sensors", self.sensors),
        ):
            for index, item in enumerate(items):
                where = f"{group}[{index}].id"
                if item.id in seen:
                    checks.add(
                        f"device id {item.id!r} is already used by {seen[item.id]}; "
                        "every device needs its own id",
                        group,
                        index,
                        "id",
                    )
                else:
                    seen[item.id] = where
        for index, cam in enumerate(self.cameras):
            if cam.kvs_upload and self.kvs is None:
                checks.add(
                    "kvs_upload needs the kvs section (region, credentials)",
                    "cameras",
                    index,
                    "kvs_upload",
                )
        if self.kvs is not None and self.kvs.credentials == "iot":
            tls = self.platform.tls
            if tls is None or tls.cert_file is None:
                checks.add(
                    "credentials: iot authenticates with the connector's certificate: set "
                    "platform.tls.cert_file and key_file (or credentials: environment)",
                    "kvs",
                    "credentials",
                )
        checks.raise_if_any()
        return self

    def devices(
        self,
    ) -> dict[str, CameraConfig | PlcConfig | ModbusSensorConfig | SimulatedSensorConfig]:
        """Every configured device by id."""
        out: dict[str, CameraConfig | PlcConfig | ModbusSensorConfig | SimulatedSensorConfig] = {}
        for item in [*self.cameras, *self.plcs, *self.sensors]:
            out[item.id] = item
        return out


# --------------------------------------------------------------------------- loading


def _local_path(path: Path, base: Path) -> Path:
    """``path`` with ``~`` expanded, made absolute against ``base``."""
    path = path.expanduser()
    return path if path.is_absolute() else base / path


def _secret_path(ref: str | None, base: Path) -> str | None:
    """A ``file:`` reference made absolute against ``base`` (others unchanged)."""
    if ref is None or not ref.startswith("file:"):
        return ref
    return "file:" + str(_local_path(Path(ref.removeprefix("file:")), base))


def _file_camera_uri(url: str, base: Path) -> str:
    """A file camera's ``url`` (``file:`` URL or path) as an absolute ``file://`` URL."""
    parts = urllib.parse.urlsplit(url)
    raw = urllib.parse.unquote(parts.path) if parts.scheme == "file" else url
    return _local_path(Path(raw), base).as_uri()


def _resolve_paths(config: ConnectorConfig, base: Path) -> ConnectorConfig:
    """Make every relative path absolute against ``base`` (``~`` expanded): data_dir, the
    TLS files, ``file:`` secret references and file cameras (as ``file://`` URLs)."""
    platform = config.platform
    tls = platform.tls
    if tls is not None:
        tls = tls.model_copy(
            update={
                name: _local_path(value, base)
                for name in ("ca_file", "cert_file", "key_file")
                if (value := getattr(tls, name)) is not None
            }
        )
    platform = platform.model_copy(
        update={
            "tls": tls,
            "password": _secret_path(platform.password, base),
        }
    )
    cameras = []
    for cam in config.cameras:
        update: dict[str, Any] = {"password": _secret_path(cam.password, base)}
        if cam.is_file and cam.url is not None:
            update["url"] = _file_camera_uri(cam.url, base)
        cameras.append(cam.model_copy(update=update))
    kvs = config.kvs
    if kvs is not None and kvs.ca_file is not None:
        kvs = kvs.model_copy(update={"ca_file": _local_path(kvs.ca_file, base)})
    return config.model_copy(
        update={
            "data_dir": _local_path(config.data_dir, base),
            "platform": platform,
            "cameras": cameras,
            "kvs": kvs,
        }
    )


def _node_at(root: Any, loc: tuple[int | str, ...]) -> Any:
    """The deepest YAML node along a pydantic error location (for its line number)."""
    import yaml

    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            # the last one: merged keys (<<: *anchor) come first, the mapping's own after
            found = [
                value
                for key, value in node.value
                if isinstance(key, yaml.ScalarNode) and key.value == str(part)
            ]
            if not found:
                return node
            node = found[-1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if 0 <= part < len(node.value):
                node = node.value[part]
            else:
                return node
        else:
            return node
    return node


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _duplicate_keys(root: Any, name: str) -> list[tuple[int, str]]:
    """A problem line for every key repeated in one mapping (each node visited once, so
    that aliases cannot make the walk explode)."""
    import yaml

    problems: list[tuple[int, str]] = []
    visited: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    line = key.start_mark.line + 1
                    if key.value in seen:
                        problems.append(
                            (
                                line,
                                f"{name}:{line}: key {key.value!r} appears twice in the same "
                                f"mapping (first on line {seen[key.value]}; the later one "
                                "would silently win)",
                            )
                        )
                    else:
                        seen[key.value] = line
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return problems


def _duplicate_ids(data: dict[str, Any], root: Any, name: str) -> list[tuple[int, str]]:
    """What :meth:`ConnectorConfig._ids` reports, from the raw document (for a file whose
    other problems keep the model from being built)."""
    problems: list[tuple[int, str]] = []
    seen: dict[str, str] = {}
    connector = data.get("connector")
    if isinstance(connector, dict) and isinstance(connector.get("id"), str):
        seen[connector["id"]] = "connector.id"
    for group in ("cameras", "plcs", "sensors"):
        items = data.get(group)
        if not isinstance(items, list):
            continue
        for index, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                continue
            where = f"{group}[{index}].id"
            if item["id"] in seen:
                line = _node_at(root, (group, index, "id")).start_mark.line + 1
                problems.append(
                    (
                        line,
                        f"{name}:{line}: {where}: device id {item['id']!r} is already used by "
                        f"{seen[item['id']]}; every device needs its own id",
                    )
                )
            else:
                seen[item["id"]] = where
    return problems


# YAML 1.1 reads 00017 as octal 15; a Modicon coil reference must keep its digits.
_LEADING_ZERO = re.compile(r"^[-+]?0[0-9_]+$")


def _yaml_loader(text: str) -> Any:
    """A safe YAML loader whose integers written with leading zeros stay strings."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
        value = loader.construct_scalar(node)
        if isinstance(value, str) and _LEADING_ZERO.match(value):
            return value
        return loader.construct_yaml_int(node)

    Loader.add_constructor("tag:yaml.org,2002:int", construct_int)
    return Loader(text)


def _validation_problems(err: ValidationError, root: Any, name: str) -> list[tuple[int, str]]:
    """``name:line: field.path: message`` for every error pydantic found."""
    found: list[tuple[int, str]] = []
    for e in err.errors(include_url=False, include_input=False):
        loc = tuple(e["loc"])
        # the sensors union adds its tag ("modbus", "simulated") after the list index
        if len(loc) >= 3 and loc[0] == "sensors" and loc[2] in ("modbus", "simulated"):
            loc = loc[:2] + loc[3:]
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "union_tag_not_found":
            msg = "set type: modbus (a register map) or type: simulated"
            loc = (*loc, "type")
        elif e["type"] == "union_tag_invalid":
            msg = "type must be modbus or simulated"
            loc = (*loc, "type")
        elif e["type"] == "extra_forbidden":
            msg = "unknown field: check its spelling and its indentation, or remove it"
        elif e["type"] == "model_type":
            msg = "expected a mapping (indented key: value lines below it)" + (
                ", got nothing" if _node_at(root, loc).tag.endswith(":null") else ""
            )
        elif e["type"] == "list_type":
            msg = "expected a list (lines starting with '- ' below it)"
        elif e["type"] == "string_pattern_mismatch":
            pattern = (e.get("ctx") or {}).get("pattern")
            if pattern == DEVICE_ID_PATTERN:
                msg = (
                    "a device id is 1 to 128 characters: letters A-Z a-z, digits and _ . : - "
                    "(no spaces, no '/'), starting with a letter or a digit"
                )
            elif pattern == METRIC_PATTERN:
                msg = (
                    "a name is 1 to 128 characters: letters A-Z a-z, digits and _ . : - "
                    "(no spaces), starting with a letter"
                )
        error = (e.get("ctx") or {}).get("error")
        problems = (
            [((*loc, *sub), text) for sub, text in error.problems]
            if isinstance(error, FieldProblems)
            else [(loc, msg)]
        )
        for where, text in problems:
            line = _node_at(root, where).start_mark.line + 1
            found.append((line, f"{name}:{line}: {_path(where) or '(top level)'}: {text}"))
    return found


def parse_config(
    text: str, *, name: str = "connector.yaml", base: Path | None = None
) -> ConnectorConfig:
    """Parse and validate configuration text.

    Args:
        text: the YAML document.
        name: the file name used in error messages.
        base: folder relative paths are resolved against (default: the current folder).

    Returns:
        The configuration, with every relative path (data_dir, TLS files, ``file:`` secret
        references, file cameras — as ``file://`` URLs) made absolute against ``base``.

    Raises:
        ConfigError: not YAML, not a mapping, duplicate keys, or invalid fields; every
            problem is listed as ``name:line: field.path: message`` (lines from 1), sorted
            by line. Inline secrets are refused without being repeated.
    """
    import yaml

    loader = _yaml_loader(text)
    duplicates: list[tuple[int, str]] = []
    try:
        root = loader.get_single_node()
        # before construction, which flattens merge keys (<<: *anchor) into the mappings
        duplicates = _duplicate_keys(root, name) if root is not None else []
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        problem = getattr(err, "problem", None) or str(err)
        context, context_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
        if context and context_mark is not None:
            # e.g. "(while parsing a flow sequence started on line 3)": where to look
            problem += f" ({context} started on line {context_mark.line + 1})"
        raise ConfigError(f"{where}: not valid YAML: {problem}") from err
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError(
            f"{name}: the file must be a YAML mapping with at least 'connector: {{id: ...}}'"
        )
    problems = duplicates
    config: ConnectorConfig | None = None
    try:
        config = ConnectorConfig.model_validate(data)
    except ValidationError as err:
        problems.extend(_validation_problems(err, root, name))
        # the model's own check of unique ids runs only when every field is valid
        reported = {text for _, text in problems}
        problems.extend(p for p in _duplicate_ids(data, root, name) if p[1] not in reported)
    if problems or config is None:
        # stable sort: problems on one line keep pydantic's (field) order
        lines = [text for _, text in sorted(problems, key=lambda item: item[0])]
        raise ConfigError(f"{name}: {len(lines)} problem(s)", lines)
    return _resolve_paths(config, base or Path.cwd())


def load_config(path: str | Path) -> ConnectorConfig:
    """Read and validate a configuration file (see :func:`parse_config`); relative paths
    in it are relative to the file's folder.

    Raises:
        ConfigError: the file cannot be read or is not UTF-8 text, or :func:`parse_config`
            refuses it.
    """
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {err.start}: {err.reason}); save it as UTF-8"
        ) from err
    return parse_config(text, name=path.name, base=path.resolve().parent)
