"""PLCs and Modbus sensors: polling per register map, grouped reads, decoding, commands.

One :class:`ModbusPoller` per configured Modbus device (a PLC, or a sensor with a Modbus
interface), each in its own thread with its own connection, so a unit that stops
answering costs only its own thread its timeouts and never stalls the others.

**Polling.** Registers are polled at their ``poll_interval_seconds`` (the register's, else
the device's). The registers of one interval are read in the fewest valid requests
(:func:`plan_reads`): at most 125 registers (Read Holding / Input Registers, FC 03/04) or
2000 bits (Read Coils / Discrete Inputs, FC 01/02) a request — *MODBUS Application Protocol
Specification V1.1b3* §6.1–6.4 — never across more than the device's
``max_gap_registers`` unmapped items (default 0: many devices answer exception 02 ILLEGAL
DATA ADDRESS for a read that touches an unmapped register), never splitting a value.
Values are decoded with :func:`aios.plc.modbus.decode` (data type, word and byte order) and
published as ``raw * scale + offset`` (booleans as 0/1, unscaled): one
``emit_telemetry(device_id, samples)`` call per poll pass, each sample stamped with the
UTC time its request was answered.

**Failures.** Each request waits at most the device's ``timeout_seconds``. After a request
finds the device unreachable (no reply, connection refused or lost) the rest of that pass
is skipped, the link is closed (TCP) and retried with exponential backoff
(``reconnect_min_seconds`` doubling up to ``reconnect_max_seconds``). The first such
failure emits one ``modbus.timeout`` event (severity warning) — also when the device has
not answered since the connector started — and the first answer after it one
``modbus.recovered`` event (info): once each per outage, not per poll. A Modbus exception
reply is an answer: the request fails (logged, counted) but the device is not "down".

**Commands** (:meth:`ModbusPoller.execute`) run on the poller's connection, serialised with
its polling; see :meth:`ModbusPoller.execute` for names and parameters.

**Modbus RTU.** Units on one serial port share one open port (opened once, by the first
poller that needs it, closed with the last); their requests are serialised on it, as the
line allows only one outstanding request. A silent unit on a shared line therefore delays
the others on that line by its timeout per request — the line's physics, not the
connector's — while devices on other ports and on TCP are unaffected.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from aios.messages import CommandRequest, DeviceEventItem, TelemetrySample
from aios.plc.client import (
    ModbusClient,
    ModbusConnection,
    ModbusConnectionError,
    ModbusError,
    ModbusExceptionResponse,
)
from aios.plc.modbus import (
    DATA_TYPES,
    MAX_READ_COILS,
    MAX_READ_REGISTERS,
    ORDERS,
    AddressError,
    DataType,
    ModbusValueError,
    Order,
    Table,
    decode,
    describe_exception,
    encode,
    format_reference,
    parse_address,
    parse_coil,
    parse_number,
    register_count,
)
from connector.config import ModbusDeviceConfig, ModbusSensorConfig, RegisterConfig

log = logging.getLogger(__name__)

BIT_TABLES: Final = frozenset({"coil", "discrete_input"})
TABLE_ORDER: Final[tuple[Table, ...]] = (
    "coil",
    "discrete_input",
    "holding_register",
    "input_register",
)
FUNCTION_CODES: Final[dict[Table, int]] = {
    "coil": 1,
    "discrete_input": 2,
    "holding_register": 3,
    "input_register": 4,
}
"""Read function code of each table (spec §6.1–6.4)."""

HEALTH_WINDOW: Final = 100
"""Requests over which ``poll_success_rate`` is computed."""

COMMANDS: Final = ("write_coil", "write_register", "read_coil", "read_register")

TelemetryEmit = Callable[[str, list[TelemetrySample]], None]
"""``emit_telemetry(device_id, samples)``: one call per poll pass with at least one sample."""

EventEmit = Callable[[str, DeviceEventItem], None]
"""``emit_event(device_id, event)``."""


# --------------------------------------------------------------------------- read plan


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One read request: ``count`` items of ``table`` from 0-based ``address``, covering
    ``registers`` (the configured values it decodes, in address order)."""

    table: Table
    address: int
    count: int
    registers: tuple[RegisterConfig, ...]

    @property
    def function_code(self) -> int:
        """The read function code: 1 coils, 2 discrete inputs, 3 holding, 4 input registers."""
        return FUNCTION_CODES[self.table]

    def describe(self) -> str:
        """``"holding_register 0..9 (FC 03, 10 items)"``."""
        return (
            f"{self.table} {self.address}..{self.address + self.count - 1} "
            f"(FC {self.function_code:02d}, {self.count} items)"
        )


