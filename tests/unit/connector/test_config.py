"""The connector's YAML configuration: validation, precise errors, secrets, paths."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from connector.config import (
    CameraConfig,
    ConfigError,
    ConnectorConfig,
    FieldProblems,
    ModbusSensorConfig,
    RegisterConfig,
    SecretError,
    SimulatedSensorConfig,
    load_config,
    parse_config,
    resolve_secret,
)

MINIMAL = "connector: {id: gw}\n"


def parse(text: str, **kwargs: object) -> ConnectorConfig:
    """Parse dedented YAML text."""
    return parse_config(textwrap.dedent(text), **kwargs)  # type: ignore[arg-type]


def errors(text: str, name: str = "connector.yaml") -> list[str]:
    """The problem lines parse_config reports for dedented YAML text."""
    with pytest.raises(ConfigError) as caught:
        parse_config(textwrap.dedent(text), name=name)
    return caught.value.errors


def plc_with(register_yaml: str) -> str:
    """A configuration with one PLC holding the given register (flow mapping)."""
    return f"""\
        connector: {{id: gw}}
        plcs:
          - id: plc1
            host: 10.0.0.5
            registers:
              - {register_yaml}
        """


# --------------------------------------------------------------------------- whole files


def test_minimal_file_gets_defaults() -> None:
    # GIVEN only the connector id WHEN parsed THEN the defaults apply
    config = parse_config(MINIMAL, base=Path("/srv/site"))
    assert config.connector.id == "gw"
    assert config.platform.mqtt_url == "mqtt://127.0.0.1:1883"
    assert (config.platform.host, config.platform.port) == ("127.0.0.1", 1883)
    assert config.data_dir == Path("/srv/site/connector-data")
    assert config.cameras == [] and config.plcs == [] and config.sensors == []


def test_devices_are_listed_by_id_across_kinds() -> None:
    config = parse(
        """\
        connector: {id: gw}
        cameras: [{id: cam1, vendor: axis, host: 10.0.0.2}]
        plcs: [{id: plc1, host: 10.0.0.3}]
        sensors:
          - {type: simulated, id: sim1, metrics: [{name: t}]}
          - {type: modbus, id: meter1, host: 10.0.0.4}
        """
    )
    devices = config.devices()
    assert list(devices) == ["cam1", "plc1", "sim1", "meter1"]
    assert isinstance(devices["sim1"], SimulatedSensorConfig)
    assert isinstance(devices["meter1"], ModbusSensorConfig)


# --------------------------------------------------------------------------- error locations


def test_error_names_file_line_and_nested_field_path() -> None:
    # GIVEN a bad data type deep in a register list (3rd PLC list item, 2nd register)
    lines = errors(
        """\
        connector:
          id: gw
        plcs:
          - id: plc1
            host: 10.0.0.5
          - id: plc2
            host: 10.0.0.6
            registers:
              - name: ok
                address: 0
              - name: bad
                address: 1
                data_type: float64
        """,
        name="site.yaml",
    )
    # THEN the line is the data_type line and the path goes through both lists
    assert len(lines) == 1
    assert lines[0].startswith("site.yaml:13: plcs[1].registers[1].data_type: ")
    assert "'bool', 'int16', 'uint16', 'int32', 'uint32' or 'float32'" in lines[0]


def test_errors_in_flow_mappings_point_at_their_line() -> None:
    lines = errors(
        """\
        connector: {id: gw}
        cameras:
          - {id: cam1, vendor: axis, host: 10.0.0.2}
          - {id: cam2, vendor: axis, host: 10.0.0.3, channel: 0}
        """
    )
    assert lines == [
        "connector.yaml:4: cameras[1].channel: Input should be greater than or equal to 1"
    ]


def test_several_errors_are_reported_at_once_in_line_order() -> None:
    text = """\
        connector: {id: "bad id"}
        platform:
          mqtt_url: http://broker
          keepalive_seconds: 1
        cameras:
          - id: cam1
            vendor: sony
            host: 10.0.0.2
        sensors:
          - type: simulated
            id: s1
            metrics: []
        """
    lines = errors(text)
    assert [line.split(": ")[0:2] for line in lines] == [
        ["connector.yaml:1", "connector.id"],
        ["connector.yaml:3", "platform.mqtt_url"],
        ["connector.yaml:4", "platform.keepalive_seconds"],
        ["connector.yaml:7", "cameras[0].vendor"],
        ["connector.yaml:12", "sensors[0].metrics"],
    ]
    # the exception's message holds them all, after a count
    with pytest.raises(ConfigError) as caught:
        parse_config(textwrap.dedent(text))
    assert str(caught.value) == "connector.yaml: 5 problem(s)\n" + "\n".join(lines)


def test_unknown_fields_are_refused_with_their_path() -> None:
    lines = errors(
        """\
        connector: {id: gw}
        plcs:
          - id: plc1
            host: 10.0.0.5
            registers:
              - name: level
                adress: 1
        colour: blue
        """
    )
    # the misspelt key also leaves the required field missing (on the register's line)
    assert lines == [
        "connector.yaml:6: plcs[0].registers[0].address: Field required",
        "connector.yaml:7: plcs[0].registers[0].adress: unknown field: check its spelling "
        "and its indentation, or remove it",
        "connector.yaml:8: colour: unknown field: check its spelling and its indentation, "
        "or remove it",
    ]


def test_missing_connector_section_is_named_at_top_level() -> None:
    lines = errors("platform: {mqtt_url: 'mqtt://127.0.0.1'}\n")
    assert lines == ["connector.yaml:1: connector: Field required"]


def test_cross_field_errors_name_the_precise_field() -> None:
    # GIVEN rules checked across fields (model validators) at several levels
    lines = errors(
        """\
        connector: {id: gw}
        platform:
          mqtt_url: mqtt://broker
          reconnect_min_seconds: 30
          reconnect_max_seconds: 10
        cameras:
          - id: cam1
            vendor: generic
            host: 10.0.0.2
        plcs:
          - id: plc1
            transport: rtu
            serial_port: /dev/ttyUSB0
            unit_id: 0
        """
    )
    # THEN each names the field to change and its line, not just the enclosing mapping
    assert lines == [
        "connector.yaml:4: platform.reconnect_min_seconds: reconnect_min_seconds (30) is "
        "larger than reconnect_max_seconds (10)",
        "connector.yaml:7: cameras[0].path: vendor generic needs path (or choose a vendor)",
        "connector.yaml:14: plcs[0].unit_id: Modbus RTU unit ids are 1..247 (0 is broadcast: "
        "a device never answers it)",
    ]


def test_model_validation_outside_a_file_still_names_the_field() -> None:
    # GIVEN a model built directly (as the daemon's tests do) WHEN a rule is broken
    with pytest.raises(ValueError, match=r"data_type: coils hold bits") as caught:
        RegisterConfig(name="x", table="coil", address=0, data_type="int16")
    error = caught.value.errors()[0]["ctx"]["error"]  # type: ignore[attr-defined]
    assert isinstance(error, FieldProblems)
    assert error.problems == [(("data_type",), "coils hold bits: data_type must be bool")]


# --------------------------------------------------------------------------- YAML problems


def test_duplicate_keys_are_refused_with_both_lines() -> None:
    lines = errors(
        """\
        connector: {id: gw}
        plcs:
          - id: plc1
            host: 10.0.0.5
            port: 502
            port: 5020
        """
    )
    assert lines == [
        "connector.yaml:6: key 'port' appears twice in the same mapping (first on line 5; "
        "the later one would silently win)"
    ]


def test_duplicate_keys_are_reported_with_validation_errors() -> None:
    lines = errors(
        """\
        connector: {id: gw}
        cameras:
          - {id: cam1, vendor: axis, host: 10.0.0.2, port: 0}
        connector: {id: gw2}
        """
    )
    assert [line.split(": ")[0] for line in lines] == ["connector.yaml:3", "connector.yaml:4"]
    assert "cameras[0].port" in lines[0]
    assert "key 'connector' appears twice" in lines[1]


def test_invalid_yaml_names_the_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("connector:\n  id: gw\n name: x\n")
    assert str(caught.value) == (
        "connector.yaml:3: not valid YAML: expected <block end>, but found '<block mapping "
        "start>' (while parsing a block mapping started on line 1)"
    )
    assert caught.value.errors == [str(caught.value)]
    # an unclosed bracket is found at the end; the message says where it was opened
    with pytest.raises(
        ConfigError, match=r"^c.yaml:4: not valid YAML: .*flow sequence started on line 3\)"
    ):
        parse_config("connector:\n  id: gw\n  name: [unclosed\n", name="c.yaml")


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- a\n- list\n", "just text\n", "42\n"])
def test_a_document_that_is_not_a_mapping_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match=r"must be a YAML mapping with at least 'connector"):
        parse_config(text, name="c.yaml")


def test_several_documents_are_refused() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config("connector: {id: a}\n---\nconnector: {id: b}\n")


def test_unsafe_yaml_tags_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"connector.yaml:1: not valid YAML"):
        parse_config("connector: !!python/object/apply:os.system ['true']\n")


def test_aliases_cannot_blow_up_the_duplicate_key_walk() -> None:
    # GIVEN a "billion laughs" document (each level refers to the previous ten times)
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    # WHEN parsed THEN the unknown keys are refused, quickly (no 10^9 walk)
    lines = errors("connector: {id: gw}\n" + "\n".join(levels) + "\n")
    assert len(lines) == 9 and all("unknown field" in line for line in lines)


# --------------------------------------------------------------------------- secrets


def test_inline_secret_is_refused_without_echoing_it() -> None:
    lines = errors(
        """\
        connector: {id: gw}
        platform:
          username: gw
          password: "S3cr3t-Pa55"
        cameras:
          - {id: cam1, vendor: hikvision, host: 10.0.0.2, username: admin, password: hunter2}
        """
    )
    assert [line.split(": ")[:2] for line in lines] == [
        ["connector.yaml:4", "platform.password"],
        ["connector.yaml:6", "cameras[0].password"],
    ]
    text = "\n".join(lines)
    assert "write env:VARIABLE_NAME" in text
    for secret in ("S3cr3t-Pa55", "hunter2"):
        assert secret not in text


def test_camera_url_with_credentials_is_refused_without_echoing_them() -> None:
    lines = errors(
        """\
        connector: {id: gw}
        cameras:
          - id: cam1
            url: rtsp://admin:Hunter2@10.0.0.2/stream1
          - id: cam2
            url: rtsp://admin@10.0.0.3/stream1
        """
    )
    assert lines == [
        "connector.yaml:4: cameras[0].url: no credentials inside url: give username and "
        "password (a reference)",
        "connector.yaml:6: cameras[1].url: no credentials inside url: give username and "
        "password (a reference)",
    ]


def test_secret_references_are_accepted() -> None:
    config = parse(
        """\
        connector: {id: gw}
        platform: {username: gw, password: file:/run/broker-password}
        cameras:
          - {id: cam1, vendor: hikvision, host: 10.0.0.2, username: admin, password: env:CAM1}
        """
    )
    assert config.platform.password == "file:/run/broker-password"
    assert config.cameras[0].password == "env:CAM1"


def test_resolve_secret_reads_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOS_TEST_CAM_PASSWORD", "p@ss:word")
    assert resolve_secret("env:AIOS_TEST_CAM_PASSWORD") == "p@ss:word"


@pytest.mark.parametrize("value", [None, ""])
def test_resolve_secret_names_an_unset_variable(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("AIOS_TEST_UNSET", raising=False)
    else:
        monkeypatch.setenv("AIOS_TEST_UNSET", value)
    with pytest.raises(SecretError, match=r"environment variable AIOS_TEST_UNSET is not set"):
        resolve_secret("env:AIOS_TEST_UNSET")


def test_resolve_secret_reads_the_first_line_of_a_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("first-line\nsecond\n", encoding="utf-8")
    assert resolve_secret("file:token", base=tmp_path) == "first-line"
    assert resolve_secret(f"file:{tmp_path / 'token'}") == "first-line"
    (tmp_path / "crlf").write_bytes(b"windows\r\n")
    assert resolve_secret("file:crlf", base=tmp_path) == "windows"


def test_resolve_secret_errors_name_the_file_not_the_secret(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match=r"cannot read secret file .*missing: No such file"):
        resolve_secret("file:missing", base=tmp_path)
    (tmp_path / "empty").write_text("", encoding="utf-8")
    with pytest.raises(SecretError, match=r"secret file .*empty is empty"):
        resolve_secret("file:empty", base=tmp_path)
    with pytest.raises(SecretError, match=r"unknown secret reference 'vault'"):
        resolve_secret("vault:x")


def test_file_secret_references_are_relative_to_the_config_file(tmp_path: Path) -> None:
    # GIVEN a config in a folder and a secret file beside it
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "broker.password").write_text("from-file\n", encoding="utf-8")
    (folder / "connector.yaml").write_text(
        "connector: {id: gw}\nplatform: {username: gw, password: file:broker.password}\n",
        encoding="utf-8",
    )
    # WHEN loaded from elsewhere THEN the reference is absolute and resolves
    config = load_config(folder / "connector.yaml")
    assert config.platform.password == f"file:{folder / 'broker.password'}"
    assert resolve_secret(config.platform.password) == "from-file"


# --------------------------------------------------------------------------- paths


def test_relative_paths_are_resolved_against_the_files_folder(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "connector.yaml"
    path.parent.mkdir()
    path.write_text(
        textwrap.dedent(
            """\
            connector: {id: gw}
            platform:
              mqtt_url: mqtts://broker.example:8883
              tls: {ca_file: certs/ca.pem, cert_file: certs/gw.pem, key_file: /abs/gw.key}
            data_dir: state
            cameras:
              - {id: f1, url: videos/demo video.mp4}
              - {id: f2, url: "file:clips/a.mp4"}
              - {id: f3, url: "file:///srv/b.mp4"}
              - {id: r1, url: "rtsp://10.0.0.9/live"}
            """
        ),
        encoding="utf-8",
    )
    config = load_config(path)
    base = path.parent
    assert config.data_dir == base / "state"
    tls = config.platform.tls
    assert tls is not None
    assert (tls.ca_file, tls.cert_file, tls.key_file) == (
        base / "certs/ca.pem",
        base / "certs/gw.pem",
        Path("/abs/gw.key"),
    )
    urls = [camera.url for camera in config.cameras]
    assert urls == [
        (base / "videos/demo video.mp4").as_uri(),  # file cameras become file:// URLs
        (base / "clips/a.mp4").as_uri(),
        "file:///srv/b.mp4",
        "rtsp://10.0.0.9/live",
    ]
    assert [c.is_file for c in config.cameras] == [True, True, True, False]


def test_home_folder_is_expanded_in_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    config = parse(
        """\
        connector: {id: gw}
        data_dir: ~/gw-data
        cameras: [{id: f1, url: ~/videos/v.avi}]
        """,
        base=Path("/elsewhere"),
    )
    assert config.data_dir == tmp_path / "gw-data"
    assert config.cameras[0].url == (tmp_path / "videos/v.avi").as_uri()


def test_a_file_url_with_a_host_is_refused() -> None:
    lines = errors(
        """\
        connector: {id: gw}
        cameras: [{id: f1, url: "file://videos/demo.mp4"}]
        """
    )
    assert lines == [
        "connector.yaml:2: cameras[0].url: a file URL has no host: write "
        "file:///absolute/path.mp4, or a plain path (relative to the configuration file)"
    ]


def test_load_config_names_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read .*absent.yaml: No such file"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match=r"cannot read .*: Is a directory"):
        load_config(tmp_path)


def test_load_config_refuses_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("connector: {id: gw, name: Caf\u00e9}\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml is not UTF-8 text \(byte 29: .*UTF-8"):
        load_config(path)


def test_load_config_errors_use_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text("connector: {id: gw}\nheartbeat_seconds: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.errors == [
        "gw.yaml:2: heartbeat_seconds: Input should be greater than or equal to 1"
    ]


# --------------------------------------------------------------------------- platform


def test_mqtts_without_tls_is_refused() -> None:
    lines = errors("connector: {id: gw}\nplatform:\n  mqtt_url: mqtts://x.example\n")
    assert lines == [
        "connector.yaml:3: platform.tls: mqtts:// needs tls (at least ca_file; cert_file and "
        "key_file for mTLS)"
    ]


def test_tls_on_a_plain_mqtt_url_is_refused() -> None:
    lines = errors(
        "connector: {id: gw}\nplatform:\n  mqtt_url: mqtt://x.example\n  tls: {ca_file: ca.pem}\n"
    )
    assert lines == [
        "connector.yaml:4: platform.tls: tls is given but mqtt_url is plain mqtt://: write "
        "mqtts://host[:port] (or remove tls)"
    ]


def test_aws_iot_core_mtls_endpoint() -> None:
    config = parse(
        """\
        connector: {id: site1-gw}
        platform:
          mqtt_url: mqtts://a1b2c3-ats.iot.eu-west-1.amazonaws.com
          tls: {ca_file: /c/AmazonRootCA1.pem, cert_file: /c/gw.pem, key_file: /c/gw.key}
        """
    )
    assert config.platform.host == "a1b2c3-ats.iot.eu-west-1.amazonaws.com"
    assert config.platform.port == 8883


def test_tls_certificate_and_key_go_together() -> None:
    lines = errors(
        """\
        connector: {id: gw}
        platform:
          mqtt_url: mqtts://x.example
          tls:
            ca_file: ca.pem
            cert_file: gw.pem
        """
    )
    assert lines == [
        "connector.yaml:5: platform.tls.key_file: cert_file is given without key_file: give "
        "both (or neither)"
    ]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mqtt://u:p@broker", "no credentials in mqtt_url"),
        ("tcp://broker", "write mqtt://host[:port] or mqtts://host[:port]"),
        ("mqtt://broker:99999", "bad port in mqtt_url"),
    ],
)
def test_bad_mqtt_urls(url: str, message: str) -> None:
    lines = errors(f"connector: {{id: gw}}\nplatform: {{mqtt_url: '{url}'}}\n")
    assert len(lines) == 1 and lines[0].startswith("connector.yaml:2: platform.mqtt_url: ")
    assert message in lines[0]
    assert ":p@" not in lines[0]


# --------------------------------------------------------------------------- cameras


def test_camera_needs_host_or_url_not_both() -> None:
    lines = errors(
        """\
        connector: {id: gw}
        cameras:
          - {id: cam1, vendor: axis}
          - {id: cam2, vendor: axis, host: 10.0.0.2, url: "rtsp://10.0.0.2/x"}
          - {id: cam3, url: "http://10.0.0.3/mjpg"}
          - {id: cam4, host: 10.0.0.4, vendor: axis, password: env:X}
        """
    )
    assert [line.split(": ", 2)[1] for line in lines] == [
        "cameras[0].host",
        "cameras[1].url",
        "cameras[2].url",
        "cameras[3].username",
    ]
    assert "url must be rtsp://, rtsps://, file:// or a file path" in lines[2]
    assert "password given without username" in lines[3]


def test_cameras_of_every_vendor_and_both_streams_parse() -> None:
    vendors = ["hikvision", "dahua", "amcrest", "axis", "reolink", "uniview"]
    cams = "\n".join(
        f"  - {{id: cam-{v}-{s}, vendor: {v}, host: 10.0.0.{i}, stream: {s}, channel: 2}}"
        for i, v in enumerate(vendors, start=1)
        for s in ("main", "sub")
    )
    config = parse_config(f"connector: {{id: gw}}\ncameras:\n{cams}\n")
    assert [(c.vendor, c.stream) for c in config.cameras] == [
        (v, s) for v in vendors for s in ("main", "sub")
    ]
    assert all(isinstance(c, CameraConfig) and not c.is_file for c in config.cameras)


# --------------------------------------------------------------------------- registers


@pytest.mark.parametrize(
    ("register", "table", "pdu"),
    [
        ("{name: r, address: 40001}", "holding_register", 0),
        ("{name: r, address: 400001}", "holding_register", 0),
        ("{name: r, address: 40010, data_type: float32}", "holding_register", 9),
        ("{name: r, address: 465536}", "holding_register", 65535),
        ("{name: r, address: 300001, table: input_register}", "input_register", 0),
        ("{name: r, address: 30002, table: input_register}", "input_register", 1),
        ("{name: r, address: 10001, table: discrete_input, data_type: bool}", "discrete_input", 0),
        ("{name: r, address: 00001, table: coil, data_type: bool}", "coil", 0),
        # YAML 1.1 would read 00017 as octal 15: the reference keeps its digits
        ("{name: r, address: 00017, table: coil, data_type: bool}", "coil", 16),
        ("{name: r, address: 000017, table: coil, data_type: bool}", "coil", 16),
        ("{name: r, address: '40001'}", "holding_register", 0),
        ("{name: r, address: 16}", "holding_register", 16),
        ("{name: r, address: 0, table: coil, data_type: bool}", "coil", 0),
    ],
)
def test_modicon_references_and_pdu_addresses(register: str, table: str, pdu: int) -> None:
    config = parse(plc_with(register))
    reg = config.plcs[0].registers[0]
    assert (reg.table, reg.pdu_address) == (table, pdu)


@pytest.mark.parametrize(
    ("register", "field", "message"),
    [
        (
            "{name: r, address: 40001, table: coil, data_type: bool}",
            "address",
            "reference 40001 is a holding register reference (4xxxx), but coils use",
        ),
        (
            "{name: r, address: 300001}",
            "address",
            "reference 300001 is an input register reference",
        ),
        (
            "{name: r, address: 65536}",
            "address",
            "reference 65536 starts with 6, which names no Modbus table (0 coils, 1 discrete "
            "inputs, 3 input registers, 4 holding registers); numbers of 5 or 6 digits are "
            "read as Modicon references: for a 0-based address from 10000 up write its "
            "six-digit reference (e.g. 410001 for holding register 10000)",
        ),
        ("{name: r, address: 40000}", "address", "reference 40000 is out of range"),
        ("{name: r, address: -1}", "address", "out of range"),
        ("{name: r, address: 465536, data_type: float32}", "address", "runs past address 65535"),
        ("{name: r, address: true}", "address", "write a 0-based address"),
        ("{name: r, address: 1.5}", "address", "write a 0-based address"),
        ("{name: r, address: 4x0001}", "address", "neither a 0-based address"),
        ("{name: r, address: 0, table: coil}", "data_type", "coils hold bits"),
        (
            "{name: r, address: 0, table: discrete_input, data_type: int16}",
            "data_type",
            "discrete inputs hold bits: data_type must be bool",
        ),
        (
            "{name: r, address: 0, data_type: bool}",
            "data_type",
            "holding registers hold 16-bit words: data_type must be one of int16, uint16",
        ),
        (
            "{name: r, address: 0, table: input_register, data_type: bool}",
            "data_type",
            "input registers hold 16-bit words",
        ),
        (
            "{name: r, address: 0, table: input_register, writable: true}",
            "writable",
            "input registers are read-only; writable must be false",
        ),
        (
            "{name: r, address: 0, table: discrete_input, data_type: bool, writable: true}",
            "writable",
            "discrete inputs are read-only",
        ),
        (
            "{name: r, address: 0, table: coil, data_type: bool, scale: 2}",
            "scale",
            "bool values are published as 0/1, unscaled",
        ),
        ("{name: r, address: 0, order: ABDC}", "order", "Input should be"),
        ("{name: r, address: 0, table: holding}", "table", "Input should be"),
        ("{name: r, address: 0, scale: .nan}", "scale", "finite number"),
        ("{name: 9lives, address: 0}", "name", "starting with a letter"),
    ],
)
def test_register_consistency_errors(register: str, field: str, message: str) -> None:
    lines = errors(plc_with(register))
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"connector.yaml:6: plcs[0].registers[0].{field}: "), lines[0]
    assert message in lines[0]


def test_register_data_types_and_orders() -> None:
    config = parse(
        """\
        connector: {id: gw}
        plcs:
          - id: plc1
            host: 10.0.0.5
            registers:
              - {name: a, address: 0, data_type: int16}
              - {name: b, address: 1, data_type: uint16, order: BADC}
              - {name: c, address: 2, data_type: int32, order: CDAB}
              - {name: d, address: 4, data_type: uint32, order: DCBA}
              - {name: e, address: 6, data_type: float32, scale: 0.1, offset: -40, unit: degC}
        """
    )
    regs = config.plcs[0].registers
    assert [(r.data_type, r.order, r.count) for r in regs] == [
        ("int16", "ABCD", 1),
        ("uint16", "BADC", 1),
        ("int32", "CDAB", 2),
        ("uint32", "DCBA", 2),
        ("float32", "ABCD", 2),
    ]
    assert (regs[4].scale, regs[4].offset, regs[4].unit) == (0.1, -40.0, "degC")


def test_register_names_are_unique_per_device() -> None:
    lines = errors(
        """\
        connector: {id: gw}
        plcs:
          - id: plc1
            host: 10.0.0.5
            registers:
              - {name: level, address: 0}
              - {name: flow, address: 1}
              - {name: level, address: 2}
        """
    )
    assert lines == [
        "connector.yaml:8: plcs[0].registers[2].name: registers 0 and 2 both have the name "
        "'level'; names must be unique"
    ]


# --------------------------------------------------------------------------- Modbus devices


def test_tcp_and_rtu_transports() -> None:
    config = parse(
        """\
        connector: {id: gw}
        plcs:
          - {id: tcp1, host: 10.0.0.5, port: 5020, unit_id: 0}
          - {id: rtu1, transport: rtu, serial_port: /dev/ttyUSB0, baudrate: 9600, parity: N,
             stopbits: 2, unit_id: 247}
        """
    )
    tcp, rtu = config.plcs
    assert tcp.describe() == "Modbus TCP 10.0.0.5:5020 unit 0"
    assert rtu.describe() == "Modbus RTU /dev/ttyUSB0 unit 247"
    assert (rtu.baudrate, rtu.parity, rtu.stopbits) == (9600, "N", 2)


def test_transport_fields_must_match() -> None:
    lines = errors(
        """\
        connector: {id: gw}
        plcs:
          - {id: p1}
          - {id: p2, host: 10.0.0.5, serial_port: /dev/ttyUSB0}
          - {id: p3, transport: rtu}
          - {id: p4, transport: rtu, serial_port: /dev/ttyS0, host: 10.0.0.6}
          - {id: p5, transport: rtu, serial_port: /dev/ttyS0, parity: X}
        """
    )
    assert [line.split(": ", 2)[:2] for line in lines] == [
        ["connector.yaml:3", "plcs[0].host"],
        ["connector.yaml:4", "plcs[1].serial_port"],
        ["connector.yaml:5", "plcs[2].serial_port"],
        ["connector.yaml:6", "plcs[3].host"],
        ["connector.yaml:7", "plcs[4].parity"],
    ]
    assert "socket://host:port" in lines[3]


# --------------------------------------------------------------------------- sensors


def test_sensor_type_is_required_and_checked() -> None:
    lines = errors(
        """\
        connector: {id: gw}
        sensors:
          - {id: s1, metrics: [{name: t}]}
          - {type: lorawan, id: s2}
          - type: simulated
            id: s3
            metrics:
              - {name: t, amplitude: -1}
          - type: modbus
            id: s4
            host: 10.0.0.7
            metrics: []
        """
    )
    assert lines == [
        "connector.yaml:3: sensors[0].type: set type: modbus (a register map) or type: simulated",
        "connector.yaml:4: sensors[1].type: type must be modbus or simulated",
        "connector.yaml:8: sensors[2].metrics[0].amplitude: Input should be greater than or "
        "equal to 0",
        "connector.yaml:12: sensors[3].metrics: unknown field: check its spelling and its "
        "indentation, or remove it",
    ]


def test_simulated_metric_names_are_unique() -> None:
    lines = errors(
        """\
        connector: {id: gw}
        sensors:
          - type: simulated
            id: s1
            metrics:
              - {name: t}
              - {name: t}
        """
    )
    assert lines == [
        "connector.yaml:7: sensors[0].metrics[1].name: metrics 0 and 1 both have the name "
        "'t'; names must be unique"
    ]


# --------------------------------------------------------------------------- device ids


def test_duplicate_device_ids_across_cameras_plcs_and_sensors() -> None:
    lines = errors(
        """\
        connector: {id: gw}
        cameras:
          - {id: dev1, vendor: axis, host: 10.0.0.2}
        plcs:
          - {id: plc1, host: 10.0.0.5}
          - {id: dev1, host: 10.0.0.6}
        sensors:
          - type: simulated
            id: plc1
            metrics: [{name: t}]
          - {type: simulated, id: gw, metrics: [{name: t}]}
        """
    )
    assert lines == [
        "connector.yaml:6: plcs[1].id: device id 'dev1' is already used by cameras[0].id; "
        "every device needs its own id",
        "connector.yaml:9: sensors[0].id: device id 'plc1' is already used by plcs[0].id; "
        "every device needs its own id",
        "connector.yaml:11: sensors[1].id: device id 'gw' is already used by connector.id; "
        "every device needs its own id",
    ]


def test_duplicate_device_ids_are_reported_beside_other_problems() -> None:
    # GIVEN a duplicate id and, elsewhere, an invalid field (the model is never built)
    lines = errors(
        """\
        connector: {id: gw}
        cameras:
          - {id: dev1, vendor: axis, host: 10.0.0.2}
        plcs:
          - {id: dev1, host: 10.0.0.6, port: 70000}
        """
    )
    # THEN both are reported, each once
    assert lines == [
        "connector.yaml:5: plcs[0].port: Input should be less than or equal to 65535",
        "connector.yaml:5: plcs[0].id: device id 'dev1' is already used by cameras[0].id; "
        "every device needs its own id",
    ]


# --------------------------------------------------------------------------- YAML forms


def test_merge_keys_override_without_duplicate_key_errors() -> None:
    # GIVEN a second PLC made from the first with a YAML merge key, overriding id and host
    config = parse(
        """\
        connector: {id: gw}
        plcs:
          - &line1
            id: plc1
            host: 10.0.0.5
            registers: [{name: level, address: 40001}]
          - <<: *line1
            id: plc2
            host: 10.0.0.6
        """
    )
    # THEN the overrides win and the register map is shared
    assert [(p.id, p.host) for p in config.plcs] == [("plc1", "10.0.0.5"), ("plc2", "10.0.0.6")]
    assert config.plcs[1].registers == config.plcs[0].registers
    # AND an error in an override names the override's line
    lines = errors(
        """\
        connector: {id: gw}
        plcs:
          - &line1
            id: plc1
            host: 10.0.0.5
            port: 502
          - <<: *line1
            id: plc2
            port: 70000
        """
    )
    assert lines == ["connector.yaml:9: plcs[1].port: Input should be less than or equal to 65535"]


def test_mqtt_version_may_be_written_as_a_number() -> None:
    assert parse(MINIMAL + "platform: {mqtt_version: 5}\n").platform.mqtt_version == "5"
    assert parse(MINIMAL + "platform: {mqtt_version: 3.1.1}\n").platform.mqtt_version == "3.1.1"
    assert errors(MINIMAL + "platform: {mqtt_version: 4}\n") == [
        "connector.yaml:2: platform.mqtt_version: Input should be '5' or '3.1.1'"
    ]


def test_empty_sections_and_bad_ids_say_what_to_write() -> None:
    lines = errors(
        """\
        connector:
        cameras:
        plcs:
          - {id: "plc 1", host: 10.0.0.5}
        """
    )
    assert lines == [
        "connector.yaml:1: connector: expected a mapping (indented key: value lines below "
        "it), got nothing",
        "connector.yaml:2: cameras: expected a list (lines starting with '- ' below it)",
        "connector.yaml:4: plcs[0].id: a device id is 1 to 128 characters: letters A-Z a-z, "
        "digits and _ . : - (no spaces, no '/'), starting with a letter or a digit",
    ]


def test_simulated_metrics_stay_finite() -> None:
    lines = errors(
        """\
        connector: {id: gw}
        sensors:
          - type: simulated
            id: s1
            metrics:
              - {name: t, mid: 1.0e+300, amplitude: 1.0e+308, noise: 1.0e+308}
              - {name: u, period_seconds: 1.0e-300}
        """
    )
    assert lines == [
        "connector.yaml:6: sensors[0].metrics[0].amplitude: mid ± (amplitude + noise) "
        "overflows a 64-bit float: use smaller values",
        "connector.yaml:7: sensors[0].metrics[1].period_seconds: Input should be greater "
        "than or equal to 0.001",
    ]


def test_unparsable_urls_say_what_to_write_without_quoting_them() -> None:
    lines = errors(
        """\
        connector: {id: gw}
        platform: {mqtt_url: "mqtt://bob:hunter2@[::1"}
        cameras:
          - {id: c1, url: "rtsp://bob:hunter2@[::1/x"}
        """
    )
    assert lines == [
        "connector.yaml:2: platform.mqtt_url: write mqtt://host[:port] or mqtts://host[:port] "
        "(an IPv6 address in brackets: mqtt://[::1]:1883)",
        "connector.yaml:4: cameras[0].url: url is not a valid URL: write "
        "rtsp://host[:port]/path (IPv6 in brackets)",
    ]
