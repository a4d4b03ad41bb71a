"""A Modbus server on loopback, for tests and the shipped example pipeline.

:func:`start_simulator` runs a pymodbus server (Modbus TCP, or RTU framing over TCP so that
an RTU client can reach it as ``socket://host:port``) in a background thread, with one
device holding coils and holding registers from address 0. The returned
:class:`ModbusSimulator` reads back and sets what the device holds, records every request
it received (function code, address, count) and stops cleanly.

Addresses past the configured counts do not exist on the device: requests touching them
get exception 02 ILLEGAL DATA ADDRESS, as from a real PLC. (pymodbus keeps coils in 16-bit
words, so the coil count is rounded up to a multiple of 16.)

Example::

    with start_simulator(coils=16, holding_registers=100) as plc:
        ...  # point a client at plc.host, plc.port, unit plc.device_id
        assert plc.read_coils(0, 1) == [True]
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from aios.plc.modbus import ADDRESS_SPACE, check_span

T = TypeVar("T")

_FC_READ_COILS = 1
_FC_READ_HOLDING = 3
_FC_WRITE_COILS = 15
_FC_WRITE_REGISTERS = 16


@dataclass(frozen=True)
class SimulatorRequest:
    """A request the simulator received: function code, 0-based address, item count."""

    function_code: int
    address: int
    count: int


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
    ) -> None:
        self.host = host
        self.port = port
        self.device_id = device_id
        self.framer = framer
        self.coil_count = coils
        self.register_count = holding_registers
        self._timeout = timeout_seconds
        self._requests: list[SimulatorRequest] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._server: ModbusTcpServer | None = None
        self._thread = threading.Thread(target=self._run, name="modbus-simulator", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def _device(self) -> SimDevice:
        def bits(count: int) -> list[SimData]:
            return [SimData(0, count=count, values=False, datatype=DataType.BITS)] if count else []

        def regs(count: int) -> list[SimData]:
            return [SimData(0, count=count, values=0, datatype=DataType.REGISTERS)] if count else []

        # Separate tables (coils, discrete inputs, holding registers, input registers);
        # pymodbus needs each list non-empty, so the unused read-only tables get one item.
        return SimDevice(
            self.device_id,
            simdata=(
                bits(self.coil_count),
                bits(1),
                regs(self.register_count),
                regs(1),
            ),
        )

    def _trace(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            count = int(getattr(pdu, "count", 0) or 0) or 1  # single writes carry no count
            with self._lock:
                self._requests.append(
                    SimulatorRequest(int(pdu.function_code), int(getattr(pdu, "address", 0)), count)
                )
        return pdu

    async def _serve(self) -> None:
        self._server = ModbusTcpServer(
            self._device(),
            address=(self.host, self.port),
            framer=FramerType.RTU if self.framer == "rtu" else FramerType.SOCKET,
            trace_pdu=self._trace,
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

    def read_coils(self, address: int, count: int = 1) -> list[bool]:
        """Return ``count`` coils from 0-based ``address`` as the device holds them now."""
        self._check(address, count, self.coil_count, "coils")
        assert self._server is not None
        values = self._call(
            self._server.async_getValues(self.device_id, _FC_READ_COILS, address, count)
        )
        return [bool(v) for v in values[:count]]

    def read_holding_registers(self, address: int, count: int = 1) -> list[int]:
        """Return ``count`` holding registers from 0-based ``address``."""
        self._check(address, count, self.register_count, "holding registers")
        assert self._server is not None
        values = self._call(
            self._server.async_getValues(self.device_id, _FC_READ_HOLDING, address, count)
        )
        return [int(v) for v in values[:count]]

    def set_coils(self, address: int, values: Sequence[bool]) -> None:
        """Set coils from 0-based ``address`` (test setup; not recorded as a request)."""
        self._check(address, len(values), self.coil_count, "coils")
        assert self._server is not None
        self._call(
            self._server.async_setValues(
                self.device_id, _FC_WRITE_COILS, address, [bool(v) for v in values]
            )
        )

    def set_holding_registers(self, address: int, values: Sequence[int]) -> None:
        """Set holding registers from 0-based ``address`` (each 0..65535)."""
        self._check(address, len(values), self.register_count, "holding registers")
        assert self._server is not None
        self._call(
            self._server.async_setValues(
                self.device_id, _FC_WRITE_REGISTERS, address, [int(v) for v in values]
            )
        )

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

    Raises:
        ValueError: counts outside 1..65536 or a device id outside 0..247.
        RuntimeError / TimeoutError: as :meth:`ModbusSimulator.start`.
    """
    for name, count in (("coils", coils), ("holding_registers", holding_registers)):
        if not 1 <= count <= ADDRESS_SPACE:
            raise ValueError(f"{name} must be 1..{ADDRESS_SPACE}, got {count}")
    if not 0 <= device_id <= 247:
        raise ValueError(f"device_id must be 0..247, got {device_id}")
    simulator = ModbusSimulator(
        host=host,
        port=port,
        device_id=device_id,
        coils=coils,
        holding_registers=holding_registers,
        framer=framer,
        timeout_seconds=timeout_seconds,
    )
    simulator.start()
    return simulator
