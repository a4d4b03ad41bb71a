"""A synchronous Modbus client over pymodbus, with the protocol's limits built in.

:class:`ModbusConnection` is the configuration of one device link (Modbus TCP, or Modbus RTU
on a serial line); :class:`ModbusClient` reads coils, discrete inputs, holding registers and
input registers, and writes coils and holding registers on it.
Requests longer than a function code allows (spec §6: 125 registers a read, 123 a write,
2000 coils a read, 1968 a write — see :mod:`aios.plc.modbus`) are split into several
requests in address order. Replies are matched to requests by pymodbus (MBAP transaction id
on TCP; one outstanding request on a serial line).

Failures are :class:`ModbusError` subclasses raised ``from`` the library error:

* :class:`ModbusConnectionError` — cannot connect, connection lost, or no reply within the
  timeout (retryable);
* :class:`ModbusExceptionResponse` — the device answered with an exception code (spec §7);
  retryable only for ACKNOWLEDGE, SERVER DEVICE BUSY and GATEWAY TARGET DEVICE FAILED TO
  RESPOND;
* :class:`ModbusRequestError` — a request this client cannot build (not retryable).

pymodbus is imported when a client is built, so loading the node catalog does not need it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aios.plc.modbus import (
    MAX_READ_COILS,
    MAX_READ_REGISTERS,
    MAX_WRITE_COILS,
    MAX_WRITE_REGISTERS,
    RETRYABLE_EXCEPTION_CODES,
    AddressError,
    describe_exception,
    split_requests,
)

if TYPE_CHECKING:
    from pymodbus.client import ModbusSerialClient, ModbusTcpClient

log = logging.getLogger(__name__)

FUNCTION_NAMES = {
    1: "Read Coils (01)",
    2: "Read Discrete Inputs (02)",
    3: "Read Holding Registers (03)",
    4: "Read Input Registers (04)",
    5: "Write Single Coil (05)",
    6: "Write Single Register (06)",
    15: "Write Multiple Coils (15)",
    16: "Write Multiple Registers (16)",
}


class ModbusConnection(BaseModel):
    """How to reach one Modbus device: TCP (host, port) or RTU (serial line), and its unit id."""

    model_config = ConfigDict(extra="forbid", title="Modbus connection")

    transport: Literal["tcp", "rtu"] = Field(
        default="tcp",
        title="Transport",
        description="'tcp': Modbus TCP over Ethernet; 'rtu': Modbus RTU on a serial line "
        "(RS-485/RS-232).",
    )
    host: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        title="Host",
        description="TCP only: IP address or host name of the PLC or gateway.",
    )
    port: int = Field(
        default=502,
        ge=1,
        le=65_535,
        title="TCP port",
        description="TCP only: the Modbus TCP port (502 is the registered port).",
    )
    serial_port: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        title="Serial port",
        description="RTU only: the serial device, e.g. '/dev/ttyUSB0' or 'COM3' (a pyserial "
        "URL such as 'rfc2217://host:port' also works).",
    )
    baudrate: int = Field(
        default=19_200,
        ge=300,
        le=921_600,
        title="Baud rate",
        description="RTU only: line speed in bits per second (19200 is the Modbus default).",
    )
    parity: Literal["E", "O", "N"] = Field(
        default="E",
        title="Parity",
        description="RTU only: 'E' even (the Modbus serial-line default), 'O' odd, 'N' none "
        "(the standard then asks for 2 stop bits).",
    )
    stopbits: Literal[1, 2] = Field(
        default=1, title="Stop bits", description="RTU only: 1 or 2 stop bits."
    )
    unit_id: int = Field(
        default=1,
        ge=0,
        le=255,
        title="Unit id",
        description="Modbus unit id (slave address) of the device: 1–247 on a serial line; "
        "on TCP usually 1, or 255/0 for devices that ignore it. 0 is broadcast on RTU "
        "(no reply).",
    )

    @model_validator(mode="after")
    def _transport_fields(self) -> ModbusConnection:
        if self.transport == "tcp" and not self.host:
            raise ValueError("set host for Modbus TCP")
        if self.transport == "rtu" and not self.serial_port:
            raise ValueError("set serial_port for Modbus RTU")
        if self.transport == "rtu" and self.unit_id > 247:
            # Modbus over Serial Line V1.02 §2.2: addresses 1–247, 248–255 reserved
            raise ValueError("unit_id on a serial line is 0..247 (248–255 are reserved)")
        return self

    def describe(self) -> str:
        """Return where the device is, for messages: ``"Modbus TCP 10.0.0.5:502 unit 1"``."""
        if self.transport == "tcp":
            return f"Modbus TCP {self.host}:{self.port} unit {self.unit_id}"
        return (
            f"Modbus RTU {self.serial_port} {self.baudrate} 8{self.parity}{self.stopbits} "
            f"unit {self.unit_id}"
        )


class ModbusError(Exception):
    """A Modbus request failed; ``retryable`` says whether the same request may succeed later."""

    retryable = False


class ModbusConnectionError(ModbusError):
    """The device could not be reached, the link dropped, or no reply came in time."""

    retryable = True


class ModbusRequestError(ModbusError):
    """The request could not be built or sent as asked (bad address span, library refusal)."""


class ModbusExceptionResponse(ModbusError):
    """The device answered with a Modbus exception (spec §7).

    Attributes:
        function_code: the request's function code (without the 0x80 error bit).
        exception_code: the exception code, e.g. 2 for ILLEGAL DATA ADDRESS.
    """

    def __init__(self, message: str, function_code: int, exception_code: int) -> None:
        super().__init__(message)
        self.function_code = function_code
        self.exception_code = exception_code
        self.retryable = exception_code in RETRYABLE_EXCEPTION_CODES


class ModbusClient:
    """Reads coils, discrete inputs, holding and input registers, writes coils and holding
    registers, of one device.

    Use as a context manager (connects on entry, closes on exit), or call :meth:`close`.
    Each request waits at most ``timeout_seconds`` for the reply; pymodbus retries a
    request ``retries`` times after a timeout before :class:`ModbusConnectionError`.
    """

    def __init__(
        self,
        connection: ModbusConnection,
        *,
        timeout_seconds: float = 3.0,
        retries: int = 0,
    ) -> None:
        self.connection = connection
        self.timeout_seconds = timeout_seconds
        from pymodbus.client import ModbusSerialClient, ModbusTcpClient

        self._client: ModbusTcpClient | ModbusSerialClient
        if connection.transport == "tcp":
            assert connection.host is not None
            self._client = ModbusTcpClient(
                connection.host,
                port=connection.port,
                timeout=timeout_seconds,
                retries=retries,
                reconnect_delay=0,
            )
        else:
            assert connection.serial_port is not None
            self._client = ModbusSerialClient(
                connection.serial_port,
                baudrate=connection.baudrate,
                bytesize=8,  # RTU: always 8 data bits (Modbus over Serial Line V1.02 §2.5.1)
                parity=connection.parity,
                stopbits=connection.stopbits,
                timeout=timeout_seconds,
                retries=retries,
                reconnect_delay=0,
            )

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def connect(self) -> None:
        """Open the link.

        Raises:
            ModbusConnectionError: refused, unreachable, or no such serial port.
        """
        from pymodbus.exceptions import ModbusException

        port = self.connection.serial_port
        local_port = self.connection.transport == "rtu" and port and "://" not in port
        if local_port and port is not None and not os.path.exists(port):
            raise ModbusConnectionError(
                f"cannot connect to {self.connection.describe()}: serial port {port} "
                "does not exist (check that the adapter is plugged in and its name, "
                "e.g. ls /dev/serial/by-id/)"
            )
        try:
            ok = self._client.connect()
        except (OSError, ModbusException) as err:
            raise ModbusConnectionError(
                f"cannot connect to {self.connection.describe()}: {err}"
            ) from err
        if not ok:
            raise ModbusConnectionError(
                f"cannot connect to {self.connection.describe()} within "
                f"{self.timeout_seconds:g} s: check that the device is on, the address and "
                "port (or serial port) are right, and nothing blocks the connection"
            )

    def close(self) -> None:
        """Close the link (safe to call twice)."""
        self._client.close()  # type: ignore[no-untyped-call]

    @property
    def connected(self) -> bool:
        """True while the link is open (as far as the library knows)."""
        return bool(self._client.connected)

    def with_unit(self, unit_id: int) -> ModbusClient:
        """Return a client for another unit id on the same link (one TCP connection to a
        gateway, or one serial line with several units): requests go through the same
        connection, so they must not be sent from two threads at once — serialise them.
        Closing either client closes the shared link.

        Raises:
            ValueError: ``unit_id`` outside 0..255 (0..247 on a serial line).
        """
        import copy

        view = copy.copy(self)
        view.connection = ModbusConnection.model_validate(
            {**self.connection.model_dump(), "unit_id": unit_id}
        )
        return view

    # --- requests --------------------------------------------------------------------------

    def _execute(
        self, function_code: int, address: int, method: Callable[..., Any], *args: Any
    ) -> Any:
        from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

        where = self.connection.describe()
        what = f"{FUNCTION_NAMES.get(function_code, function_code)} at address {address}"
        try:
            response = method(*args, device_id=self.connection.unit_id)
        except ConnectionException as err:
            raise ModbusConnectionError(f"{what}: lost the connection to {where}: {err}") from err
        except ModbusIOException as err:
            raise ModbusConnectionError(
                f"{what}: no reply from {where} within {self.timeout_seconds:g} s "
                "(check the unit id and that the device is reachable)"
            ) from err
        except OSError as err:
            raise ModbusConnectionError(f"{what}: connection to {where} failed: {err}") from err
        except (ModbusException, ValueError) as err:
            raise ModbusRequestError(f"{what}: cannot send the request: {err}") from err
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            raise ModbusExceptionResponse(
                f"{where} answered {what} with exception {describe_exception(code)}",
                function_code,
                code,
            )
        return response

    def read_coils(self, address: int, count: int) -> list[bool]:
        """Return ``count`` coils from 0-based ``address`` (FC 01, split at 2000 a request).

        Raises:
            ModbusError: see the module docstring.
        """
        bits: list[bool] = []
        for start, n in self._split(address, count, MAX_READ_COILS):
            response = self._execute(1, start, self._read_coils, start, n)
            bits.extend(bool(b) for b in response.bits[:n])
        return bits

    def read_discrete_inputs(self, address: int, count: int) -> list[bool]:
        """Return ``count`` discrete inputs from 0-based ``address`` (FC 02, split at 2000).

        Raises:
            ModbusError: see the module docstring.
        """
        bits: list[bool] = []
        for start, n in self._split(address, count, MAX_READ_COILS):
            response = self._execute(2, start, self._read_discrete_inputs, start, n)
            got = list(response.bits)
            if len(got) < n:
                raise ModbusRequestError(
                    f"asked {self.connection.describe()} for {n} discrete inputs at {start}, "
                    f"got {len(got)}"
                )
            bits.extend(bool(b) for b in got[:n])
        return bits

    def read_holding_registers(self, address: int, count: int) -> list[int]:
        """Return ``count`` holding registers from 0-based ``address`` (FC 03, split at 125).

        Raises:
            ModbusError: see the module docstring.
        """
        return self._read_register_table(3, self._read_registers, address, count)

    def read_input_registers(self, address: int, count: int) -> list[int]:
        """Return ``count`` input registers from 0-based ``address`` (FC 04, split at 125).

        Raises:
            ModbusError: see the module docstring.
        """
        return self._read_register_table(4, self._read_input_registers, address, count)

    def _read_register_table(
        self, function_code: int, method: Callable[..., Any], address: int, count: int
    ) -> list[int]:
        registers: list[int] = []
        for start, n in self._split(address, count, MAX_READ_REGISTERS):
            response = self._execute(function_code, start, method, start, n)
            got = list(response.registers)
            if len(got) != n:
                raise ModbusRequestError(
                    f"asked {self.connection.describe()} for {n} registers at {start}, got "
                    f"{len(got)}"
                )
            registers.extend(got)
        return registers

    def write_coils(self, address: int, values: Sequence[bool]) -> int:
        """Write coils from 0-based ``address``; return the number of requests sent.

        One coil is written with Write Single Coil (FC 05), several with Write Multiple
        Coils (FC 15), split at 1968 a request.

        Raises:
            ModbusError: see the module docstring.
        """
        if len(values) == 1:
            self._split(address, 1, 1)
            self._execute(5, address, self._client.write_coil, address, bool(values[0]))
            return 1
        requests = self._split(address, len(values), MAX_WRITE_COILS)
        for start, n in requests:
            chunk = [bool(v) for v in values[start - address : start - address + n]]
            self._execute(15, start, self._client.write_coils, start, chunk)
        return len(requests)

    def write_registers(self, address: int, registers: Sequence[int]) -> int:
        """Write holding registers from 0-based ``address``; return the number of requests.

        One register is written with Write Single Register (FC 06), several with Write
        Multiple Registers (FC 16), split at 123 a request.

        Raises:
            ModbusError: see the module docstring.
        """
        for reg in registers:
            if not 0 <= int(reg) <= 0xFFFF:
                raise ModbusRequestError(f"register value {reg} is not 0..65535")
        if len(registers) == 1:
            self._split(address, 1, 1)
            self._execute(6, address, self._client.write_register, address, int(registers[0]))
            return 1
        requests = self._split(address, len(registers), MAX_WRITE_REGISTERS)
        for start, n in requests:
            chunk = [int(r) for r in registers[start - address : start - address + n]]
            self._execute(16, start, self._client.write_registers, start, chunk)
        return len(requests)

    def _read_coils(self, address: int, count: int, *, device_id: int) -> Any:
        return self._client.read_coils(address, count=count, device_id=device_id)

    def _read_registers(self, address: int, count: int, *, device_id: int) -> Any:
        return self._client.read_holding_registers(address, count=count, device_id=device_id)

    def _read_discrete_inputs(self, address: int, count: int, *, device_id: int) -> Any:
        return self._client.read_discrete_inputs(address, count=count, device_id=device_id)

    def _read_input_registers(self, address: int, count: int, *, device_id: int) -> Any:
        return self._client.read_input_registers(address, count=count, device_id=device_id)

    @staticmethod
    def _split(address: int, count: int, limit: int) -> list[tuple[int, int]]:
        try:
            return split_requests(address, count, limit)
        except AddressError as err:
            raise ModbusRequestError(str(err)) from err