def plan_reads(registers: Sequence[RegisterConfig], *, max_gap: int = 0) -> list[ReadRequest]:
    """Return the fewest read requests that cover ``registers``.

    Per table, values are taken in address order and added to the current request while
    the request stays within the function code's limit (125 registers for holding and
    input registers, 2000 bits for coils and discrete inputs — spec §6.1–6.4) and the
    value starts at most ``max_gap`` unmapped items after the request's end. A value is
    never split over two requests; overlapping values (two names over the same registers,
    e.g. one float32 and its two halves) share a request. Greedy in address order is
    optimal here: each request starts at the lowest value not yet covered and reaches as
    far as the limits allow, so no plan covers the values with fewer requests.

    Requests come out by table (coils, discrete inputs, holding registers, input
    registers), then by address.

    Raises:
        ValueError: ``max_gap`` < 0.
    """
    if max_gap < 0:
        raise ValueError(f"max_gap must be 0 or more, got {max_gap}")
    plan: list[ReadRequest] = []
    for table in TABLE_ORDER:
        items = sorted(
            (r for r in registers if r.table == table),
            key=lambda r: (r.pdu_address, r.count, r.name),
        )
        limit = MAX_READ_COILS if table in BIT_TABLES else MAX_READ_REGISTERS
        group: list[RegisterConfig] = []
        start = end = 0
        for reg in items:
            first, last = reg.pdu_address, reg.pdu_address + reg.count
            if group and first - end <= max_gap and max(end, last) - start <= limit:
                group.append(reg)
                end = max(end, last)
                continue
            if group:
                plan.append(ReadRequest(table, start, end - start, tuple(group)))
            group, start, end = [reg], first, last
        if group:
            plan.append(ReadRequest(table, start, end - start, tuple(group)))
    return plan


def decode_register(reg: RegisterConfig, items: Sequence[int] | Sequence[bool]) -> float:
    """Return the published value of ``reg`` from its own items (bits or registers).

    Booleans are 0.0/1.0, unscaled; numbers are ``raw * scale + offset`` with ``raw`` from
    :func:`aios.plc.modbus.decode`.

    Raises:
        ModbusValueError: the item count does not match the data type, or the result is
            not finite (a float32 NaN or infinity, which telemetry cannot carry).
    """
    if reg.data_type == "bool":
        if len(items) != 1:
            raise ModbusValueError(f"{reg.name}: a bool takes 1 item, got {len(items)}")
        return 1.0 if items[0] else 0.0
    dt: DataType = reg.data_type
    raw = decode([int(v) for v in items], dt, reg.order)
    value = raw * reg.scale + reg.offset
    if not math.isfinite(value):
        raise ModbusValueError(f"{reg.name}: the device holds a non-finite value ({raw})")
    return float(value)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class RequestResult:
    """The outcome of one read request of a poll pass."""

    request: ReadRequest
    ok: bool
    error: str | None = None
    seconds: float = 0.0
    """Time from sending the request to its reply (or failure), s."""


