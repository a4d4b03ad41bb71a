"""The Modbus data model: value encoding in every word/byte order, references, request limits."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pymodbus.client import ModbusTcpClient

from aios.plc import modbus
from aios.plc.modbus import (
    AddressError,
    ModbusValueError,
    decode,
    decode_many,
    encode,
    encode_many,
    format_reference,
    parse_address,
    parse_coil,
    parse_number,
    split_requests,
)

# Reference register values, written out by hand from the IEEE 754 / two's-complement bytes
# A B C D of each value and the byte sequence each order names:
#   123456789  = 0x075BCD15      -123456789 = 0xF8A432EB      3735928559 = 0xDEADBEEF
#   1.5        = 0x3FC00000      -2.25      = 0xC0100000      123456.0   = 0x47F12000
KNOWN: list[tuple[modbus.DataType, float, dict[str, list[int]]]] = [
    (
        "int32",
        123456789,
        {
            "ABCD": [0x075B, 0xCD15],
            "CDAB": [0xCD15, 0x075B],
            "BADC": [0x5B07, 0x15CD],
            "DCBA": [0x15CD, 0x5B07],
        },
    ),
    (
        "int32",
        -123456789,
        {
            "ABCD": [0xF8A4, 0x32EB],
            "CDAB": [0x32EB, 0xF8A4],
            "BADC": [0xA4F8, 0xEB32],
            "DCBA": [0xEB32, 0xA4F8],
        },
    ),
    (
        "uint32",
        123456789,
        {
            "ABCD": [0x075B, 0xCD15],
            "CDAB": [0xCD15, 0x075B],
            "BADC": [0x5B07, 0x15CD],
            "DCBA": [0x15CD, 0x5B07],
        },
    ),
    (
        "uint32",
        3735928559,
        {
            "ABCD": [0xDEAD, 0xBEEF],
            "CDAB": [0xBEEF, 0xDEAD],
            "BADC": [0xADDE, 0xEFBE],
            "DCBA": [0xEFBE, 0xADDE],
        },
    ),
    (
        "float32",
        1.5,
        {
            "ABCD": [0x3FC0, 0x0000],
            "CDAB": [0x0000, 0x3FC0],
            "BADC": [0xC03F, 0x0000],
            "DCBA": [0x0000, 0xC03F],
        },
    ),
    (
        "float32",
        -2.25,
        {
            "ABCD": [0xC010, 0x0000],
            "CDAB": [0x0000, 0xC010],
            "BADC": [0x10C0, 0x0000],
            "DCBA": [0x0000, 0x10C0],
        },
    ),
    (
        "float32",
        123456.0,
        {
            "ABCD": [0x47F1, 0x2000],
            "CDAB": [0x2000, 0x47F1],
            "BADC": [0xF147, 0x0020],
            "DCBA": [0x0020, 0xF147],
        },
    ),
]

CASES = [
    pytest.param(dt, value, order, regs, id=f"{dt}-{value}-{order}")
    for dt, value, table in KNOWN
    for order, regs in table.items()
]


@pytest.mark.parametrize(("data_type", "value", "order", "registers"), CASES)
def test_encode_gives_the_reference_registers(
    data_type: modbus.DataType, value: float, order: modbus.Order, registers: list[int]
) -> None:
    """Encode a 32-bit value into the registers the reference table lists for the order."""
    # GIVEN a value with known bytes  WHEN encoded  THEN the registers match the table
    assert encode(value, data_type, order) == registers


@pytest.mark.parametrize(("data_type", "value", "order", "registers"), CASES)
def test_decode_gives_back_the_value(
    data_type: modbus.DataType, value: float, order: modbus.Order, registers: list[int]
) -> None:
    """Decode the reference registers back into the value."""
    # GIVEN the reference registers  WHEN decoded  THEN the value is exact
    assert decode(registers, data_type, order) == value


@pytest.mark.parametrize(
    ("data_type", "value"), [("int32", -123456789), ("uint32", 3735928559), ("float32", -2.25)]
)
def test_abcd_and_cdab_agree_with_pymodbus(data_type: modbus.DataType, value: float) -> None:
    """Cross-check the two word orders pymodbus supports against its own converter."""
    # GIVEN pymodbus' converter for big and little word order
    kind = getattr(ModbusTcpClient.DATATYPE, data_type.upper())
    # WHEN both encode  THEN ABCD = big word order and CDAB = little word order
    big = ModbusTcpClient.convert_to_registers(value, kind, word_order="big")
    little = ModbusTcpClient.convert_to_registers(value, kind, word_order="little")
    assert encode(value, data_type, "ABCD") == big
    assert encode(value, data_type, "CDAB") == little


@pytest.mark.parametrize(
    ("data_type", "value", "plain", "swapped"),
    [("int16", -2, 0xFFFE, 0xFEFF), ("uint16", 0x1234, 0x1234, 0x3412), ("int16", 1, 1, 0x0100)],
)
def test_16_bit_values_only_swap_bytes(
    data_type: modbus.DataType, value: int, plain: int, swapped: int
) -> None:
    """A one-register value is unaffected by word order and byte-swapped by BADC/DCBA."""
    # GIVEN a 16-bit value  WHEN encoded in each order  THEN only the byte swap matters
    assert encode(value, data_type, "ABCD") == [plain]
    assert encode(value, data_type, "CDAB") == [plain]
    assert encode(value, data_type, "BADC") == [swapped]
    assert encode(value, data_type, "DCBA") == [swapped]
    assert decode([swapped], data_type, "DCBA") == value


def test_float32_rounds_to_single_precision() -> None:
    """A decimal without an exact float32 comes back as the nearest float32."""
    # GIVEN 0.1  WHEN encoded and decoded  THEN it is float32's 0.1, close to but not 0.1
    back = decode(encode(0.1, "float32"), "float32")
    assert back != 0.1
    assert math.isclose(back, 0.1, rel_tol=1e-7)


def test_arrays_encode_consecutively() -> None:
    """Several values encode one after the other and decode back."""
    # GIVEN three int32 values in CDAB  WHEN encoded  THEN six registers, values in order
    registers = encode_many([1, -1, 123456789], "int32", "CDAB")
    assert registers == [1, 0, 0xFFFF, 0xFFFF, 0xCD15, 0x075B]
    assert decode_many(registers, "int32", "CDAB") == [1, -1, 123456789]


@pytest.mark.parametrize(
    ("value", "data_type", "message"),
    [
        (65536, "uint16", "out of range for uint16"),
        (-1, "uint16", "out of range for uint16"),
        (-32769, "int16", "out of range for int16"),
        (2**31, "int32", "out of range for int32"),
        (2**32, "uint32", "out of range for uint32"),
        (1.5, "int32", "whole number"),
        (math.inf, "float32", "finite"),
        (math.nan, "float32", "finite"),
        (1e39, "float32", "too large for float32"),
        (1, "int64", "unknown data type"),
    ],
)
def test_encode_rejects_values_the_type_cannot_hold(
    value: float, data_type: Any, message: str
) -> None:
    """Refuse a value outside the type's range, naming the range."""
    # GIVEN a value the type cannot hold  WHEN encoded  THEN a clear error
    with pytest.raises(ModbusValueError, match=message):
        encode(value, data_type)


