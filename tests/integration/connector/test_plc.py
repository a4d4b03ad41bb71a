"""The connector's Modbus poller against real pymodbus servers on loopback."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aios.messages import CommandRequest, DeviceEventItem, TelemetrySample
from aios.plc.modbus import encode
from aios.plc.simulator import ModbusSimulator, SimulatorRequest, start_simulator
from connector.config import ModbusSensorConfig, PlcConfig
from connector.plc import ModbusPoller

FLOAT_ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")


class Recorder:
    """Collects what a poller emits, with the monotonic time of each telemetry call."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.telemetry: list[tuple[float, str, list[TelemetrySample]]] = []
        self.events: list[tuple[str, DeviceEventItem]] = []

    def emit_telemetry(self, device_id: str, samples: list[TelemetrySample]) -> None:
        with self.lock:
            self.telemetry.append((time.monotonic(), device_id, samples))

    def emit_event(self, device_id: str, event: DeviceEventItem) -> None:
        with self.lock:
            self.events.append((device_id, event))

    def calls(self, device_id: str, since: float = 0.0) -> list[float]:
        with self.lock:
            return [t for t, d, _ in self.telemetry if d == device_id and t >= since]

    def event_types(self, device_id: str) -> list[str]:
        with self.lock:
            return [e.type for d, e in self.events if d == device_id]

    def last_values(self, device_id: str) -> dict[str, float]:
        with self.lock:
            for _, d, samples in reversed(self.telemetry):
                if d == device_id:
                    return {s.metric: s.value for s in samples}
        return {}


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout} s")


def plc(sim: ModbusSimulator, device_id: str = "plc-1", **fields: Any) -> PlcConfig:
    data: dict[str, Any] = {
        "id": device_id,
        "host": sim.host,
        "port": sim.port,
        "unit_id": sim.device_id,
        "timeout_seconds": 0.5,
        "registers": [],
    }
    data.update(fields)
    return PlcConfig.model_validate(data)


def command(name: str, device_id: str = "plc-1", **params: Any) -> CommandRequest:
    now = datetime.now(UTC)
    return CommandRequest(
        message_id=f"m-{name}",
        time=now,
        request_id=f"r-{name}",
        device_id=device_id,
        name=name,
        params=params,
        deadline=now + timedelta(seconds=30),
    )


# --------------------------------------------------------------------------- register map

MAP: list[dict[str, Any]] = [
    *(
        {"name": f"flow_{o.lower()}", "address": 2 * i, "data_type": "float32", "order": o}
        for i, o in enumerate(FLOAT_ORDERS)
    ),  # 0..7
    {"name": "count", "address": "40009", "data_type": "int32"},  # 8-9
    {"name": "count_cdab", "address": 10, "data_type": "int32", "order": "CDAB"},  # 10-11
    {"name": "level", "address": 12, "scale": 0.1, "unit": "%"},  # 12
    {"name": "temp", "address": 13, "data_type": "int16", "scale": 0.5, "offset": -10},  # 13
    # 14..19 unmapped: the device refuses reads that touch them
    {"name": "pressure", "address": 20, "scale": 0.01, "unit": "bar"},  # 20
    {"name": "setpoint", "address": 21, "data_type": "float32", "order": "CDAB", "writable": True},
    {"name": "running", "address": 3, "table": "coil", "data_type": "bool"},
    {"name": "pump", "address": 4, "table": "coil", "data_type": "bool", "writable": True},
    {"name": "door", "address": 1, "table": "discrete_input", "data_type": "bool"},
    {"name": "ambient", "address": "300001", "table": "input_register", "data_type": "float32"},
]
HOLE = (14, 6)


@pytest.fixture
def device() -> Iterator[ModbusSimulator]:
    with start_simulator(
        coils=16,
        discrete_inputs=16,
        holding_registers=40,
        input_registers=4,
        unmapped_registers=[HOLE],
    ) as sim:
        for i, order in enumerate(FLOAT_ORDERS):
            sim.set_holding_registers(2 * i, encode(12.5 + i, "float32", order))  # type: ignore[arg-type]
        sim.set_holding_registers(8, encode(-123456789, "int32"))
        sim.set_holding_registers(10, encode(987654321, "int32", "CDAB"))
        sim.set_holding_registers(12, [655])  # 65.5 %
        sim.set_holding_registers(13, encode(-7, "int16"))  # -7 * 0.5 - 10 = -13.5
        sim.set_holding_registers(20, [1234])  # 12.34 bar
        sim.set_holding_registers(21, encode(42.25, "float32", "CDAB"))
        sim.set_coils(3, [True])
        sim.set_discrete_inputs(1, [True])
        sim.set_input_registers(0, encode(21.75, "float32"))
        sim.clear_requests()
        yield sim