@dataclass(frozen=True, slots=True)
class PollResult:
    """One poll pass: every request's outcome and the decoded values.

    ``values`` maps register names to published values; ``errors`` register names to why
    a value that was read could not be published (e.g. a NaN).
    """

    device_id: str
    time: datetime
    requests: list[RequestResult] = field(default_factory=list)
    samples: list[TelemetrySample] = field(default_factory=list)
    values: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every request of the pass was answered."""
        return all(r.ok for r in self.requests)

    def summary(self) -> str:
        """One line for a table: ``"14 values in 5 requests"``, or the first failure:
        ``"1 of 5 requests failed: <error>"``."""
        failed = [r for r in self.requests if not r.ok]
        if failed:
            return f"{len(failed)} of {len(self.requests)} requests failed: {failed[0].error}"
        text = f"{len(self.values)} value{'s' if len(self.values) != 1 else ''}"
        if self.requests:
            text += f" in {len(self.requests)} request{'s' if len(self.requests) != 1 else ''}"
        if self.errors:
            name, error = next(iter(self.errors.items()))
            text += f"; {len(self.errors)} not publishable ({name}: {error})"
        return text


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """What a command did: ``ok`` with a ``result``, or an ``error`` (and, for a Modbus
    exception, ``result == {"exception_code": n}``)."""

    ok: bool
    result: dict[str, Any] | None = None
    error: str | None = None


class CommandError(ValueError):
    """Command parameters that cannot be executed; the message says what to change."""


# --------------------------------------------------------------------------- links


class _Link:
    """One open Modbus link (a TCP connection, or a serial port shared by its units)."""

    def __init__(self, client: ModbusClient, key: str, shared: bool) -> None:
        self.client = client
        self.key = key
        self.shared = shared
        self.lock = threading.Lock()
        self.users = 0
        self.settings: tuple[Any, ...] = ()


_SERIAL_LINKS: dict[str, _Link] = {}
_SERIAL_LOCK = threading.Lock()


def _connection(device: ModbusDeviceConfig) -> ModbusConnection:
    return ModbusConnection(
        transport=device.transport,
        host=device.host,
        port=device.port,
        serial_port=device.serial_port,
        baudrate=device.baudrate,
        parity=device.parity,
        stopbits=device.stopbits,
        unit_id=device.unit_id,
    )


def _acquire_link(device: ModbusDeviceConfig) -> _Link:
    connection = _connection(device)
    client = ModbusClient(connection, timeout_seconds=device.timeout_seconds, retries=0)
    if device.transport == "tcp":
        link = _Link(client, f"tcp:{device.host}:{device.port}:{device.id}", shared=False)
        link.users = 1
        return link
    assert device.serial_port is not None
    settings = (device.baudrate, device.parity, device.stopbits)
    with _SERIAL_LOCK:
        existing = _SERIAL_LINKS.get(device.serial_port)
        if existing is None:
            link = _Link(client, device.serial_port, shared=True)
            link.settings = settings
            _SERIAL_LINKS[device.serial_port] = link
        else:
            link = existing
        if link.settings != settings:
            raise ValueError(
                f"{device.id}: serial port {device.serial_port} is already used at "
                f"{link.settings[0]} baud, parity {link.settings[1]}, {link.settings[2]} stop "
                "bit(s) by another device; every unit on one line needs the same settings"
            )
        link.users += 1
        return link


def _release_link(link: _Link) -> None:
    if not link.shared:
        link.client.close()
        return
    with _SERIAL_LOCK:
        link.users -= 1
        if link.users <= 0:
            _SERIAL_LINKS.pop(link.key, None)
            with link.lock:
                link.client.close()


class _Waiting(ModbusConnectionError):
    """The device is not answering and the next attempt is not due yet (no request sent)."""


def _is_no_reply(err: ModbusError) -> bool:
    from pymodbus.exceptions import ModbusIOException

    return isinstance(err.__cause__, ModbusIOException)


# --------------------------------------------------------------------------- the poller


@dataclass(slots=True)
class _Schedule:
    interval: float
    requests: list[ReadRequest]
    due: float = 0.0


class ModbusPoller:
    """Polls one Modbus device per its register map and executes commands on it.

    Args:
        device: the device's configuration (a PLC or a Modbus sensor).
        emit_telemetry: called with ``(device.id, samples)`` once per poll pass that read
            at least one value.
        emit_event: called with ``(device.id, event)`` for ``modbus.timeout`` and
            ``modbus.recovered``.
        reconnect_min_seconds, reconnect_max_seconds: the backoff between attempts to
            reach a device that stopped answering (doubling from min to max).
        clock: monotonic seconds (for tests).

    Raises:
        ValueError: an RTU device whose serial port is already used with other settings.
    """

    def __init__(
        self,
        device: ModbusDeviceConfig,
        emit_telemetry: TelemetryEmit,
        emit_event: EventEmit,
        *,
        reconnect_min_seconds: float = 0.5,
        reconnect_max_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.device = device
        self._emit_telemetry = emit_telemetry
        self._emit_event = emit_event
        self._backoff_min = reconnect_min_seconds
        self._backoff_max = max(reconnect_max_seconds, reconnect_min_seconds)
        self._clock = clock
        self._by_name = {r.name: r for r in device.registers}
        intervals: dict[float, list[RegisterConfig]] = {}
        for reg in device.registers:
            every = reg.poll_interval_seconds or device.poll_interval_seconds
            intervals.setdefault(every, []).append(reg)
        self._schedules = [
            _Schedule(every, plan_reads(regs, max_gap=device.max_gap_registers))
            for every, regs in sorted(intervals.items())
        ]
        self._link = _acquire_link(device)
        self._client = self._link.client.with_unit(device.unit_id)
        self._released = False
        # reachability: None unknown, True answering, False not answering
        self._answering: bool | None = None
        self._timeout_reported = False
        self._backoff = self._backoff_min
        self._retry_at = 0.0
        self._outcomes: deque[bool] = deque(maxlen=HEALTH_WINDOW)
        self._polls = 0
        self._failures = 0
        self._last_ok: float | None = None
        self._state_lock = threading.Lock()
        self._pass_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start polling in a background thread (idempotent).

        Raises:
            RuntimeError: the poller was stopped (build a new one for the device).
        """
        if self._released:
            raise RuntimeError(f"the poller of {self.device.id} was stopped; build a new one")
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"modbus-{self.device.id}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling, wait up to ``timeout`` s for the thread, close the link (idempotent).

        A request in flight is not interrupted: the wait may reach the device's timeout.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning(
                    "Modbus poller did not stop in time",
                    extra={"device_id": self.device.id, "timeout_seconds": timeout},
                )
        if not self._released:
            self._released = True
            _release_link(self._link)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # a bug must not kill the device's thread silently
                log.exception("Modbus poll pass failed", extra={"device_id": self.device.id})
            if not self._schedules:
                self._stop.wait(self.device.poll_interval_seconds)
                continue
            wait = min(s.due for s in self._schedules) - self._clock()
            if wait > 0:
                self._stop.wait(wait)

    # --- polling -------------------------------------------------------------------------

    def poll_once(self) -> PollResult:
        """Run one pass over every read that is due (all of them on the first pass) and emit
        the values as telemetry; return what each request did and the values.

        A poller that is not started can be used this way (``aios-connector check``).
        """
        with self._pass_lock:
            now = self._clock()
            due = [s for s in self._schedules if s.due <= now]
            requests = [req for s in due for req in s.requests]
            for s in due:
                s.due = s.due + s.interval if s.due + s.interval > now else now + s.interval
            result = PollResult(self.device.id, datetime.now(UTC))
            unreachable: str | None = None
            for req in requests:
                if unreachable is not None:
                    result.requests.append(RequestResult(req, False, unreachable))
                    self._count(False)
                    continue
                outcome, items, read_at, answered = self._read(req)
                result.requests.append(outcome)
                self._count(outcome.ok)
                if not outcome.ok:
                    if not answered:
                        unreachable = f"skipped: {outcome.error}"
                    continue
                self._decode(req, items, read_at, result)
            if result.samples:
                self._emit_telemetry(self.device.id, list(result.samples))
            return result

    def _read(self, req: ReadRequest) -> tuple[RequestResult, list[Any], datetime, bool]:
        """Send one read; return its result, the items, the reply time and whether the
        device answered at all (a Modbus exception is an answer)."""
        started = self._clock()
        try:
            with self._io() as client:
                items: list[Any]
                if req.table == "coil":
                    items = client.read_coils(req.address, req.count)
                elif req.table == "discrete_input":
                    items = client.read_discrete_inputs(req.address, req.count)
                elif req.table == "holding_register":
                    items = client.read_holding_registers(req.address, req.count)
                else:
                    items = client.read_input_registers(req.address, req.count)
        except ModbusExceptionResponse as err:
            self._answered()
            code = describe_exception(err.exception_code)
            error = f"PLC answered exception {code} ({req.describe()})"
            log.warning(
                "Modbus read refused",
                extra={"device_id": self.device.id, "request": req.describe(), "error": str(err)},
            )
            return RequestResult(req, False, error, self._clock() - started), [], _now(), True
        except _Waiting as err:
            return RequestResult(req, False, str(err), 0.0), [], _now(), False
        except ModbusError as err:
            if err.retryable:
                self._unreachable(err)
                return (
                    RequestResult(req, False, str(err), self._clock() - started),
                    [],
                    _now(),
                    False,
                )
            # a request this client cannot build: the device is not at fault
            log.error(
                "Modbus read not sent", extra={"device_id": self.device.id, "error": str(err)}
            )
            return RequestResult(req, False, str(err), self._clock() - started), [], _now(), True
        self._answered()
        with self._state_lock:
            self._last_ok = self._clock()
        return RequestResult(req, True, None, self._clock() - started), items, _now(), True

    def _decode(
        self, req: ReadRequest, items: list[Any], read_at: datetime, result: PollResult
    ) -> None:
        for reg in req.registers:
            offset = reg.pdu_address - req.address
            try:
                value = decode_register(reg, items[offset : offset + reg.count])
            except ModbusValueError as err:
                result.errors[reg.name] = str(err)
                continue
            result.values[reg.name] = value
            result.samples.append(
                TelemetrySample(metric=reg.name, value=value, unit=reg.unit, time=read_at)
            )

    def _count(self, ok: bool) -> None:
        with self._state_lock:
            self._polls += 1
            self._failures += 0 if ok else 1
            self._outcomes.append(ok)

    # --- the link ------------------------------------------------------------------------

    @contextmanager
    def _io(self, *, force: bool = False) -> Iterator[ModbusClient]:
        """The client, connected, with the link held; backoff unless ``force``."""
        with self._link.lock:
            if self._released:
                raise _Waiting(f"the poller of {self.device.id} is stopped")
            now = self._clock()
            if not force and now < self._retry_at:
                # backing off (also a silent unit on a shared line whose port stays open)
                raise _Waiting(
                    f"{self.device.describe()} is not answering; next attempt in "
                    f"{self._retry_at - now:.1f} s"
                )
            if not self._client.connected:
                self._client.connect()
            yield self._client

    def _unreachable(self, err: ModbusError) -> None:
        """The device did not answer: close the link (TCP), back off, report once."""
        shared_line_timeout = self._link.shared and _is_no_reply(err)
        if not shared_line_timeout:
            with self._link.lock:
                self._client.close()
        with self._state_lock:
            self._retry_at = self._clock() + self._backoff
            self._backoff = min(self._backoff * 2, self._backoff_max)
            was = self._answering
            self._answering = False
            report = not self._timeout_reported
            self._timeout_reported = True
        if report:
            what = "PLC" if not isinstance(self.device, ModbusSensorConfig) else "sensor"
            since = "stopped answering" if was else "does not answer"
            message = (
                f"{what} {self.device.id} ({self.device.describe()}) {since}: {err}. Check "
                "that it is powered and connected, its address/port and unit id, the "
                "network or serial cabling, and that no firewall blocks it."
            )
            log.warning(
                "Modbus device not answering",
                extra={"device_id": self.device.id, "error": str(err)},
            )
            self._event("modbus.timeout", "warning", message, str(err))

    def _answered(self) -> None:
        with self._state_lock:
            self._backoff = self._backoff_min
            self._retry_at = 0.0
            self._answering = True
            report = self._timeout_reported
            self._timeout_reported = False
        if report:
            log.info("Modbus device answers again", extra={"device_id": self.device.id})
            self._event(
                "modbus.recovered",
                "info",
                f"{self.device.id} ({self.device.describe()}) answers again.",
                None,
            )

    def _event(self, kind: str, severity: str, message: str, error: str | None) -> None:
        data: dict[str, Any] = {"device": self.device.describe()}
        if error is not None:
            data["error"] = error[:500]
        event = DeviceEventItem.model_validate(
            {
                "type": kind,
                "severity": severity,
                "message": message[:2000],
                "data": data,
                "time": datetime.now(UTC),
            }
        )
        try:
            self._emit_event(self.device.id, event)
        except Exception:
            log.exception("emitting a Modbus event failed", extra={"device_id": self.device.id})

    # --- health --------------------------------------------------------------------------

    def health(self) -> dict[str, float | int]:
        """Numbers for the heartbeat: ``poll_success_rate`` (% of the last 100 read requests
        answered; absent before the first), ``polls`` (read requests so far),
        ``poll_failures`` (of them, not answered or refused), ``last_poll_age_seconds``
        (since the last answered request; absent before the first)."""
        with self._state_lock:
            out: dict[str, float | int] = {"polls": self._polls, "poll_failures": self._failures}
            if self._outcomes:
                out["poll_success_rate"] = round(
                    100.0 * sum(self._outcomes) / len(self._outcomes), 1
                )
            if self._last_ok is not None:
                out["last_poll_age_seconds"] = round(max(0.0, self._clock() - self._last_ok), 3)
            return out

    # --- commands ------------------------------------------------------------------------

    def execute(self, request: CommandRequest) -> CommandOutcome:
        """Execute a command on the device and read the value back.

        Commands (``request.name``): ``write_coil``, ``write_register`` and, for
        diagnostics, ``read_coil``, ``read_register``. ``request.params`` is either

        * ``{"register": "<name in the register map>", "value": ...}`` — writes need the
          register to be ``writable: true``; the value is scaled back,
          ``raw = (value - offset) / scale``, rounded for integer types and range-checked;
        * ``{"table": ..., "address": 40001 | "40001" | 0, "data_type": "uint16",
          "order": "ABCD", "value": ...}`` — an address given as a 0-based number below
          10000 is a PDU address, larger numbers and strings are Modicon references; the
          table defaults to ``coil`` for coil commands and ``holding_register`` for register
          commands (``read_register`` also reads ``input_register``, ``read_coil``
          ``discrete_input``).

        Result: ``{"value": <read back, scaled>, "table", "address" (0-based),
        "data_type"}`` plus ``"register"`` and ``"unit"`` when named by register.

        Failures are outcomes, not exceptions: bad parameters (``error`` says what to
        change), a Modbus exception (``error`` "PLC answered exception 02 ILLEGAL DATA
        ADDRESS ...", ``result {"exception_code": 2}``), no reply (``error`` says so). A
        failure that may pass (no reply, connection refused, the device waiting out a
        reconnection delay) has ``result {"retryable": true}``: a pipeline's write is then
        tried again.
        """
        if request.deadline <= datetime.now(UTC):
            return CommandOutcome(
                False, None, f"the command's deadline ({request.deadline.isoformat()}) has passed"
            )
        if request.name not in COMMANDS:
            return CommandOutcome(
                False,
                None,
                f"unknown command {request.name!r} for a Modbus device; use one of "
                + ", ".join(COMMANDS),
            )
        try:
            target = self._target(request.name, dict(request.params))
        except (CommandError, AddressError, ModbusValueError) as err:
            return CommandOutcome(False, None, str(err))
        try:
            with self._io(force=True) as client:
                if target.write is not None:
                    if target.table == "coil":
                        client.write_coils(target.address, [bool(target.write[0])])
                    else:
                        client.write_registers(target.address, target.write)
                items = _read_items(client, target.table, target.address, target.count)
        except ModbusExceptionResponse as err:
            self._answered()
            return CommandOutcome(
                False,
                {"exception_code": err.exception_code},
                f"PLC answered exception {describe_exception(err.exception_code)} "
                f"({self.device.id}, {target.table} address {target.address})",
            )
        except _Waiting as err:
            return CommandOutcome(False, {"retryable": True}, str(err))
        except ModbusError as err:
            if err.retryable:
                self._unreachable(err)
                return CommandOutcome(False, {"retryable": True}, str(err))
            return CommandOutcome(False, None, str(err))
        self._answered()
        if target.register is not None:
            value = decode_register(target.register, items)
        elif target.data_type == "bool":
            value = 1.0 if items[0] else 0.0
        else:
            value = float(decode([int(v) for v in items], target.data_type, target.order))
        result: dict[str, Any] = {
            "value": value,
            "table": target.table,
            "address": target.address,
            "data_type": target.data_type,
        }
        if target.register is not None:
            result["register"] = target.register.name
            result["unit"] = target.register.unit
        return CommandOutcome(True, result, None)

    def _target(self, name: str, params: dict[str, Any]) -> _Target:
        writing = name.startswith("write_")
        coil_cmd = name.endswith("_coil")
        allowed_tables: tuple[Table, ...] = (
            ("coil",)
            if coil_cmd and writing
            else ("coil", "discrete_input")
            if coil_cmd
            else ("holding_register",)
            if writing
            else ("holding_register", "input_register")
        )
        if writing and isinstance(self.device, ModbusSensorConfig):
            raise CommandError(
                f"{self.device.id} is a sensor: it is read-only; send {name} to a PLC"
            )
        if writing and "value" not in params:
            raise CommandError(f"{name} needs params.value (the value to write)")
        if not writing and "value" in params:
            raise CommandError(f"{name} reads; remove params.value")
        if "register" in params:
            extra = set(params) - {"register", "value"}
            if extra:
                raise CommandError(
                    f"unexpected params {sorted(extra)} with 'register': give only register "
                    "and value (the register map has the rest)"
                )
            reg = self._by_name.get(str(params["register"]))
            if reg is None:
                raise CommandError(
                    f"no register named {params['register']!r} in {self.device.id}'s register "
                    f"map; known: {', '.join(sorted(self._by_name)) or '(none)'}"
                )
            if reg.table not in allowed_tables:
                raise CommandError(
                    f"register {reg.name} is a {reg.table}; {name} works on "
                    + " or ".join(allowed_tables)
                )
            if writing and not reg.writable:
                raise CommandError(
                    f"register {reg.name} is not writable: set writable: true for it in the "
                    "register map to allow commands to write it"
                )
            target = _Target(
                reg.table, reg.pdu_address, reg.count, reg.data_type, reg.order, None, reg
            )
            if writing:
                target.write = _raw_registers(
                    params["value"],
                    reg.data_type,
                    reg.order,
                    scale=reg.scale,
                    offset=reg.offset,
                    name=reg.name,
                )
            return target
        known = {"table", "address", "data_type", "order", "value"}
        extra = set(params) - known
        if extra:
            raise CommandError(
                f"unexpected params {sorted(extra)}: give register+value, or table, address, "
                "data_type, order and value"
            )
        if "address" not in params:
            raise CommandError(
                f"{name} needs params.register (a name in the register map) or params.address "
                "(0-based, or a reference such as 40001)"
            )
        table = params.get("table", allowed_tables[0])
        if table not in allowed_tables:
            raise CommandError(
                f"table {table!r} does not fit {name}; use " + " or ".join(allowed_tables)
            )
        address_param = params["address"]
        if isinstance(address_param, int) and not isinstance(address_param, bool):
            if address_param >= 10_000:
                address_param = str(address_param)
        elif not isinstance(address_param, str):
            raise CommandError("params.address is a number (0-based) or a reference such as 40001")
        try:
            address = parse_address(address_param, table)
        except AddressError as err:
            number = params["address"]
            if isinstance(number, int) and 10_000 <= number <= 65_535:
                raise CommandError(
                    f"{err}; a number from 10000 up is read as a Modicon reference: for the "
                    f"0-based address {number} send the reference "
                    f"{format_reference(number, table)!r}"
                ) from err
            raise
        bits = table in BIT_TABLES
        data_type = params.get("data_type", "bool" if bits else "uint16")
        if bits and data_type != "bool":
            raise CommandError(f"{table}s hold bits: data_type must be bool (or omitted)")
        if not bits and data_type not in DATA_TYPES:
            raise CommandError(
                f"data_type {data_type!r} is not one of {', '.join(DATA_TYPES)} for {table}s"
            )
        order = params.get("order", "ABCD")
        if order not in ORDERS:
            raise CommandError(f"order {order!r} is not one of {', '.join(ORDERS)}")
        count = 1 if bits else register_count(data_type)
        if address + count > 65_536:
            raise CommandError(f"{data_type} at {address} runs past address 65535")
        target = _Target(table, address, count, data_type, order, None, None)
        if writing:
            target.write = _raw_registers(params["value"], data_type, order)
        return target


