"""``aios/plc_write@1`` against a real pymodbus server on loopback."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from action_helpers import Clock, Sleeps, make_event, make_request, make_services
from pydantic import ValidationError

from aios.events.task import PermanentError, TaskRequest, TaskServices, TransientError
from aios.nodes import plc_write
from aios.nodes.plc_write import RESTORE_NAMESPACE, PlcWriteAction
from aios.plc.client import ModbusClient, ModbusConnection, ModbusConnectionError
from aios.plc.modbus import decode
from aios.plc.simulator import ModbusSimulator, SimulatorRequest, start_simulator

COILS = 64
REGISTERS = 300


@pytest.fixture
def plc() -> Iterator[ModbusSimulator]:
    with start_simulator(coils=COILS, holding_registers=REGISTERS) as sim:
        yield sim


@pytest.fixture
def services(clock: Clock, sleeps: Sleeps) -> TaskServices:
    return make_services({}, clock, sleeps)


def tcp(sim: ModbusSimulator) -> dict[str, Any]:
    return {"transport": "tcp", "host": sim.host, "port": sim.port, "unit_id": sim.device_id}


def action(services: TaskServices, **config: Any) -> PlcWriteAction:
    config.setdefault("cooldown_seconds", 0)
    return PlcWriteAction(plc_write.NODE.parse_config(config), services)


def request(event_id: str = "evt-1", phase: str | None = None, **fields: Any) -> TaskRequest:
    req = make_request(make_event(event_id, **fields), node_id="siren")
    if phase is not None:
        req.context["phase"] = phase
    return req


ORDERS = ["ABCD", "CDAB", "BADC", "DCBA"]


@pytest.mark.parametrize("order", ORDERS)
def test_values_read_back_after_writes_in_every_order(
    plc: ModbusSimulator, services: TaskServices, order: str
) -> None:
    """Write int16..float32 in one order; the device holds the expected registers."""
    # GIVEN writes of every data type in one word/byte order
    writes = [
        {"table": "holding_register", "address": 0, "data_type": "int32", "value": 123456789},
        {"table": "holding_register", "address": 2, "data_type": "uint32", "value": 3735928559},
        {"table": "holding_register", "address": 4, "data_type": "float32", "value": -2.25},
        {"table": "holding_register", "address": 6, "data_type": "int16", "value": -2},
        {"table": "holding_register", "address": 7, "data_type": "uint16", "value": 0x1234},
    ]
    for w in writes:
        w["order"] = order
    node = action(services, connection=tcp(plc), writes=writes)
    # WHEN the action runs
    result = node.run(request())
    # THEN it is sent and the registers hold the values in that order
    assert result["status"] == "sent", result
    regs = plc.read_holding_registers(0, 8)
    expected_int32 = {
        "ABCD": [0x075B, 0xCD15],
        "CDAB": [0xCD15, 0x075B],
        "BADC": [0x5B07, 0x15CD],
        "DCBA": [0x15CD, 0x5B07],
    }
    assert regs[0:2] == expected_int32[order]
    assert decode(regs[0:2], "int32", order) == 123456789  # type: ignore[arg-type]
    assert decode(regs[2:4], "uint32", order) == 3735928559  # type: ignore[arg-type]
    assert decode(regs[4:6], "float32", order) == -2.25  # type: ignore[arg-type]
    assert decode(regs[6:7], "int16", order) == -2  # type: ignore[arg-type]
    assert regs[7] == (0x1234 if order in ("ABCD", "CDAB") else 0x3412)


def test_references_address_the_right_items(plc: ModbusSimulator, services: TaskServices) -> None:
    """'40011' writes holding register 10 and '00017' coil 16."""
    # GIVEN writes addressed by Modicon references
    node = action(
        services,
        connection=tcp(plc),
        writes=[
            {"table": "holding_register", "address": "40011", "value": 77},
            {"table": "coil", "address": "00017", "value": True},
        ],
    )
    # WHEN run
    result = node.run(request())
    # THEN the 0-based items changed, and the result names them both ways
    assert plc.read_holding_registers(9, 3) == [0, 77, 0]
    assert plc.read_coils(15, 3) == [False, True, False]
    writes = result["detail"]["writes"]
    assert [(w["address"], w["reference"]) for w in writes] == [(10, "400011"), (16, "000017")]


def test_block_of_130_registers_is_split_into_legal_requests(
    plc: ModbusSimulator, services: TaskServices
) -> None:
    """130 registers go out as FC16 123 + 7; the pulse's read-back as FC03 125 + 5."""
    # GIVEN a pulse over a block of 130 registers whose current values are known
    before = [(i * 7) % 65536 for i in range(130)]
    plc.set_holding_registers(10, before)
    block = list(range(1000, 1130))
    node = action(
        services,
        connection=tcp(plc),
        writes=[{"table": "holding_register", "address": 10, "value": block}],
        pulse_seconds=1.5,
    )
    plc.clear_requests()
    # WHEN the write phase runs
    result = node.run(request(phase="write"))
    # THEN the old values were read in ≤125-register requests and the block written in ≤123
    assert result["status"] == "sent", result
    assert plc.requests == [
        SimulatorRequest(3, 10, 125),
        SimulatorRequest(3, 135, 5),
        SimulatorRequest(16, 10, 123),
        SimulatorRequest(16, 133, 7),
    ]
    assert plc.read_holding_registers(10, 130) == block
    assert result["detail"]["writes"][0]["requests"] == 2
    # AND the restore phase writes the old block back, split the same way
    plc.clear_requests()
    node.run(request(phase="restore"))
    assert plc.requests == [SimulatorRequest(16, 10, 123), SimulatorRequest(16, 133, 7)]
    assert plc.read_holding_registers(10, 130) == before