def test_decode_rejects_wrong_register_counts_and_values() -> None:
    """Refuse one register for a 32-bit type and a register above 0xFFFF."""
    with pytest.raises(ModbusValueError, match="takes 2 register"):
        decode([1], "float32")
    with pytest.raises(ModbusValueError, match=r"0\.\.65535"):
        decode([0x10000], "uint16")
    with pytest.raises(ModbusValueError, match="unknown order"):
        decode([1], "uint16", "ACBD")  # type: ignore[arg-type]
    with pytest.raises(ModbusValueError, match="whole number"):
        decode_many([1, 2, 3], "int32")


@pytest.mark.parametrize(
    ("address", "table", "expected"),
    [
        (0, "holding_register", 0),
        (65535, "coil", 65535),
        ("40001", "holding_register", 0),
        ("400001", "holding_register", 0),
        ("40100", "holding_register", 99),
        ("49999", "holding_register", 9998),
        ("465536", "holding_register", 65535),
        ("00001", "coil", 0),
        ("00017", "coil", 16),
        ("09999", "coil", 9998),
        ("000001", "coil", 0),
        ("065536", "coil", 65535),
        ("30001", "input_register", 0),
        ("100010", "discrete_input", 9),
        (" 40002 ", "holding_register", 1),
    ],
)
def test_references_convert_to_0_based_addresses(
    address: int | str, table: modbus.Table, expected: int
) -> None:
    """Modicon references (5 and 6 digits) become 0-based PDU addresses; ints pass through."""
    assert parse_address(address, table) == expected


