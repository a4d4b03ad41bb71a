"""plan_reads: the fewest valid Modbus read requests for a register map."""

from __future__ import annotations

from typing import Any

import pytest

from connector.config import RegisterConfig
from connector.plc import ReadRequest, decode_register, plan_reads


def reg(name: str, address: int | str, **fields: Any) -> RegisterConfig:
    return RegisterConfig.model_validate({"name": name, "address": address, **fields})


def spans(plan: list[ReadRequest]) -> list[tuple[str, int, int]]:
    return [(r.table, r.address, r.count) for r in plan]


def names(request: ReadRequest) -> list[str]:
    return [r.name for r in request.registers]


def test_contiguous_registers_are_one_request() -> None:
    """Adjacent values of mixed sizes are read in one request."""
    # GIVEN uint16 at 0, float32 at 1-2, int32 at 3-4
    regs = [
        reg("a", 0),
        reg("b", 1, data_type="float32"),
        reg("c", 3, data_type="int32"),
    ]
    # WHEN planned
    plan = plan_reads(regs)
    # THEN one request of 5 registers covers all three
    assert spans(plan) == [("holding_register", 0, 5)]
    assert names(plan[0]) == ["a", "b", "c"]


def test_125_register_limit_splits_requests() -> None:
    """No request reads more than 125 registers (FC 03/04)."""
    # GIVEN 300 adjacent uint16 registers
    regs = [reg(f"r{i}", i) for i in range(300)]
    # WHEN planned
    plan = plan_reads(regs)
    # THEN 125 + 125 + 50
    assert spans(plan) == [
        ("holding_register", 0, 125),
        ("holding_register", 125, 125),
        ("holding_register", 250, 50),
    ]
    assert sum(len(r.registers) for r in plan) == 300


def test_a_value_is_never_split_across_requests() -> None:
    """A float32 that would straddle the 125 boundary moves to the next request."""
    # GIVEN uint16 at 0..123 and a float32 at 124-125
    regs = [reg(f"r{i}", i) for i in range(124)] + [reg("f", 124, data_type="float32")]
    # WHEN planned
    plan = plan_reads(regs)
    # THEN the first request stops at 124 registers and the float32 is read whole
    assert spans(plan) == [("holding_register", 0, 124), ("holding_register", 124, 2)]
    assert names(plan[1]) == ["f"]


def test_gaps_are_not_read_by_default() -> None:
    """With max_gap 0 a single unmapped register splits the request."""
    # GIVEN registers at 0-1 and 3 (2 unmapped)
    regs = [reg("a", 0), reg("b", 1), reg("c", 3)]
    # WHEN planned with the default max_gap
    plan = plan_reads(regs)
    # THEN two requests, none touching address 2
    assert spans(plan) == [("holding_register", 0, 2), ("holding_register", 3, 1)]


@pytest.mark.parametrize(
    ("max_gap", "expected"),
    [
        (0, [(0, 1), (4, 1), (10, 1)]),
        (2, [(0, 1), (4, 1), (10, 1)]),
        (3, [(0, 5), (10, 1)]),
        (5, [(0, 11)]),
    ],
)
def test_max_gap_bounds_the_unmapped_span(max_gap: int, expected: list[tuple[int, int]]) -> None:
    """Registers are bridged only across gaps of at most max_gap unmapped registers."""
    # GIVEN registers at 0, 4 and 10 (gaps of 3 and 5)
    regs = [reg("a", 0), reg("b", 4), reg("c", 10)]
    # WHEN planned with max_gap
    plan = plan_reads(regs, max_gap=max_gap)
    # THEN the gaps larger than max_gap split the requests
    assert [(r.address, r.count) for r in plan] == expected


def test_bits_and_registers_use_their_own_limits_and_tables() -> None:
    """Coils and discrete inputs go in requests of at most 2000 bits, apart from registers."""
    # GIVEN 2100 coils, 3 discrete inputs, 2 holding and 2 input registers at address 0
    regs = [reg(f"c{i}", i, table="coil", data_type="bool") for i in range(2100)]
    regs += [reg(f"d{i}", i, table="discrete_input", data_type="bool") for i in range(3)]
    regs += [reg("h", 0, data_type="int32"), reg("i", "300001", table="input_register")]
    regs += [reg("i2", 1, table="input_register")]
    # WHEN planned
    plan = plan_reads(regs)
    # THEN each table is read on its own, coils split at 2000
    assert spans(plan) == [
        ("coil", 0, 2000),
        ("coil", 2000, 100),
        ("discrete_input", 0, 3),
        ("holding_register", 0, 2),
        ("input_register", 0, 2),
    ]
    assert [r.function_code for r in plan] == [1, 1, 2, 3, 4]


def test_overlapping_registers_share_one_request() -> None:
    """A float32 and its two 16-bit halves are read once."""
    # GIVEN a float32 at 10-11 and uint16 views of 10 and 11, and a duplicate name at 11
    regs = [
        reg("hi", 10),
        reg("whole", 10, data_type="float32"),
        reg("lo", 11),
        reg("whole_swapped", 10, data_type="float32", order="CDAB"),
    ]
    # WHEN planned
    plan = plan_reads(regs)
    # THEN one request of two registers decodes all four
    assert spans(plan) == [("holding_register", 10, 2)]
    assert sorted(names(plan[0])) == ["hi", "lo", "whole", "whole_swapped"]


def test_references_and_unsorted_input() -> None:
    """Modicon references and any input order plan the same as 0-based addresses."""
    # GIVEN 40011 (= 10) before 40001 (= 0) and 9
    regs = [reg("b", "40011"), reg("a", "40001"), reg("c", 9)]
    # WHEN planned
    plan = plan_reads(regs)
    # THEN requests are in address order, 9 and 10 together
    assert spans(plan) == [("holding_register", 0, 1), ("holding_register", 9, 2)]


def test_plan_of_nothing_and_bad_gap() -> None:
    """No registers → no requests; a negative max_gap is refused."""
    assert plan_reads([]) == []
    with pytest.raises(ValueError, match="max_gap"):
        plan_reads([reg("a", 0)], max_gap=-1)


@pytest.mark.parametrize(
    ("fields", "items", "expected"),
    [
        ({"data_type": "int16", "scale": 0.1}, [0xFFF6], -1.0),
        ({"data_type": "uint16", "scale": 2, "offset": -5}, [10], 15.0),
        ({"data_type": "int32", "order": "CDAB"}, [0xCD15, 0x075B], 123456789.0),
        ({"data_type": "float32", "order": "DCBA"}, [0x0000, 0x2041], 10.0),
        ({"table": "coil", "data_type": "bool"}, [True], 1.0),
    ],
)
def test_decode_register_scales_raw_values(
    fields: dict[str, Any], items: list[Any], expected: float
) -> None:
    """Published value = raw × scale + offset; booleans 0/1 unscaled."""
    assert decode_register(reg("x", 0, **fields), items) == pytest.approx(expected)