def test_client_reads_and_writes_130_registers(plc: ModbusSimulator) -> None:
    """The client alone splits a 130-register write and read (one request would be refused)."""
    values = [65535 - i for i in range(130)]
    with ModbusClient(ModbusConnection(**tcp(plc)), timeout_seconds=2) as client:
        plc.clear_requests()
        assert client.write_registers(100, values) == 2
        assert client.read_holding_registers(100, 130) == values
    assert [(r.function_code, r.count) for r in plc.requests] == [
        (16, 123),
        (16, 7),
        (3, 125),
        (3, 5),
    ]


def test_modbus_exception_is_permanent_and_names_the_code(
    plc: ModbusSimulator, services: TaskServices
) -> None:
    """A write past the device's registers fails with 02 ILLEGAL DATA ADDRESS."""
    # GIVEN an int32 at the last register (it needs two)
    node = action(
        services,
        connection=tcp(plc),
        writes=[
            {
                "name": "setpoint",
                "table": "holding_register",
                "address": REGISTERS - 1,
                "data_type": "int32",
                "value": 5,
            }
        ],
    )
    # WHEN run  THEN a permanent error naming the code, its meaning and the request
    with pytest.raises(PermanentError) as info:
        node.run(request())
    message = info.value.message
    assert "02 ILLEGAL DATA ADDRESS" in message
    assert "Write Multiple Registers (16) at address 299" in message
    # AND the cooldown was not consumed: a later event may try again
    with pytest.raises(PermanentError):
        node.run(request("evt-2"))


def test_coil_outside_the_device_is_permanent(plc: ModbusSimulator, services: TaskServices) -> None:
    """A coil the device does not have is refused with exception 02."""
    node = action(services, connection=tcp(plc), writes=[{"address": 4000, "value": True}])
    with pytest.raises(PermanentError, match=r"Write Single Coil .*02 ILLEGAL DATA ADDRESS"):
        node.run(request())


def test_pulse_sets_the_coil_then_restores_it(
    plc: ModbusSimulator, clock: Clock, sleeps: Sleeps
) -> None:
    """phase 'pulse': the siren coil is on while holding, off afterwards."""
    # GIVEN a siren pulse of 2 s, with a sleep that looks at the coil while holding
    seen: list[bool] = []

    def hold(seconds: float) -> None:
        sleeps(seconds)
        seen.append(plc.read_coils(5)[0])

    services = make_services({}, clock, sleeps)
    services.sleep = hold
    node = action(
        services,
        connection=tcp(plc),
        writes=[{"name": "siren", "address": "00006", "value": True}],
        pulse_seconds=2,
    )
    # WHEN run as one pulse
    result = node.run(request(phase="pulse"))
    # THEN on during the hold, off after, one 2 s wait, and the restore is in the result
    assert result["status"] == "sent", result
    assert seen == [True]
    assert sleeps.seconds == [2.0]
    assert plc.read_coils(5) == [False]
    assert result["detail"]["restore"]["writes"][0]["values"] == [False]
    assert services.state.get(RESTORE_NAMESPACE, "Intrusion/siren/exec-evt-1") is None


