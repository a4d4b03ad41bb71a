"""A Modbus server on loopback, for tests and the shipped example pipeline.

:func:`start_simulator` runs a pymodbus server (Modbus TCP, or RTU framing over TCP so that
an RTU client can reach it as ``socket://host:port``) in a background thread, with one
device — or several unit ids behind one address, like a gateway or an RS-485 line —
holding coils, discrete inputs, holding registers and input registers from address 0. The
returned :class:`ModbusSimulator` reads back and sets what each unit holds, records every
request it received (function code, address, count, unit id), can stop answering (the
requests are received, no reply is sent: clients time out) and stops cleanly.

Addresses past the configured counts do not exist on the device: requests touching them
get exception 02 ILLEGAL DATA ADDRESS, as from a real PLC. So do registers inside the
``unmapped_registers`` spans (holes in the register map, as in many PLCs). (pymodbus keeps
coils and discrete inputs in 16-bit words, so their counts are rounded up to a multiple
of 16.)

Example::

    with start_simulator(coils=16, holding_registers=100) as plc:
        ...  # point a client at plc.host, plc.port, unit plc.device_id
        assert plc.read_coils(0, 1) == [True]
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from aios.plc.modbus import ADDRESS_SPACE, check_span

T = TypeVar("T")

_FC_READ_COILS = 1
_FC_READ_DISCRETE = 2
_FC_READ_HOLDING = 3
_FC_READ_INPUT = 4
_FC_WRITE_COILS = 15
_FC_WRITE_REGISTERS = 16


@dataclass(frozen=True)
class SimulatorRequest:
    """A request the simulator received: function code, 0-based address, item count, and
    the unit id it was sent to (``device_id``, not compared: ``SimulatorRequest(3, 0, 2)``
    equals a recorded request to any unit)."""

    function_code: int
    address: int
    count: int
    device_id: int = field(default=0, compare=False)


class ModbusSimulator:
    """A running simulated device; build it with :func:`start_simulator`.

    Attributes:
        host: the address it listens on.
        port: the TCP port it listens on (the ephemeral port when started with 0).
        device_id: the unit id it answers to.
        framer: ``"socket"`` (Modbus TCP) or ``"rtu"`` (RTU framing over TCP).
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        device_id: int,
        coils: int,
        holding_registers: int,
        framer: Literal["socket", "rtu"],
        timeout_seconds: float,
        discrete_inputs: int = 1,
        input_registers: int = 1,
        extra_device_ids: Sequence[int] = (),
        unmapped_registers: Sequence[tuple[int, int]] = (),
    ) -> None:
        self.host = host
        self.port = port
        self.device_id = device_id
        self.device_ids = (device_id, *[d for d in extra_device_ids if d != device_id])
        self.framer = framer
        self.coil_count = coils
        self.register_count = holding_registers
        self.discrete_input_count = discrete_inputs
        self.input_register_count = input_registers
        self.unmapped_registers = tuple((int(a), int(n)) for a, n in unmapped_registers)
        self._silent: set[int] = set()
        self._timeout = timeout_seconds
        self._requests: list[SimulatorRequest] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._server: ModbusTcpServer | None = None
        self._thread = threading.Thread(target=self._run, name="modbus-simulator", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def _device(self, device_id: int) -> SimDevice:
        def bits(count: int) -> list[SimData]:
            return [SimData(0, count=count, values=False, datatype=DataType.BITS)] if count else []

        def regs(count: int) -> list[SimData]:
            # mapped spans between the holes; a hole leaves its registers invalid
            holes = sorted(self.unmapped_registers)
            spans: list[SimData] = []
            start = 0
            for hole_start, hole_count in holes:
                if hole_start > start:
                    spans.append(
                        SimData(
                            start,
                            count=min(hole_start, count) - start,
                            values=0,
                            datatype=DataType.REGISTERS,
                        )
                    )
                start = max(start, hole_start + hole_count)
                if start >= count:
                    break
            if start < count:
                spans.append(
                    SimData(start, count=count - start, values=0, datatype=DataType.REGISTERS)
                )
            return [s for s in spans if s.count > 0]

        # Separate tables (coils, discrete inputs, holding registers, input registers);
        # pymodbus needs each list non-empty, so unused read-only tables get one item.
        return SimDevice(
            device_id,
            simdata=(
                bits(self.coil_count),
                bits(self.discrete_input_count),
                regs(self.register_count),
                regs(self.input_register_count),
            ),
        )

    def _trace(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            count = int(getattr(pdu, "count", 0) or 0) or 1  # single writes carry no count
            with self._lock:
                self._requests.append(
                    SimulatorRequest(
                        int(pdu.function_code),
                        int(getattr(pdu, "address", 0)),
                        count,
                        int(getattr(pdu, "dev_id", 0) or 0),
                    )
                )
        return pdu

    def _trace_packet(self, sending: bool, packet: bytes) -> bytes:
        if not sending or not packet:
            return packet
        # the unit id of a reply: byte 6 of the MBAP header (TCP), byte 0 of an RTU frame
        unit = packet[6] if self.framer == "socket" and len(packet) > 6 else packet[0]
        with self._lock:
            if unit in self._silent:
                return b""  # received, never answered: the client times out
        return packet

    async def _serve(self) -> None:
        self._server = ModbusTcpServer(
            [self._device(d) for d in self.device_ids],
            address=(self.host, self.port),
            framer=FramerType.RTU if self.framer == "rtu" else FramerType.SOCKET,
            trace_pdu=self._trace,
            trace_packet=self._trace_packet,
        )
        await self._server.serve_forever(background=True)
        transport: Any = self._server.transport
        self.port = int(transport.sockets[0].getsockname()[1])

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as err:  # reported to start() in the caller's thread
            self._error = err
            self._ready.set()
            self._loop.close()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    def start(self) -> None:
        """Start serving; return once the server listens.

        Raises:
            RuntimeError: the server could not listen (e.g. the port is taken).
            TimeoutError: it did not start within the timeout.
        """
        self._thread.start()
        if not self._ready.wait(self._timeout):
            raise TimeoutError(f"Modbus simulator did not start within {self._timeout:g} s")
        if self._error is not None:
            self._thread.join(self._timeout)
            raise RuntimeError(
                f"Modbus simulator could not listen on {self.host}:{self.port}: {self._error}"
            ) from self._error

    def stop(self) -> None:
        """Stop the server and its thread (safe to call twice)."""
        if not self._thread.is_alive():
            return
        server = self._server
        if server is not None:
            shutdown = server.shutdown()  # type: ignore[no-untyped-call]
            asyncio.run_coroutine_threadsafe(shutdown, self._loop).result(self._timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self._timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- the device's memory -----------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._server is None or not self._thread.is_alive():
            coro.close()
            raise RuntimeError("the Modbus simulator is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self._timeout)

    def _check(self, address: int, count: int, size: int, table: str) -> None:
        check_span(address, count)
        if address + count > size:
            raise ValueError(
                f"{count} {table} from {address} run past the simulator's {size} {table}"
            )

    def _unit(self, device_id: int | None) -> int:
        unit = self.device_id if device_id is None else device_id
        if unit not in self.device_ids:
            raise ValueError(f"the simulator has no unit {unit}; it has {list(self.device_ids)}")
        return unit

    def _get(
        self, fc: int, address: int, count: int, *, size: int, table: str, device_id: int | None
    ) -> list[int] | list[bool]:
        self._check(address, count, size, table)
        assert self._server is not None
        values = self._call(self._server.async_getValues(self._unit(device_id), fc, address, count))
        return values[:count]

    def _set(
        self,
        fc: int,
        address: int,
        values: list[int] | list[bool],
        *,
        size: int,
        table: str,
        device_id: int | None,
    ) -> None:
        self._check(address, len(values), size, table)
        assert self._server is not None
        self._call(self._server.async_setValues(self._unit(device_id), fc, address, values))

    def read_coils(
        self, address: int, count: int = 1, *, device_id: int | None = None
    ) -> list[bool]:
        """Return ``count`` coils from 0-based ``address`` as the device holds them now."""
        values = self._get(
            _FC_READ_COILS, address, count, size=self.coil_count, table="coils", device_id=device_id
        )
        return [bool(v) for v in values]

    def read_discrete_inputs(
        self, address: int, count: int = 1, *, device_id: int | None = None
    ) -> list[bool]:
        """Return ``count`` discrete inputs from 0-based ``address``."""
        values = self._get(
            _FC_READ_DISCRETE,
            address,
            count,
            size=self.discrete_input_count,
            table="discrete inputs",
            device_id=device_id,
        )
        return [bool(v) for v in values]

    def read_holding_registers(
        self, address: int, count: int = 1, *, device_id: int | None = None
    ) -> list[int]:
        """Return ``count`` holding registers from 0-based ``address``."""
        values = self._get(
            _FC_READ_HOLDING,
            address,
            count,
            size=self.register_count,
            table="holding registers",
            device_id=device_id,
        )
        return [int(v) for v in values]

    def read_input_registers(
        self, address: int, count: int = 1, *, device_id: int | None = None
    ) -> list[int]:
        """Return ``count`` input registers from 0-based ``address``."""
        values = self._get(
            _FC_READ_INPUT,
            address,
            count,
            size=self.input_register_count,
            table="input registers",
            device_id=device_id,
        )
        return [int(v) for v in values]

    def set_coils(
        self, address: int, values: Sequence[bool], *, device_id: int | None = None
    ) -> None:
        """Set coils from 0-based ``address`` (test setup; not recorded as a request)."""
        self._set(
            _FC_WRITE_COILS,
            address,
            [bool(v) for v in values],
            size=self.coil_count,
            table="coils",
            device_id=device_id,
        )

    def set_discrete_inputs(
        self, address: int, values: Sequence[bool], *, device_id: int | None = None
    ) -> None:
        """Set discrete inputs from 0-based ``address`` (the device's own inputs)."""
        self._set(
            _FC_READ_DISCRETE,
            address,
            [bool(v) for v in values],
            size=self.discrete_input_count,
            table="discrete inputs",
            device_id=device_id,
        )

    def set_holding_registers(
        self, address: int, values: Sequence[int], *, device_id: int | None = None
    ) -> None:
        """Set holding registers from 0-based ``address`` (each 0..65535)."""
        self._set(
            _FC_WRITE_REGISTERS,
            address,
            [int(v) for v in values],
            size=self.register_count,
            table="holding registers",
            device_id=device_id,
        )

    def set_input_registers(
        self, address: int, values: Sequence[int], *, device_id: int | None = None
    ) -> None:
        """Set input registers from 0-based ``address`` (each 0..65535)."""
        self._set(
            _FC_READ_INPUT,
            address,
            [int(v) for v in values],
            size=self.input_register_count,
            table="input registers",
            device_id=device_id,
        )

    def set_silent(self, silent: bool, *, device_id: int | None = None) -> None:
        """Stop (``True``) or resume (``False``) answering requests to one unit, or to all
        units when ``device_id`` is None. A silent unit still receives and records requests
        but sends no reply, so clients wait until their timeout — a unit that is powered
        off behind a gateway, or a cut RS-485 line."""
        units = self.device_ids if device_id is None else (self._unit(device_id),)
        with self._lock:
            if silent:
                self._silent.update(units)
            else:
                self._silent.difference_update(units)

    @property
    def requests(self) -> list[SimulatorRequest]:
        """Requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._requests.clear()


def start_simulator(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    device_id: int = 1,
    coils: int = 2_000,
    holding_registers: int = 10_000,
    framer: Literal["socket", "rtu"] = "socket",
    timeout_seconds: float = 5.0,
    discrete_inputs: int = 1,
    input_registers: int = 1,
    extra_device_ids: Sequence[int] = (),
    unmapped_registers: Sequence[tuple[int, int]] = (),
) -> ModbusSimulator:
    """Start a simulated Modbus device in a background thread and return its handle.

    Args:
        host: address to listen on (loopback by default).
        port: TCP port; 0 picks a free ephemeral port (read it from ``.port``).
        device_id: the unit id the device answers to (1..247; 0 answers every unit id).
        coils: number of coils, at addresses 0..coils-1 (all off).
        holding_registers: number of holding registers, at 0..holding_registers-1 (all 0).
        framer: ``"socket"`` for Modbus TCP; ``"rtu"`` for RTU framing over TCP, reached
            by an RTU client at ``socket://host:port``.
        timeout_seconds: longest wait for start, stop and each read-back.
        discrete_inputs: number of discrete inputs, at 0..discrete_inputs-1 (all off).
        input_registers: number of input registers, at 0..input_registers-1 (all 0).
        extra_device_ids: more unit ids answering at the same address, each with its own
            memory of the same sizes (a gateway, or several units on one RTU line).
        unmapped_registers: ``(address, count)`` spans of holding and input registers
            that do not exist: reads and writes touching them get exception 02.

    Raises:
        ValueError: counts outside 1..65536 or a device id outside 0..247.
        RuntimeError / TimeoutError: as :meth:`ModbusSimulator.start`.
    """
    for name, count in (
        ("coils", coils),
        ("holding_registers", holding_registers),
        ("discrete_inputs", discrete_inputs),
        ("input_registers", input_registers),
    ):
        if not 1 <= count <= ADDRESS_SPACE:
            raise ValueError(f"{name} must be 1..{ADDRESS_SPACE}, got {count}")
    for unit in (device_id, *extra_device_ids):
        if not 0 <= unit <= 247:
            raise ValueError(f"device ids must be 0..247, got {unit}")
    for hole_start, hole_count in unmapped_registers:
        check_span(hole_start, hole_count)
    simulator = ModbusSimulator(
        host=host,
        port=port,
        device_id=device_id,
        coils=coils,
        holding_registers=holding_registers,
        framer=framer,
        timeout_seconds=timeout_seconds,
        discrete_inputs=discrete_inputs,
        input_registers=input_registers,
        extra_device_ids=extra_device_ids,
        unmapped_registers=unmapped_registers,
    )
    simulator.start()
    return simulator