@dataclass(slots=True)
class _Target:
    table: Table
    address: int
    count: int
    data_type: Any
    order: Order
    write: list[int] | None
    register: RegisterConfig | None


def _raw_registers(
    value: Any,
    data_type: str,
    order: Order,
    *,
    scale: float = 1.0,
    offset: float = 0.0,
    name: str | None = None,
) -> list[int]:
    """The registers (or ``[0/1]`` for a coil) that write ``value``, scaled back."""
    label = f"register {name}" if name else data_type
    if data_type == "bool":
        if not isinstance(value, bool | int | float | str):
            raise CommandError(f"{label}: a coil value is true or false (or 1/0)")
        return [int(parse_coil(value))]
    dt: DataType = data_type  # type: ignore[assignment]
    if isinstance(value, str):
        number: float = float(parse_number(value, "float32"))
    elif isinstance(value, bool | int | float):
        number = float(value)
    else:
        raise CommandError(f"{label}: value must be a number, got {type(value).__name__}")
    if not math.isfinite(number):
        raise CommandError(f"{label}: value must be a finite number")
    if scale == 0:
        raise CommandError(f"{label} has scale 0: it cannot be written")
    raw: float = (number - offset) / scale
    try:
        if dt == "float32":
            return encode(raw, dt, order)
        return encode(round(raw), dt, order)
    except ModbusValueError as err:
        raise CommandError(
            f"{label}: value {value!r} (raw {raw:g}) cannot be written: {err}; send a value "
            "within the data type's range"
        ) from err


def _read_items(client: ModbusClient, table: Table, address: int, count: int) -> list[Any]:
    if table == "coil":
        return list(client.read_coils(address, count))
    if table == "discrete_input":
        return list(client.read_discrete_inputs(address, count))
    if table == "holding_register":
        return list(client.read_holding_registers(address, count))
    return list(client.read_input_registers(address, count))


def _now() -> datetime:
    return datetime.now(UTC)