def test_pulse_as_phases_restores_previous_register_without_cooldown(
    plc: ModbusSimulator, services: TaskServices
) -> None:
    """write → (wait) → restore: the register gets its old value back; restore ignores cooldown."""
    # GIVEN a register holding 777 and a pulse with a long cooldown
    plc.set_holding_registers(20, [777])
    node = action(
        services,
        connection=tcp(plc),
        writes=[
            {"table": "holding_register", "address": "40021", "value": 1},
            {"address": 3, "value": True},
            {"address": 4, "value": True, "restore_value": True},
        ],
        pulse_seconds=2.5,
        cooldown_seconds=600,
    )
    # WHEN the compiler's phases run one by one
    assert PlcWriteAction.asl_phases(node.config) == [
        {"phase": "write"},
        {"wait_seconds": 2.5},
        {"phase": "restore"},
    ]
    written = node.run(request(phase="write"))
    during = (plc.read_holding_registers(20)[0], plc.read_coils(3, 2))
    restored = node.run(request(phase="restore"))
    # THEN written, then restored: previous register value, inverse coil, configured value
    assert written["status"] == "sent" and restored["status"] == "sent"
    assert during == (1, [True, True])
    assert plc.read_holding_registers(20) == [777]
    assert plc.read_coils(3, 2) == [False, True]
    # AND a second event inside the cooldown is throttled (no write happens)
    assert node.run(request("evt-2", phase="write"))["status"] == "throttled"
    assert plc.read_coils(3) == [False]


def test_no_pulse_is_one_phase(plc: ModbusSimulator, services: TaskServices) -> None:
    """Without pulse_seconds the compiler lays out a single write."""
    node = action(services, connection=tcp(plc), writes=[{"address": 0, "value": 1}])
    assert PlcWriteAction.asl_phases(node.config) == [{"phase": "write"}]


def test_restore_without_a_write_is_permanent(plc: ModbusSimulator, services: TaskServices) -> None:
    """A restore phase with nothing recorded for the execution is an error, not a guess."""
    node = action(
        services, connection=tcp(plc), writes=[{"address": 0, "value": 1}], pulse_seconds=1
    )
    with pytest.raises(PermanentError, match="nothing to restore"):
        node.run(request(phase="restore"))


def test_template_values_are_rendered_and_parsed(
    plc: ModbusSimulator, services: TaskServices
) -> None:
    """'{{ event.data.count }}' writes the event's count; text that is no number fails."""
    # GIVEN a register value from an event field and a coil from a comparison
    node = action(
        services,
        connection=tcp(plc),
        writes=[
            {"table": "holding_register", "address": 30, "value": "{{ event.data.count }}"},
            {"address": 7, "value": "{{ event.data.count > 1 }}"},
        ],
    )
    # WHEN run with count 2  THEN 2 is written and the coil set
    node.run(request(data={"count": 2}))
    assert plc.read_holding_registers(30) == [2]
    assert plc.read_coils(7) == [True]
    # WHEN the field is not a number  THEN a permanent error naming the write and template
    with pytest.raises(
        PermanentError, match=r"write 1: expected a number .*'many' \(rendered from"
    ):
        node.run(request("evt-2", data={"count": "many"}))


def test_rtu_framing(services: TaskServices) -> None:
    """Modbus RTU: the serial client reaches an RTU-framed server through socket://."""
    # GIVEN a device speaking RTU frames (CRC, no MBAP header)
    with start_simulator(framer="rtu", coils=16, holding_registers=16) as sim:
        node = action(
            services,
            connection={
                "transport": "rtu",
                "serial_port": f"socket://{sim.host}:{sim.port}",
                "baudrate": 115200,
                "parity": "N",
                "stopbits": 2,
                "unit_id": sim.device_id,
            },
            writes=[
                {
                    "table": "holding_register",
                    "address": 2,
                    "data_type": "float32",
                    "order": "CDAB",
                    "value": 1.5,
                },
                {"address": 1, "value": True},
            ],
        )
        # WHEN run  THEN the float32 is there in CDAB and the coil is set
        assert node.run(request())["status"] == "sent"
        assert sim.read_holding_registers(2, 2) == [0x0000, 0x3FC0]
        assert sim.read_coils(1) == [True]


