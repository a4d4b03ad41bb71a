"""``aios/plc_write@1`` with a fleet PLC: the config takes exactly one of ``device_id`` and
``connection``; each value becomes a fleet command (params as the connector's
``ModbusPoller.execute`` takes them); a pulse restores through the same commands; without
the fleet (``aios run``) the node refuses with what to do."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from aios.events.state import MemoryStateStore
from aios.events.task import CommandAnswer, PermanentError, TaskRequest, TaskServices
from aios.nodes import plc_write
from aios.nodes.plc_write import RESTORE_NAMESPACE, PlcWriteAction

COIL = {"name": "siren", "table": "coil", "address": 0, "value": True}


def config(**fields: Any) -> Any:
    return plc_write.NODE.parse_config({"writes": [COIL], **fields})


def test_exactly_one_of_device_id_and_connection() -> None:
    assert config(device_id="press-7").device_id == "press-7"
    direct = config(connection={"host": "127.0.0.1", "port": 502})
    assert direct.device_id is None and direct.connection is not None
    for wrong, given in (({}, "neither"), ({"connection": {"host": "h"}}, "both")):
        fields = {"device_id": "press-7", **wrong} if given == "both" else wrong
        with pytest.raises(ValidationError) as raised:
            config(**fields)
        text = str(raised.value)
        assert "device_id" in text and "connection" in text and f"{given} given" in text


def test_device_id_is_a_device_id() -> None:
    with pytest.raises(ValidationError, match="device_id"):
        config(device_id="no spaces allowed")
    schema = plc_write.NODE.export()["config_schema"]
    assert "connection" not in schema.get("required", [])
    assert schema["properties"]["device_id"]["title"] == "Fleet PLC"


@dataclass
class ScriptedPlc:
    """Answers fleet commands like a connector's PLC: coils and registers by address."""

    coils: dict[int, bool] = field(default_factory=dict)
    registers: dict[int, float] = field(default_factory=dict)
    sent: list[tuple[str, str, dict[str, Any], float, str | None]] = field(default_factory=list)

    def send(
        self,
        device_id: str,
        name: str,
        params: dict[str, Any],
        timeout_seconds: float,
        *,
        actor: str | None = None,
    ) -> CommandAnswer:
        self.sent.append((device_id, name, dict(params), timeout_seconds, actor))
        address = int(params["address"])
        if name == "write_coil":
            self.coils[address] = bool(params["value"])
            return CommandAnswer(f"req-{len(self.sent)}", {"value": float(params["value"])})
        if name == "write_register":
            self.registers[address] = float(params["value"])
        return CommandAnswer(f"req-{len(self.sent)}", {"value": self.registers.get(address, 0)})


def request(phase: str | None = None) -> TaskRequest:
    context: dict[str, Any] = {"pipeline": "Yard", "execution": "exec-1"}
    if phase:
        context["phase"] = phase
    event = {"event_id": "evt-1", "event_type": "zone.enter", "source_id": "cam-1"}
    return TaskRequest(node_id="siren", event=event, context=context)


def services(plc: ScriptedPlc | None) -> TaskServices:
    return TaskServices(
        state=MemoryStateStore(), device_commands=plc, now=lambda: datetime.now(UTC)
    )


def test_each_value_is_a_command_with_the_connector_params() -> None:
    plc = ScriptedPlc()
    cfg = config(
        device_id="press-7",
        timeout_seconds=4,
        writes=[
            COIL,
            {
                "table": "holding_register",
                "address": "40011",
                "data_type": "float32",
                "order": "CDAB",
                "value": "{{ 2.5 * 2 }}",
            },
            {"table": "holding_register", "address": 20000, "value": [7, 8]},
        ],
    )
    result = PlcWriteAction(cfg, services(plc)).run(request())
    assert result["status"] == "sent"
    assert [(s[1], s[2]) for s in plc.sent] == [
        ("write_coil", {"table": "coil", "address": 0, "value": True}),
        (
            "write_register",
            {
                "table": "holding_register",
                "address": 10,
                "data_type": "float32",
                "order": "CDAB",
                "value": 5.0,
            },
        ),
        # from 10000 up the connector reads a number as a reference: sent as the reference
        (
            "write_register",
            {
                "table": "holding_register",
                "address": "420001",
                "data_type": "uint16",
                "order": "ABCD",
                "value": 7,
            },
        ),
        (
            "write_register",
            {
                "table": "holding_register",
                "address": "420002",
                "data_type": "uint16",
                "order": "ABCD",
                "value": 8,
            },
        ),
    ]
    assert {(s[0], s[3], s[4]) for s in plc.sent} == {
        ("press-7", 4.0, "pipeline 'Yard', node 'siren'")
    }
    writes = result["detail"]["writes"]
    assert [w["commands"] for w in writes] == [["req-1"], ["req-2"], ["req-3", "req-4"]]
    assert result["detail"]["device"] == "fleet PLC 'press-7'"


def test_a_pulse_restores_through_commands() -> None:
    plc = ScriptedPlc(registers={5: 12.0})
    cfg = config(
        device_id="press-7",
        pulse_seconds=10,
        writes=[COIL, {"table": "holding_register", "address": 5, "value": 99}],
    )
    svc = services(plc)
    action = PlcWriteAction(cfg, svc)
    action.run(request("write"))
    assert (plc.coils, plc.registers) == ({0: True}, {5: 99.0})
    # the register was read before the write; the coil's restore is its inverse
    assert [s[1] for s in plc.sent] == ["read_register", "write_coil", "write_register"]
    restored = action.run(request("restore"))
    assert restored["status"] == "sent" and restored["detail"]["phase"] == "restore"
    assert (plc.coils, plc.registers) == ({0: False}, {5: 12.0})
    assert svc.state.get(RESTORE_NAMESPACE, "Yard/siren/exec-1") is None


def test_without_the_fleet_the_node_says_what_to_do() -> None:
    cfg = config(device_id="press-7")
    with pytest.raises(PermanentError, match=r"aios up.*cloud.*config\.connection"):
        PlcWriteAction(cfg, services(None)).run(request())
