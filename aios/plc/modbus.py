"""The Modbus data model: tables, addresses, data types, word and byte order, request limits.

Pure functions, no I/O; :mod:`aios.plc.client` sends what these produce.

Sources:

* *MODBUS Application Protocol Specification V1.1b3* (modbus.org, 2012), "the spec" below:
  §4.3 data model (coils and holding registers are separate tables; each is addressed
  0–65535 in the PDU), §4.4 addressing model ("data numbered X is addressed in the PDU
  X-1"), §6 function codes and their quantity limits, §7 exception codes.
* Modicon references (the "4xxxx" convention of PLC manuals and HMI tags): the first digit
  names the table — 0 coils, 1 discrete inputs, 3 input registers, 4 holding registers —
  and the rest is the 1-based number of the item; five-digit references reach item 9999,
  six-digit references item 65536 (*Modicon Modbus Protocol Reference Guide*, PI-MBUS-300
  Rev. J, 1996, for the five-digit form; the six-digit extended form, e.g. 400001–465536,
  is the one PLC, HMI and SCADA tools use to reach the whole address space).

Multi-register values: Modbus defines only 16-bit registers, sent big-endian (spec §4.2).
A 32-bit value spans two consecutive registers, and devices disagree on how its four bytes
``A B C D`` (``A`` most significant) are laid out over them. The field names the layouts by
the byte sequence as it appears on the wire:

========  ===================  =========================================
order     registers            also called
========  ===================  =========================================
``ABCD``  ``[AB, CD]``         big-endian, "high word first" (spec default)
``CDAB``  ``[CD, AB]``         word swap, "little-endian word order"
``BADC``  ``[BA, DC]``         byte swap
``DCBA``  ``[DC, BA]``         little-endian
========  ===================  =========================================

A 16-bit value ``A B`` is one register: ``ABCD``/``CDAB`` give ``[AB]``, ``BADC``/``DCBA``
(the byte-swapping orders) give ``[BA]``.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Sequence
from typing import Final, Literal, get_args

Table = Literal["coil", "discrete_input", "input_register", "holding_register"]
"""The four tables of the Modbus data model (spec §4.3)."""

WritableTable = Literal["coil", "holding_register"]
"""The tables a client can write (discrete inputs and input registers are read-only)."""

DataType = Literal["int16", "uint16", "int32", "uint32", "float32"]
"""How a value is laid over registers: 16-bit integers take one register, 32-bit integers
and IEEE 754 single-precision floats take two."""

Order = Literal["ABCD", "CDAB", "BADC", "DCBA"]
"""Word and byte order of a value over its registers (see the module docstring)."""

DATA_TYPES: Final[tuple[DataType, ...]] = get_args(DataType)
ORDERS: Final[tuple[Order, ...]] = get_args(Order)

ADDRESS_SPACE: Final = 65_536
"""PDU addresses of each table run 0..65535 (spec §4.4)."""

MAX_READ_COILS: Final = 2000
"""Read Coils (FC 01) and Read Discrete Inputs (FC 02): 1 to 2000 (0x07D0) per request
(spec §6.1, §6.2)."""

MAX_WRITE_COILS: Final = 1968
"""Write Multiple Coils (FC 15): 1 to 1968 (0x07B0) per request (spec §6.11)."""

MAX_READ_REGISTERS: Final = 125
"""Read Holding Registers (FC 03) and Read Input Registers (FC 04): 1 to 125 (0x007D) per
request (spec §6.3, §6.4) — a 250-byte payload in a 253-byte PDU."""

MAX_WRITE_REGISTERS: Final = 123
"""Write Multiple Registers (FC 16): 1 to 123 (0x007B) per request (spec §6.12)."""

REGISTER_COUNT: Final[dict[DataType, int]] = {
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
}
"""Registers one value of each data type takes."""

_STRUCT: Final[dict[DataType, str]] = {
    "int16": ">h",
    "uint16": ">H",
    "int32": ">i",
    "uint32": ">I",
    "float32": ">f",
}

_INT_RANGE: Final[dict[DataType, tuple[int, int]]] = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
}

EXCEPTION_CODES: Final[dict[int, tuple[str, str]]] = {
    0x01: (
        "ILLEGAL FUNCTION",
        "the device does not support this function code (try single or multiple writes, "
        "or check the device's manual)",
    ),
    0x02: (
        "ILLEGAL DATA ADDRESS",
        "the address (or address + count) is not one the device has; check the 0-based "
        "address against the device's register map",
    ),
    0x03: (
        "ILLEGAL DATA VALUE",
        "the device refused a value or the quantity in the request",
    ),
    0x04: (
        "SERVER DEVICE FAILURE",
        "an unrecoverable error occurred in the device while performing the request",
    ),
    0x05: (
        "ACKNOWLEDGE",
        "the device accepted the request but needs a long time to process it",
    ),
    0x06: (
        "SERVER DEVICE BUSY",
        "the device is busy with a long-duration command; retry later",
    ),
    0x07: (
        "NEGATIVE ACKNOWLEDGE",
        "the device cannot perform the program function (legacy Modicon code)",
    ),
    0x08: (
        "MEMORY PARITY ERROR",
        "the device detected a parity error in its memory",
    ),
    0x0A: (
        "GATEWAY PATH UNAVAILABLE",
        "the gateway has no path to the unit id; check the unit id and the gateway's routing",
    ),
    0x0B: (
        "GATEWAY TARGET DEVICE FAILED TO RESPOND",
        "the gateway got no answer from the device behind it",
    ),
}
"""Exception codes (spec §7, plus Modicon's legacy 07): name and meaning."""

RETRYABLE_EXCEPTION_CODES: Final = frozenset({0x05, 0x06, 0x0B})
"""Exception codes after which the same request may succeed later (spec §7: ACKNOWLEDGE,
SERVER DEVICE BUSY — "the client should retransmit the message later" — and a gateway whose
target did not answer)."""


class ModbusValueError(ValueError):
    """A value that the data type cannot represent, or registers that do not decode."""


class AddressError(ValueError):
    """An address or reference that is malformed, out of range or for another table."""


def describe_exception(code: int) -> str:
    """Return ``"02 ILLEGAL DATA ADDRESS: <meaning>"`` for a Modbus exception code."""
    name, meaning = EXCEPTION_CODES.get(code, ("UNKNOWN EXCEPTION", "not defined by the spec"))
    return f"{code:02X} {name}: {meaning}"


# --- values -----------------------------------------------------------------------------------


def register_count(data_type: DataType) -> int:
    """Return how many 16-bit registers one value of ``data_type`` takes (1 or 2)."""
    try:
        return REGISTER_COUNT[data_type]
    except KeyError:
        raise ModbusValueError(
            f"unknown data type {data_type!r}; use one of {', '.join(DATA_TYPES)}"
        ) from None


def _check_order(order: str) -> None:
    if order not in ORDERS:
        raise ModbusValueError(f"unknown order {order!r}; use one of {', '.join(ORDERS)}")


def _bytes_to_registers(data: bytes, order: Order) -> list[int]:
    words = [data[i : i + 2] for i in range(0, len(data), 2)]
    if order in ("CDAB", "DCBA"):
        words.reverse()
    if order in ("BADC", "DCBA"):
        words = [w[::-1] for w in words]
    return [int.from_bytes(w, "big") for w in words]


def _registers_to_bytes(registers: Sequence[int], order: Order) -> bytes:
    words = [int(r).to_bytes(2, "big") for r in registers]
    if order in ("BADC", "DCBA"):
        words = [w[::-1] for w in words]
    if order in ("CDAB", "DCBA"):
        words.reverse()
    return b"".join(words)


def _as_int(value: int | float, data_type: DataType) -> int:
    if isinstance(value, float):
        if not value.is_integer():
            raise ModbusValueError(f"{data_type} needs a whole number, got {value!r}")
        value = int(value)
    low, high = _INT_RANGE[data_type]
    if not low <= value <= high:
        raise ModbusValueError(f"value {value} is out of range for {data_type} ({low}..{high})")
    return int(value)


def encode(value: int | float, data_type: DataType, order: Order = "ABCD") -> list[int]:
    """Return the registers (each 0..65535) holding ``value`` as ``data_type`` in ``order``.

    Integers must be whole and within the type's range (a float such as ``3.0`` is
    accepted for an integer type); ``float32`` values must be finite and are rounded to the
    nearest single-precision value. ``bool`` counts as 0/1.

    Example: ``encode(123456789, "int32", "CDAB") == [0xCD15, 0x075B]``.

    Raises:
        ModbusValueError: out of range, not whole, not finite, or unknown type/order.
    """
    count = register_count(data_type)
    _check_order(order)
    if not isinstance(value, int | float):
        raise ModbusValueError(f"{data_type} needs a number, got {type(value).__name__}")
    if data_type == "float32":
        number = float(value)
        if not math.isfinite(number):
            raise ModbusValueError(f"float32 values must be finite, got {number}")
        try:
            data = struct.pack(_STRUCT[data_type], number)
        except OverflowError:
            raise ModbusValueError(
                f"value {number} is too large for float32 (at most about 3.4e38)"
            ) from None
    else:
        data = struct.pack(_STRUCT[data_type], _as_int(value, data_type))
    registers = _bytes_to_registers(data, order)
    if len(registers) != count:  # pragma: no cover - the struct formats fix the size
        raise ModbusValueError(f"{data_type} encoded to {len(registers)} registers")
    return registers


def decode(registers: Sequence[int], data_type: DataType, order: Order = "ABCD") -> int | float:
    """Return the value that ``registers`` hold as ``data_type`` in ``order``.

    ``registers`` must have exactly :func:`register_count` items, each 0..65535.
    ``float32`` results are the exact single-precision value as a Python float.

    Raises:
        ModbusValueError: wrong number of registers, a register out of range, or unknown
            type/order.
    """
    count = register_count(data_type)
    _check_order(order)
    if len(registers) != count:
        raise ModbusValueError(f"{data_type} takes {count} register(s), got {len(registers)}")
    for reg in registers:
        if not 0 <= int(reg) <= 0xFFFF:
            raise ModbusValueError(f"register value {reg} is not 0..65535")
    (value,) = struct.unpack(_STRUCT[data_type], _registers_to_bytes(registers, order))
    return float(value) if data_type == "float32" else int(value)


def encode_many(
    values: Sequence[int | float], data_type: DataType, order: Order = "ABCD"
) -> list[int]:
    """Return the registers of consecutive values (an array in the device's memory)."""
    registers: list[int] = []
    for value in values:
        registers.extend(encode(value, data_type, order))
    return registers


def decode_many(
    registers: Sequence[int], data_type: DataType, order: Order = "ABCD"
) -> list[int | float]:
    """Return the values held by consecutive registers.

    Raises:
        ModbusValueError: the register count is not a multiple of the type's size.
    """
    size = register_count(data_type)
    if len(registers) % size:
        raise ModbusValueError(
            f"{len(registers)} registers do not hold a whole number of {data_type} values"
        )
    return [
        decode(registers[i : i + size], data_type, order) for i in range(0, len(registers), size)
    ]


_TRUE_WORDS: Final = frozenset({"1", "true", "on", "yes"})
_FALSE_WORDS: Final = frozenset({"0", "false", "off", "no"})


def parse_coil(value: bool | int | float | str) -> bool:
    """Return a coil state from ``True``/``False``, 0/1, or text (``true``/``on``/``1``...).

    Raises:
        ModbusValueError: anything else (e.g. ``2`` or ``"maybe"``).
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if value in (0, 1):
            return bool(value)
        raise ModbusValueError(f"a coil is 0 or 1 (false or true), got {value!r}")
    text = str(value).strip().lower()
    if text in _TRUE_WORDS:
        return True
    if text in _FALSE_WORDS:
        return False
    raise ModbusValueError(f"a coil is true or false (also on/off, 1/0), got {value!r}")


def parse_number(text: str, data_type: DataType) -> int | float:
    """Return the number written in ``text`` for ``data_type`` (for values from templates).

    Integer types accept whole numbers, also written ``12.0`` or ``1e3``; ``true``/``false``
    count as 1/0. ``float32`` accepts any finite decimal number.

    Raises:
        ModbusValueError: empty or not a number, or out of range for the type.
    """
    raw = text.strip()
    lowered = raw.lower()
    if lowered in ("true", "false"):
        number: int | float = int(lowered == "true")
    else:
        try:
            number = int(raw, 10)
        except ValueError:
            try:
                number = float(raw)
            except ValueError:
                raise ModbusValueError(f"expected a number for {data_type}, got {raw!r}") from None
    encode(number, data_type)  # range and type check
    if data_type == "float32":
        return float(number)
    return _as_int(number, data_type)


# --- addresses --------------------------------------------------------------------------------

_REFERENCE = re.compile(r"^[0-9]{5,6}$")
_TABLE_PREFIX: Final[dict[Table, str]] = {
    "coil": "0",
    "discrete_input": "1",
    "input_register": "3",
    "holding_register": "4",
}
_PREFIX_TABLE: Final[dict[str, Table]] = {v: k for k, v in _TABLE_PREFIX.items()}


def _table_name(table: Table) -> str:
    return table.replace("_", " ") + "s"


def _article(table: Table) -> str:
    return "an" if table[0] in "aeiou" else "a"


def reference_ranges(table: Table) -> str:
    """Return the valid reference forms of a table, e.g. ``"40001–49999 or 400001–465536"``."""
    p = _TABLE_PREFIX[table]
    return f"{p}0001–{p}9999 or {p}00001–{p}65536"


def parse_address(address: int | str, table: Table) -> int:
    """Return the 0-based PDU address of ``address`` in ``table``.

    ``address`` is either a 0-based PDU address (an ``int`` 0..65535, as sent in the
    request) or a Modicon reference string of five or six digits whose first digit names
    the table: ``"40001"`` and ``"400001"`` are holding register 0, ``"00017"`` and
    ``"000017"`` coil 16, ``"465536"`` holding register 65535.

    Raises:
        AddressError: out of range, malformed, or a reference to another table (e.g.
            ``"40001"`` given for a coil).
    """
    if isinstance(address, bool):
        raise AddressError("an address is a number or a reference string, not true/false")
    if isinstance(address, int):
        if not 0 <= address < ADDRESS_SPACE:
            raise AddressError(f"address {address} is out of range: 0-based addresses run 0..65535")
        return address
    text = str(address).strip()
    if not _REFERENCE.match(text):
        raise AddressError(
            f"address {address!r} is neither a 0-based address (a number such as 16) nor a "
            f"reference of 5 or 6 digits ({reference_ranges(table)} for {_table_name(table)})"
        )
    prefix, number = text[0], int(text[1:])
    ref_table = _PREFIX_TABLE.get(prefix)
    if ref_table is None:
        raise AddressError(
            f"reference {text} starts with {prefix}, which names no Modbus table (0 coils, "
            "1 discrete inputs, 3 input registers, 4 holding registers)"
        )
    if ref_table != table:
        raise AddressError(
            f"reference {text} is {_article(ref_table)} {ref_table.replace('_', ' ')} reference "
            f"({prefix}xxxx), "
            f"but {_table_name(table)} use {reference_ranges(table)}"
        )
    limit = 9_999 if len(text) == 5 else ADDRESS_SPACE
    if not 1 <= number <= limit:
        raise AddressError(
            f"reference {text} is out of range: {_table_name(table)} use {reference_ranges(table)}"
        )
    return number - 1


def format_reference(address: int, table: Table) -> str:
    """Return the six-digit Modicon reference of a 0-based address (``0`` → ``"400001"``)."""
    if not 0 <= address < ADDRESS_SPACE:
        raise AddressError(f"address {address} is out of range 0..65535")
    return f"{_TABLE_PREFIX[table]}{address + 1:05d}"


def check_span(address: int, count: int) -> None:
    """Check that ``count`` items from ``address`` stay inside the 0..65535 address space.

    Raises:
        AddressError: ``count`` < 1 or the span runs past 65535.
    """
    if count < 1:
        raise AddressError(f"a request needs at least one item, got {count}")
    if not 0 <= address < ADDRESS_SPACE or address + count > ADDRESS_SPACE:
        raise AddressError(
            f"{count} item(s) from address {address} run past the last address 65535"
        )


def split_requests(address: int, count: int, max_per_request: int) -> list[tuple[int, int]]:
    """Split ``count`` items from ``address`` into ``(address, count)`` requests of at most
    ``max_per_request`` items each, in address order.

    Use :data:`MAX_READ_REGISTERS` (125), :data:`MAX_WRITE_REGISTERS` (123),
    :data:`MAX_READ_COILS` (2000) or :data:`MAX_WRITE_COILS` (1968).

    Example: ``split_requests(0, 130, 123) == [(0, 123), (123, 7)]``.

    Raises:
        AddressError: as :func:`check_span`.
        ValueError: ``max_per_request`` < 1.
    """
    if max_per_request < 1:
        raise ValueError(f"max_per_request must be at least 1, got {max_per_request}")
    check_span(address, count)
    return [
        (start, min(max_per_request, address + count - start))
        for start in range(address, address + count, max_per_request)
    ]