def test_register_map_is_read_in_grouped_requests_and_decoded(device: ModbusSimulator) -> None:
    """Every word order, int32, scaling and a gap: the fewest legal requests, right values."""
    # GIVEN a poller for the register map
    rec = Recorder()
    poller = ModbusPoller(plc(device, registers=MAP), rec.emit_telemetry, rec.emit_event)
    try:
        # WHEN it polls once
        result = poller.poll_once()
    finally:
        poller.stop()
    # THEN the device received one request per contiguous span, none across the hole
    assert device.requests == [
        SimulatorRequest(1, 3, 2),
        SimulatorRequest(2, 1, 1),
        SimulatorRequest(3, 0, 14),
        SimulatorRequest(3, 20, 3),
        SimulatorRequest(4, 0, 2),
    ]
    assert result.ok and not result.errors
    # AND the values are decoded and scaled
    expected = {
        "flow_abcd": 12.5,
        "flow_cdab": 13.5,
        "flow_badc": 14.5,
        "flow_dcba": 15.5,
        "count": -123456789,
        "count_cdab": 987654321,
        "level": 65.5,
        "temp": -13.5,
        "pressure": 12.34,
        "setpoint": 42.25,
        "running": 1.0,
        "pump": 0.0,
        "door": 1.0,
        "ambient": 21.75,
    }
    assert result.values == pytest.approx(expected)
    # AND published in one telemetry call, with units and the read time
    assert len(rec.telemetry) == 1
    _, device_id, samples = rec.telemetry[0]
    assert device_id == "plc-1"
    by_name = {s.metric: s for s in samples}
    assert by_name.keys() == expected.keys()
    assert by_name["level"].unit == "%" and by_name["pressure"].unit == "bar"
    sample_time = by_name["level"].time
    assert sample_time is not None
    assert abs((sample_time - datetime.now(UTC)).total_seconds()) < 5
    assert poller.health()["poll_success_rate"] == 100.0
    assert result.summary() == "14 values in 5 requests"


def test_reading_across_a_refused_gap_is_reported_not_fatal(device: ModbusSimulator) -> None:
    """With max_gap too large the device refuses the bridged read; the rest still arrives."""
    # GIVEN max_gap_registers 6 (bridging the unmapped 14..19)
    rec = Recorder()
    poller = ModbusPoller(
        plc(device, registers=MAP, max_gap_registers=6), rec.emit_telemetry, rec.emit_event
    )
    try:
        # WHEN it polls once
        result = poller.poll_once()
    finally:
        poller.stop()
    # THEN one holding-register request spans 0..22 and is refused with exception 02
    assert SimulatorRequest(3, 0, 23) in device.requests
    failed = [r for r in result.requests if not r.ok]
    assert len(failed) == 1
    assert failed[0].error is not None and failed[0].error.startswith(
        "PLC answered exception 02 ILLEGAL DATA ADDRESS"
    )
    # AND the other tables were still read (a refusal is an answer, not an outage)
    assert result.values["ambient"] == pytest.approx(21.75)
    assert "flow_abcd" not in result.values
    assert rec.event_types("plc-1") == []
    assert poller.health()["poll_failures"] == 1
    assert result.summary().startswith("1 of 4 requests failed: PLC answered exception 02")


def test_register_override_interval_groups_reads_per_interval(device: ModbusSimulator) -> None:
    """A register with its own poll interval is read on its own schedule."""
    # GIVEN level every 0.1 s (device default) and pressure every 60 s
    registers = [
        {"name": "level", "address": 12, "scale": 0.1},
        {"name": "pressure", "address": 20, "scale": 0.01, "poll_interval_seconds": 60},
    ]
    rec = Recorder()
    poller = ModbusPoller(
        plc(device, registers=registers, poll_interval_seconds=0.1),
        rec.emit_telemetry,
        rec.emit_event,
    )
    try:
        # WHEN it runs for a while
        poller.start()
        wait_for(lambda: len(rec.calls("plc-1")) >= 5)
    finally:
        poller.stop()
    # THEN pressure was read once and level at every pass
    assert [r for r in device.requests if r.address == 20] == [SimulatorRequest(3, 20, 1)]
    assert len([r for r in device.requests if r.address == 12]) >= 5