def test_unreachable_server_is_transient(services: TaskServices) -> None:
    """Connection refused → TransientError, and the cooldown is released for a retry."""
    # GIVEN a port nobody listens on
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    node = action(
        services,
        connection={"host": "127.0.0.1", "port": port},
        writes=[{"address": 0, "value": True}],
        cooldown_seconds=60,
        timeout_seconds=1,
    )
    # WHEN run twice  THEN both attempts fail as transient (not throttled)
    for event_id in ("evt-1", "evt-2"):
        with pytest.raises(TransientError, match=f"cannot connect to Modbus TCP 127.0.0.1:{port}"):
            node.run(request(event_id))


def test_silent_server_is_transient() -> None:
    """A device that accepts the connection but never answers → TransientError (no reply)."""
    # GIVEN a TCP listener that reads and never replies
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    accepted: list[socket.socket] = []

    def swallow() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                accepted.append(conn)
            except TimeoutError:
                continue

    thread = threading.Thread(target=swallow, daemon=True)
    thread.start()
    try:
        node = action(
            TaskServices(),
            connection={"host": "127.0.0.1", "port": listener.getsockname()[1]},
            writes=[{"address": 0, "value": True}],
            timeout_seconds=0.3,
        )
        # WHEN run  THEN no reply within the timeout is transient
        with pytest.raises(TransientError, match="no reply"):
            node.run(request())
    finally:
        stop.set()
        thread.join(2)
        for conn in accepted:
            conn.close()
        listener.close()


def test_disabled_writes_nothing(plc: ModbusSimulator, services: TaskServices) -> None:
    """A disabled node leaves the device alone."""
    node = action(
        services, connection=tcp(plc), writes=[{"address": 0, "value": True}], disabled=True
    )
    assert node.run(request())["status"] == "disabled"
    assert plc.read_coils(0) == [False]
    assert plc.requests == []


@pytest.mark.parametrize(
    ("write", "message"),
    [
        ({"table": "coil", "address": "40001", "value": True}, "holding register reference"),
        ({"table": "holding_register", "address": 0, "value": 70000}, "out of range for uint16"),
        ({"table": "coil", "address": 0, "value": 2}, "a coil is 0 or 1"),
        ({"table": "holding_register", "address": 0, "value": "abc"}, "expected a number"),
        ({"table": "holding_register", "address": 0, "value": "{{ x"}, "template syntax"),
        (
            {"table": "holding_register", "address": 65535, "data_type": "int32", "value": 1},
            "past the last address",
        ),
        ({"address": 0, "value": [True, False], "restore_value": True}, "restore_value has 1"),
        ({"address": 0, "value": True, "colour": "red"}, "Extra inputs"),
    ],
)
def test_bad_configs_are_refused_when_saved(write: dict[str, Any], message: str) -> None:
    """Wrong-table references, out-of-range values and typos fail validation with a reason."""
    with pytest.raises(ValidationError, match=message):
        plc_write.NODE.parse_config({"connection": {"host": "127.0.0.1"}, "writes": [write]})


def test_connection_needs_host_or_serial_port() -> None:
    """TCP without host and RTU without serial port are refused."""
    with pytest.raises(ValidationError, match="set host"):
        plc_write.NODE.parse_config({"connection": {}, "writes": [{"address": 0, "value": 1}]})
    with pytest.raises(ValidationError, match="set serial_port"):
        plc_write.NODE.parse_config(
            {"connection": {"transport": "rtu"}, "writes": [{"address": 0, "value": 1}]}
        )


def test_manifest_and_schema_export() -> None:
    """The node exports as an event-tier output action with a JSON Schema."""
    exported = plc_write.NODE.export()
    assert exported["type"] == "aios/plc_write@1"
    assert exported["event_role"] == "action"
    assert "pulse_seconds" in exported["config_schema"]["properties"]


def test_a_serial_port_that_does_not_exist_is_named(tmp_path: Path) -> None:
    """An RTU link on a missing serial device says so, instead of a bare timeout."""
    missing = str(tmp_path / "ttyUSB9")
    client = ModbusClient(ModbusConnection(transport="rtu", serial_port=missing))
    with pytest.raises(ModbusConnectionError, match=r"serial port .*ttyUSB9 does not exist"):
        client.connect()