@pytest.mark.parametrize(
    ("address", "table", "message"),
    [
        ("40001", "coil", "holding register reference .* coils use 00001–09999"),
        ("00001", "holding_register", "coil reference .* 40001–49999 or 400001–465536"),
        ("30001", "holding_register", "input register reference"),
        ("40000", "holding_register", "out of range"),
        ("400000", "holding_register", "out of range"),
        ("465537", "holding_register", "out of range"),
        ("29999", "holding_register", "names no Modbus table"),
        ("4001", "holding_register", "neither a 0-based address"),
        ("4000a", "holding_register", "neither a 0-based address"),
        (65536, "coil", r"0\.\.65535"),
        (-1, "coil", r"0\.\.65535"),
        (True, "coil", "not true/false"),
    ],
)
def test_bad_addresses_are_refused_clearly(
    address: int | str, table: modbus.Table, message: str
) -> None:
    """Refuse a reference to another table, out-of-range numbers and malformed text."""
    with pytest.raises(AddressError, match=message):
        parse_address(address, table)


def test_format_reference_is_the_inverse() -> None:
    """The six-digit reference of an address converts back to it."""
    assert format_reference(0, "holding_register") == "400001"
    assert format_reference(16, "coil") == "000017"
    assert parse_address(format_reference(65535, "holding_register"), "holding_register") == 65535


def test_split_requests_respects_the_function_code_limits() -> None:
    """130 registers take two writes (123 + 7) and two reads (125 + 5)."""
    # GIVEN the spec's limits  WHEN 130 registers are split  THEN in order, none over the limit
    assert split_requests(0, 130, modbus.MAX_WRITE_REGISTERS) == [(0, 123), (123, 7)]
    assert split_requests(10, 130, modbus.MAX_READ_REGISTERS) == [(10, 125), (135, 5)]
    assert split_requests(0, 123, modbus.MAX_WRITE_REGISTERS) == [(0, 123)]
    assert split_requests(0, 4000, modbus.MAX_READ_COILS) == [(0, 2000), (2000, 2000)]
    assert (modbus.MAX_WRITE_COILS, modbus.MAX_READ_COILS) == (1968, 2000)


def test_split_requests_refuses_spans_past_the_address_space() -> None:
    """A span running past 65535, or an empty one, is refused."""
    with pytest.raises(AddressError, match="past the last address"):
        split_requests(65535, 2, 123)
    with pytest.raises(AddressError, match="at least one"):
        split_requests(0, 0, 123)


@pytest.mark.parametrize(
    ("text", "expected"),
    [(True, True), (0, False), ("ON", True), ("off", False), (" 1 ", True), ("false", False)],
)
def test_parse_coil(text: Any, expected: bool) -> None:
    """Coil states from booleans, 0/1 and words."""
    assert parse_coil(text) is expected


def test_parse_coil_refuses_other_values() -> None:
    """A coil is not 2 nor 'maybe'."""
    for value in (2, "maybe", ""):
        with pytest.raises(ModbusValueError, match="coil"):
            parse_coil(value)


def test_parse_number_for_each_type() -> None:
    """Template output parses to the type's number, with range checks."""
    assert parse_number("42", "uint16") == 42
    assert parse_number("12.0", "int32") == 12
    assert parse_number("true", "uint16") == 1
    assert parse_number("-2.25", "float32") == -2.25
    with pytest.raises(ModbusValueError, match="expected a number"):
        parse_number("abc", "int16")
    with pytest.raises(ModbusValueError, match="out of range"):
        parse_number("70000", "uint16")
    with pytest.raises(ModbusValueError, match="whole number"):
        parse_number("1.5", "int16")


def test_exception_codes_have_names_and_meanings() -> None:
    """Exception 02 is described with the spec's name."""
    assert modbus.describe_exception(2).startswith("02 ILLEGAL DATA ADDRESS: ")
    assert modbus.describe_exception(0x0B).startswith("0B GATEWAY TARGET DEVICE FAILED")
    assert "UNKNOWN" in modbus.describe_exception(0x55)