# --------------------------------------------------------------------------- outages


def two_devices() -> tuple[ModbusSimulator, ModbusSimulator]:
    a = start_simulator(holding_registers=4)
    b = start_simulator(holding_registers=4)
    a.set_holding_registers(0, [11])
    b.set_holding_registers(0, [22])
    return a, b


def outage_config(sim: ModbusSimulator, device_id: str) -> PlcConfig:
    return plc(
        sim,
        device_id,
        poll_interval_seconds=0.1,
        timeout_seconds=0.8,
        registers=[{"name": "value", "address": 0}],
    )


def test_a_silent_unit_does_not_stall_another(request: pytest.FixtureRequest) -> None:
    """A stops answering (timeouts): B keeps reporting at its interval; one event each way."""
    # GIVEN two devices polled every 0.1 s, each with a 0.8 s timeout
    a, b = two_devices()
    request.addfinalizer(a.stop)
    request.addfinalizer(b.stop)
    rec = Recorder()
    pa = ModbusPoller(
        outage_config(a, "plc-a"), rec.emit_telemetry, rec.emit_event, reconnect_max_seconds=0.5
    )
    pb = ModbusPoller(outage_config(b, "plc-b"), rec.emit_telemetry, rec.emit_event)
    request.addfinalizer(pa.stop)
    request.addfinalizer(pb.stop)
    pa.start()
    pb.start()
    wait_for(lambda: len(rec.calls("plc-a")) >= 2 and len(rec.calls("plc-b")) >= 2)

    # WHEN A stops answering for 2 s
    a.set_silent(True)
    wait_for(lambda: "modbus.timeout" in rec.event_types("plc-a"))
    silent_from = time.monotonic()
    time.sleep(2.0)
    silent_calls_a = rec.calls("plc-a", since=silent_from)
    calls_b = rec.calls("plc-b", since=silent_from)
    a.set_silent(False)
    wait_for(lambda: "modbus.recovered" in rec.event_types("plc-a"))
    recovered_at = time.monotonic()
    wait_for(lambda: len(rec.calls("plc-a", since=recovered_at)) >= 2)

    # THEN B kept its 0.1 s rhythm throughout (about 20 passes in 2 s, never a pause as
    # long as A's 0.8 s timeout)
    assert len(calls_b) >= 12
    assert max(t2 - t1 for t1, t2 in itertools.pairwise(calls_b)) < 0.5
    assert rec.last_values("plc-b") == {"value": 22.0}
    assert rec.event_types("plc-b") == []
    # AND A published nothing while silent, then reported its value again
    assert silent_calls_a == []
    assert rec.last_values("plc-a") == {"value": 11.0}
    # AND the timeout was reported once, and the recovery once, not per poll
    assert rec.event_types("plc-a") == ["modbus.timeout", "modbus.recovered"]
    timeout_event = rec.events[0][1]
    assert timeout_event.severity == "warning"
    assert "plc-a" in timeout_event.message and "unit id" in timeout_event.message
    # AND A's health shows the failures
    health = pa.health()
    assert health["poll_failures"] >= 1
    assert 0 < health["poll_success_rate"] < 100


def test_a_stopped_server_is_reconnected_after_restart(request: pytest.FixtureRequest) -> None:
    """The server process goes away and comes back on the same port: reconnect, one event each."""
    # GIVEN a device polled every 0.1 s
    sim = start_simulator(holding_registers=4)
    sim.set_holding_registers(0, [7])
    port = sim.port
    rec = Recorder()
    poller = ModbusPoller(
        outage_config(sim, "plc-a"), rec.emit_telemetry, rec.emit_event, reconnect_max_seconds=0.4
    )
    request.addfinalizer(poller.stop)
    poller.start()
    wait_for(lambda: len(rec.calls("plc-a")) >= 2)
    # WHEN its server stops for a second, then starts again on the same port
    sim.stop()
    wait_for(lambda: "modbus.timeout" in rec.event_types("plc-a"))
    time.sleep(1.0)
    restarted = start_simulator(port=port, holding_registers=4)
    request.addfinalizer(restarted.stop)
    restarted.set_holding_registers(0, [8])
    # THEN it reconnects and reports the new server's value
    wait_for(lambda: rec.last_values("plc-a") == {"value": 8.0})
    assert rec.event_types("plc-a") == ["modbus.timeout", "modbus.recovered"]


