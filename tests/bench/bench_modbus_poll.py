"""Benchmark: one poll pass of a 200-value register map, grouped reads vs one read per value.

A real pymodbus server on loopback (:mod:`aios.plc.simulator`) holds 200 values — 100
uint16, 60 float32 and 40 int32 (300 registers) in three contiguous blocks with unmapped
gaps between them — and :class:`connector.plc.ModbusPoller` polls it:

* **grouped** — the poller's plan (:func:`connector.plc.plan_reads`): the fewest requests
  of at most 125 registers that never cross a gap;
* **per value** — the same poller sending one request per value, as naive pollers do.

Prints requests per pass, the median pass time of each over ``--passes`` passes, and the
ratio. On a real network each request also costs a round trip (1–10 ms on a LAN, 10–50 ms
through a cellular gateway; on RTU at 19200 baud about 8 ms of line time per request plus
the 3.5-character gaps), so the loopback ratio is a lower bound of the gain on site.

Run: ``.venv/bin/python tests/bench/bench_modbus_poll.py [--passes N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from aios.messages import DeviceEventItem, TelemetrySample
from aios.plc.simulator import start_simulator
from connector.config import PlcConfig
from connector.plc import ModbusPoller, PollResult, ReadRequest


def register_map() -> list[dict[str, Any]]:
    """200 values over 340 registers: three blocks with unmapped gaps between them."""
    regs: list[dict[str, Any]] = []
    regs += [{"name": f"u{i}", "address": i, "scale": 0.1} for i in range(100)]  # 0..99
    regs += [
        {"name": f"f{i}", "address": 110 + 2 * i, "data_type": "float32", "order": "CDAB"}
        for i in range(60)
    ]  # 110..229
    regs += [
        {"name": f"i{i}", "address": 240 + 2 * i, "data_type": "int32"} for i in range(40)
    ]  # 240..319
    return regs


def _noop_telemetry(device_id: str, samples: list[TelemetrySample]) -> None:
    return None


def _noop_event(device_id: str, event: DeviceEventItem) -> None:
    return None


def _time_passes(pollers: list[ModbusPoller], passes: int) -> tuple[float, int]:
    """Median seconds of one pass over every poller, and requests per pass."""
    times: list[float] = []
    requests = 0
    for _ in range(passes):
        start = time.perf_counter()
        results: list[PollResult] = [p.poll_once() for p in pollers]
        times.append(time.perf_counter() - start)
        requests = sum(len(r.requests) for r in results)
        assert all(r.ok for r in results), [r.requests for r in results if not r.ok]
        # every pass is due: reset the schedules so the next call reads everything again
        for p in pollers:
            for schedule in p._schedules:
                schedule.due = 0.0
    return statistics.median(times), requests


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=30)
    args = parser.parse_args(argv)
    regs = register_map()
    with start_simulator(holding_registers=400, unmapped_registers=[(100, 10), (230, 10)]) as sim:
        base = {"host": sim.host, "port": sim.port, "unit_id": sim.device_id}
        grouped = ModbusPoller(
            PlcConfig.model_validate({"id": "grouped", **base, "registers": regs}),
            _noop_telemetry,
            _noop_event,
        )
        per_value = ModbusPoller(
            PlcConfig.model_validate({"id": "per-value", **base, "registers": regs}),
            _noop_telemetry,
            _noop_event,
        )
        for schedule in per_value._schedules:
            schedule.requests = _one_per_value(schedule.requests)
        try:
            g_time, g_requests = _time_passes([grouped], args.passes)
            v_time, v_requests = _time_passes([per_value], args.passes)
        finally:
            grouped.stop()
            per_value.stop()
    print(f"register map: {len(regs)} values, 300 registers, 2 gaps")
    print(f"grouped:   {g_requests:4d} requests/pass, median pass {g_time * 1000:8.2f} ms")
    print(f"per value: {v_requests:4d} requests/pass, median pass {v_time * 1000:8.2f} ms")
    print(f"ratio (per value / grouped): {v_time / g_time:.1f}x")


def _one_per_value(requests: list[ReadRequest]) -> list[ReadRequest]:
    return [
        ReadRequest(reg.table, reg.pdu_address, reg.count, (reg,))
        for req in requests
        for reg in req.registers
    ]


if __name__ == "__main__":
    main()