def test_units_on_one_rtu_line_share_the_port(request: pytest.FixtureRequest) -> None:
    """Two units on one serial line: one open port, both polled, a silent unit isolated."""
    # GIVEN an RTU line (RTU framing over TCP, reached as socket://) with units 1 and 2
    sim = start_simulator(framer="rtu", holding_registers=4, extra_device_ids=[2])
    request.addfinalizer(sim.stop)
    sim.set_holding_registers(0, [101], device_id=1)
    sim.set_holding_registers(0, [202], device_id=2)
    rec = Recorder()
    pollers = []
    for unit in (1, 2):
        cfg = PlcConfig.model_validate(
            {
                "id": f"unit-{unit}",
                "transport": "rtu",
                "serial_port": f"socket://{sim.host}:{sim.port}",
                "unit_id": unit,
                "poll_interval_seconds": 0.1,
                "timeout_seconds": 0.3,
                "registers": [{"name": "value", "address": 0}],
            }
        )
        poller = ModbusPoller(cfg, rec.emit_telemetry, rec.emit_event, reconnect_max_seconds=1)
        request.addfinalizer(poller.stop)
        pollers.append(poller)
    # WHEN both poll
    for poller in pollers:
        poller.start()
    wait_for(lambda: len(rec.calls("unit-1")) >= 2 and len(rec.calls("unit-2")) >= 2)
    # THEN each unit reports its own value over the one shared port
    assert rec.last_values("unit-1") == {"value": 101.0}
    assert rec.last_values("unit-2") == {"value": 202.0}
    assert pollers[0]._link is pollers[1]._link
    assert {r.device_id for r in sim.requests} == {1, 2}
    # AND when unit 2 falls silent, unit 1 keeps reporting
    sim.set_silent(True, device_id=2)
    wait_for(lambda: "modbus.timeout" in rec.event_types("unit-2"))
    since = time.monotonic()
    wait_for(lambda: len(rec.calls("unit-1", since=since)) >= 5)
    assert rec.event_types("unit-1") == []


# --------------------------------------------------------------------------- commands


@pytest.fixture
def poller(device: ModbusSimulator) -> Iterator[ModbusPoller]:
    rec = Recorder()
    p = ModbusPoller(plc(device, registers=MAP), rec.emit_telemetry, rec.emit_event)
    yield p
    p.stop()


def test_write_register_by_name_is_scaled_and_read_back(
    device: ModbusSimulator, poller: ModbusPoller
) -> None:
    """write_register with a writable register name: scaled back, written, read back."""
    # WHEN the platform sets setpoint (float32 CDAB at 21) to 55.5
    outcome = poller.execute(command("write_register", register="setpoint", value=55.5))
    # THEN the device holds it in CDAB order and the answer is the value read back
    assert outcome.ok, outcome.error
    assert device.read_holding_registers(21, 2) == encode(55.5, "float32", "CDAB")
    assert outcome.result == {
        "value": 55.5,
        "table": "holding_register",
        "address": 21,
        "data_type": "float32",
        "register": "setpoint",
        "unit": None,
    }
    # AND the device received the write and then the read-back
    assert device.requests[-2:] == [SimulatorRequest(16, 21, 2), SimulatorRequest(3, 21, 2)]


def test_write_by_address_with_scaled_integer(device: ModbusSimulator) -> None:
    """write_register by reference with a data type; int16 range is checked."""
    # GIVEN a writable scaled int16 register
    rec = Recorder()
    registers = [
        {"name": "speed", "address": 30, "data_type": "int16", "scale": 0.1, "writable": True}
    ]
    p = ModbusPoller(plc(device, registers=registers), rec.emit_telemetry, rec.emit_event)
    try:
        # WHEN written by name (-12.34 → raw -123.4 → -123) and by reference
        by_name = p.execute(command("write_register", register="speed", value=-12.34))
        by_ref = p.execute(
            command("write_register", address=40032, data_type="int32", order="DCBA", value=-5)
        )
        too_big = p.execute(command("write_register", register="speed", value=5000))
        read = p.execute(command("read_register", address=31, data_type="int32", order="DCBA"))
    finally:
        p.stop()
    # THEN the raw value is rounded and read back scaled
    assert by_name.ok and by_name.result is not None
    assert by_name.result["value"] == pytest.approx(-12.3)
    assert device.read_holding_registers(30, 1) == encode(-123, "int16")
    assert by_ref.ok and by_ref.result is not None
    assert by_ref.result == {
        "value": -5.0,
        "table": "holding_register",
        "address": 31,
        "data_type": "int32",
    }
    assert read.ok and read.result is not None and read.result["value"] == -5.0
    # AND an out-of-range value is refused before anything is sent
    assert not too_big.ok and too_big.error is not None
    assert "out of range" in too_big.error and "speed" in too_big.error


def test_write_coil_and_read_coil(device: ModbusSimulator, poller: ModbusPoller) -> None:
    """write_coil by name answers with the coil read back; read_coil reads a discrete input."""
    outcome = poller.execute(command("write_coil", register="pump", value=True))
    assert outcome.ok and outcome.result is not None
    assert outcome.result["value"] == 1.0 and outcome.result["table"] == "coil"
    assert device.read_coils(4, 1) == [True]
    door = poller.execute(command("read_coil", table="discrete_input", address="100002"))
    assert door.ok and door.result == {
        "value": 1.0,
        "table": "discrete_input",
        "address": 1,
        "data_type": "bool",
    }


def test_modbus_exception_is_reported_on_the_response(
    device: ModbusSimulator, poller: ModbusPoller
) -> None:
    """A write the device refuses answers ok False with the exception code."""
    # WHEN the platform writes to an unmapped register (inside the hole)
    outcome = poller.execute(command("write_register", address=15, value=1))
    # THEN the answer carries exception 02
    assert not outcome.ok
    assert outcome.error is not None
    assert outcome.error.startswith("PLC answered exception 02 ILLEGAL DATA ADDRESS")
    assert outcome.result == {"exception_code": 2}
    assert SimulatorRequest(6, 15, 1) in device.requests


@pytest.mark.parametrize(
    ("name", "params", "fragment"),
    [
        ("write_register", {"register": "level", "value": 1}, "writable: true"),
        ("write_register", {"register": "nope", "value": 1}, "no register named 'nope'"),
        ("write_coil", {"register": "setpoint", "value": 1}, "works on coil"),
        ("write_register", {"register": "setpoint"}, "params.value"),
        ("write_register", {"address": 5, "data_type": "float64", "value": 1}, "data_type"),
        ("write_register", {"address": 5, "value": 1, "colour": "red"}, "unexpected params"),
        ("write_register", {"table": "input_register", "address": 5, "value": 1}, "table"),
        ("write_coil", {"address": 2, "value": "maybe"}, "true or false"),
        ("write_register", {"address": "30001", "value": 1}, "input register reference"),
        ("reboot", {}, "unknown command"),
    ],
)
def test_bad_params_say_what_to_change(
    poller: ModbusPoller, name: str, params: dict[str, Any], fragment: str
) -> None:
    """Unusable parameters answer ok False, with an error naming the problem."""
    outcome = poller.execute(command(name, **params))
    assert not outcome.ok
    assert outcome.error is not None and fragment in outcome.error


def test_sensor_refuses_writes(device: ModbusSimulator) -> None:
    """A Modbus sensor is read-only."""
    cfg = ModbusSensorConfig.model_validate(
        {"type": "modbus", "id": "tank-1", "host": device.host, "port": device.port}
    )
    rec = Recorder()
    p = ModbusPoller(cfg, rec.emit_telemetry, rec.emit_event)
    try:
        outcome = p.execute(command("write_register", "tank-1", address=0, value=1))
        read = p.execute(command("read_register", "tank-1", address=12))
    finally:
        p.stop()
    assert not outcome.ok and outcome.error is not None and "read-only" in outcome.error
    assert read.ok and read.result is not None and read.result["value"] == 655


def test_command_timeout_answers_not_ok(device: ModbusSimulator, poller: ModbusPoller) -> None:
    """A device that does not answer: ok False within the timeout, saying so."""
    device.set_silent(True)
    started = time.monotonic()
    outcome = poller.execute(command("write_coil", register="pump", value=False))
    assert time.monotonic() - started < 2.0
    # no reply may pass: a pipeline's write is tried again
    assert not outcome.ok and outcome.result == {"retryable": True}
    assert outcome.error is not None and "no reply" in outcome.error


def test_expired_command_is_not_executed(device: ModbusSimulator, poller: ModbusPoller) -> None:
    """A command past its deadline answers not ok and sends nothing."""
    past = datetime.now(UTC) - timedelta(seconds=1)
    expired = command("write_coil", register="pump", value=True).model_copy(
        update={"deadline": past}
    )
    outcome = poller.execute(expired)
    assert not outcome.ok and outcome.error is not None and "deadline" in outcome.error
    assert device.requests == []
    assert device.read_coils(4, 1) == [False]
