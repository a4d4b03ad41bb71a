"""``aios/plc_write@1`` — writes coils and holding registers of a PLC over Modbus.

Per event, the node writes a list of values to one device (Modbus TCP, or Modbus RTU on a
serial line) through :class:`aios.plc.client.ModbusClient`: each value names its table
(``coil`` or ``holding_register``), its address (0-based, or a Modicon reference such as
``"40001"`` / ``"00017"``), its data type and word/byte order (``ABCD``, ``CDAB``, ``BADC``,
``DCBA``, see :mod:`aios.plc.modbus`) and the value — a number, true/false, a list written
to consecutive addresses, or a Jinja2 template of event fields rendered and then parsed
(``"{{ event.data.count }}"``).

Pulse: with ``pulse_seconds`` set, the node writes, holds, and restores. In a state machine
that is three steps (see :meth:`PlcWriteAction.asl_phases`): Task ``phase: write`` →
Wait → Task ``phase: restore``. The write phase applies the action contract (disabled,
cooldown, dedup) and, before writing, records what to restore in the state store
(namespace ``plc/restore``, key ``<pipeline>/<node>/<execution>``): the configured
``restore_value``, else the inverse of the written coil, else the holding registers read
just before the write. The restore phase writes that back without cooldown or dedup checks
(it completes a write that already passed them). A caller without a state machine runs
``phase: pulse`` — write, ``services.sleep(pulse_seconds)``, restore — in one call.

Errors: no connection, a dropped link or no reply in time → ``TransientError`` (the state
machine retries); a Modbus exception response (e.g. 02 ILLEGAL DATA ADDRESS) →
``PermanentError`` naming the code and its meaning (ACKNOWLEDGE, SERVER DEVICE BUSY and
GATEWAY TARGET DEVICE FAILED TO RESPOND are transient); a template value that does not
parse → ``PermanentError``.

Fleet PLC: with ``device_id`` instead of ``connection``, the PLC is one of the fleet, behind
a connector at the site (a cloud function cannot reach a site's Modbus network). Each value
(each item of a list) becomes one fleet command to that PLC through
:attr:`aios.events.task.TaskServices.device_commands` — ``write_coil`` with ``{"table":
"coil", "address", "value"}`` or ``write_register`` with ``{"table": "holding_register",
"address", "data_type", "order", "value"}`` (addresses 0-based, from 10000 up as the
six-digit reference, see :meth:`connector.plc.ModbusPoller.execute`) — stored in the PLC's
command history, executed by the connector on its own Modbus link, and waited for up to
``timeout_seconds``. A pulse records its restore values the same way (the registers' values
read before the write with ``read_register``) and restores them with the same commands.
Errors: the connector's refusal or a Modbus exception → ``PermanentError`` with its reason
(retryable exception codes → ``TransientError``); no answer in time or no link to the
devices → ``TransientError``; where there is no fleet (``aios run``) → ``PermanentError``
saying the pipeline needs ``aios up`` or the cloud.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, cast

from pydantic import Field, TypeAdapter, ValidationError, model_validator

from aios.catalog.base import (
    Category,
    EventRole,
    NodeConfig,
    NodeManifest,
    NodeType,
    PortKind,
    PortSpec,
    Tier,
)
from aios.domain import DEVICE_ID_PATTERN
from aios.events.actions import Action, ActionConfig, Template, render
from aios.events.task import (
    CommandAnswer,
    DeviceCommands,
    PermanentError,
    TaskRequest,
    TransientError,
)
from aios.plc.client import ModbusClient, ModbusConnection, ModbusError
from aios.plc.modbus import (
    REGISTER_COUNT,
    AddressError,
    DataType,
    ModbusValueError,
    Order,
    WritableTable,
    check_span,
    encode_many,
    format_reference,
    parse_address,
    parse_coil,
    parse_number,
)

RESTORE_NAMESPACE = "plc/restore"
"""State-store namespace of the values a pulse restores."""

RESTORE_TTL_MARGIN_SECONDS = 3_600.0
"""How long a restore record outlives the pulse (covers retries of the restore phase)."""

Scalar = bool | int | float
_TEMPLATE = TypeAdapter(Template)


def _is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


class PlcValueWrite(NodeConfig):
    """One value (or a block of consecutive values) to write."""

    name: str | None = Field(
        default=None,
        max_length=80,
        title="Name",
        description="What the value is, for results and logs (e.g. 'siren').",
    )
    table: WritableTable = Field(
        default="coil",
        title="Table",
        description="'coil': a single-bit output (FC 05/15); 'holding_register': 16-bit "
        "registers (FC 06/16).",
    )
    address: int | str = Field(
        title="Address",
        description="0-based address as sent on the wire (0..65535), or a Modicon reference "
        "string: coils '00001'–'09999' or '000001'–'065536', holding registers "
        "'40001'–'49999' or '400001'–'465536' ('40001' is address 0).",
    )
    data_type: DataType = Field(
        default="uint16",
        title="Data type",
        description="Holding registers only: int16/uint16 take 1 register, int32/uint32 and "
        "float32 (IEEE 754) take 2.",
    )
    order: Order = Field(
        default="ABCD",
        title="Word/byte order",
        description="Holding registers only: byte sequence of the value A B C D (A most "
        "significant) over its registers. ABCD big-endian (the Modbus default), CDAB word "
        "swap, BADC byte swap, DCBA little-endian. 16-bit values use only the byte swap.",
    )
    value: Scalar | str | list[Scalar] = Field(
        title="Value",
        description="true/false (or 1/0) for a coil; a number for a register; a list writes "
        "consecutive addresses; text is a template of event fields rendered and then parsed, "
        "e.g. '{{ event.data.count }}'.",
    )
    restore_value: Scalar | list[Scalar] | None = Field(
        default=None,
        title="Restore to",
        description="Pulse only: the value written back after the pulse. Empty: the inverse "
        "of the written value for a coil, the value read before writing for a register.",
    )

    @model_validator(mode="after")
    def _check(self) -> PlcValueWrite:
        try:
            address = parse_address(self.address, self.table)
            if isinstance(self.value, str):
                _TEMPLATE.validate_python(self.value)
                if not _is_template(self.value):
                    self.parse_scalar(self.value)
                count = self.item_size
            else:
                count = len(self.encode(self.value))
            check_span(address, count)
            if self.restore_value is not None:
                restore_items = (
                    len(self.restore_value) if isinstance(self.restore_value, list) else 1
                )
                value_items = len(self.value) if isinstance(self.value, list) else 1
                if restore_items != value_items:
                    raise ValueError(
                        f"restore_value has {restore_items} item(s) but value has {value_items}"
                    )
                self.encode(self.restore_value)
        except ValidationError as err:  # the template check
            raise ValueError(err.errors()[0]["msg"]) from err
        except (AddressError, ModbusValueError) as err:
            raise ValueError(str(err)) from err
        if isinstance(self.value, list) and not self.value:
            raise ValueError("value: a list needs at least one item")
        return self

    @property
    def pdu_address(self) -> int:
        """The 0-based address sent on the wire."""
        return parse_address(self.address, self.table)

    @property
    def item_size(self) -> int:
        """Coils or registers one item takes (1 for a coil)."""
        return 1 if self.table == "coil" else REGISTER_COUNT[self.data_type]

    def parse_scalar(self, value: Scalar | str) -> Scalar:
        """Return one item's value as a coil state or a number of the data type.

        Raises:
            ModbusValueError: not a coil state / not a number in range.
        """
        if self.table == "coil":
            return parse_coil(value)
        if isinstance(value, str):
            return parse_number(value, self.data_type)
        return value

    def encode(self, value: Scalar | list[Scalar]) -> list[bool] | list[int]:
        """Return the coil states or register values that ``value`` writes.

        Raises:
            ModbusValueError: a value the table or data type cannot hold.
        """
        items = value if isinstance(value, list) else [value]
        if self.table == "coil":
            return [parse_coil(v) for v in items]
        return encode_many([self.parse_scalar(v) for v in items], self.data_type, self.order)

    def label(self, index: int) -> str:
        """Return how messages name this write: ``"write 1 (siren)"``."""
        return f"write {index + 1}" + (f" ({self.name})" if self.name else "")


class PlcWriteConfig(ActionConfig):
    """Write values to a PLC, optionally as a pulse: a PLC of the fleet, written by its
    connector, or one reached directly over Modbus TCP or RTU."""

    device_id: str | None = Field(
        default=None,
        title="Fleet PLC",
        description="Device id of a PLC of the fleet; its connector at the site writes it "
        "and the writes show in the PLC's command history. Needs `aios up` or the cloud. "
        "Give this or Connection, not both.",
        pattern=DEVICE_ID_PATTERN,
    )
    connection: ModbusConnection | None = Field(
        default=None,
        title="Connection",
        description="How to reach the PLC directly from where the pipeline runs: Modbus TCP "
        "host and port, or RTU serial line, and its unit id. Give this or Fleet PLC, not "
        "both.",
    )
    writes: list[PlcValueWrite] = Field(
        min_length=1,
        max_length=32,
        title="Values",
        description="Values written in this order on every event.",
    )
    pulse_seconds: float | None = Field(
        default=None,
        gt=0,
        le=3_600,
        title="Pulse (s)",
        description="Write, hold this many seconds, then restore (e.g. sound a siren for "
        "10 s). Empty: write and leave the values.",
    )
    timeout_seconds: float = Field(
        default=3.0,
        gt=0,
        le=120,
        title="Timeout (s)",
        description="Longest wait to connect and for each Modbus reply, in seconds; for a "
        "fleet PLC, for the connector's answer to each write.",
    )

    @model_validator(mode="after")
    def _one_target(self) -> PlcWriteConfig:
        if (self.device_id is None) == (self.connection is None):
            given = "both" if self.device_id is not None else "neither"
            raise ValueError(
                f"give exactly one of device_id (a PLC of the fleet, written by its "
                f"connector) or connection (a PLC reached directly); {given} given"
            )
        return self

    def describe_target(self) -> str:
        """How results name the PLC: ``"fleet PLC 'press-7'"`` or the connection's
        description (``"modbus-tcp 10.0.0.5:502 unit 1"``)."""
        if self.device_id is not None:
            return f"fleet PLC {self.device_id!r}"
        assert self.connection is not None
        return self.connection.describe()


MANIFEST = NodeManifest(
    type="aios/plc_write@1",
    category=Category.OUTPUT,
    tier=Tier.EVENT,
    title="PLC write",
    description="Writes coils and holding registers of a PLC on each event — a PLC of the "
    "fleet through its connector, or one reached over Modbus TCP or RTU — e.g. switches a "
    "siren on for a few seconds.",
    icon="circuit-board",
    inputs=(
        PortSpec(
            name="events",
            kind=PortKind.EVENT,
            title="Events",
            description="Each event triggers the writes (subject to the cooldown).",
            multiple=True,
        ),
    ),
)


@dataclass(frozen=True)
class _Resolved:
    """One write with its values resolved for this event."""

    spec: PlcValueWrite
    address: int
    values: list[bool] | list[int]
    shown: Any  # the value as written, for the result


class PlcWriteAction(Action[PlcWriteConfig]):
    """Writes the configured values; with a pulse, restores them after ``pulse_seconds``."""

    channel: ClassVar[str] = "plc"

    @classmethod
    def asl_phases(cls, config: PlcWriteConfig) -> list[dict[str, Any]]:
        """Return the steps the compiler lays out for this node.

        ``[{"phase": "write"}]``, or with a pulse ``[{"phase": "write"},
        {"wait_seconds": N}, {"phase": "restore"}]``; each ``phase`` reaches :meth:`run` as
        ``request.context["phase"]``.
        """
        if config.pulse_seconds is None:
            return [{"phase": "write"}]
        return [
            {"phase": "write"},
            {"wait_seconds": config.pulse_seconds},
            {"phase": "restore"},
        ]

    # --- phases ------------------------------------------------------------------------------

    def run(self, request: TaskRequest) -> dict[str, Any]:
        """Run the phase named by ``request.context["phase"]`` (default ``write``).

        * ``write`` — the action contract around :meth:`send`;
        * ``restore`` — write back what the write phase of this execution recorded;
        * ``pulse`` — ``write``, then (if it was sent) sleep ``pulse_seconds`` and
          ``restore``; the result is the write's, with the restore under
          ``detail.restore``.

        Raises:
            TransientError / PermanentError: see the module docstring.
        """
        phase = str(request.context.get("phase") or "write")
        if phase == "write":
            return super().run(request)
        if phase == "restore":
            return self.restore(request)
        if phase == "pulse":
            result = super().run(request)
            if self.config.pulse_seconds is None or result["status"] != "sent":
                return result
            self.services.sleep(self.config.pulse_seconds)
            restored = self.restore(request)
            result["detail"] = {**result["detail"], "restore": restored["detail"]}
            return result
        raise PermanentError(f"unknown phase '{phase}'; use write, restore or pulse")

    def _restore_key(self, request: TaskRequest) -> str:
        execution = request.context.get("execution") or request.event.get("event_id") or ""
        return f"{request.pipeline}/{request.node_id}/{execution}"

    def _client(self) -> ModbusClient:
        connection = self.config.connection
        assert connection is not None  # the config's validator: device_id or connection
        return ModbusClient(connection, timeout_seconds=self.config.timeout_seconds)

    def _task_error(self, err: ModbusError) -> TransientError | PermanentError:
        if err.retryable:
            return TransientError(str(err))
        return PermanentError(str(err))

    def _resolve(self, request: TaskRequest) -> list[_Resolved]:
        resolved: list[_Resolved] = []
        for index, spec in enumerate(self.config.writes):
            raw = spec.value
            try:
                if isinstance(raw, str):
                    text = render(raw, request)
                    scalar = spec.parse_scalar(text)
                    values = spec.encode(scalar)
                    shown: Any = scalar
                else:
                    values = spec.encode(raw)
                    shown = raw
                check_span(spec.pdu_address, len(values))
            except (ModbusValueError, AddressError) as err:
                source = f" (rendered from {raw!r})" if isinstance(raw, str) else ""
                raise PermanentError(f"{spec.label(index)}: {err}{source}") from err
            resolved.append(_Resolved(spec, spec.pdu_address, values, shown))
        return resolved

    def _write(self, client: ModbusClient, table: str, address: int, values: list[Any]) -> int:
        if table == "coil":
            return client.write_coils(address, [bool(v) for v in values])
        return client.write_registers(address, [int(v) for v in values])

    def _restore_plan(self, client: ModbusClient, writes: list[_Resolved]) -> list[dict[str, Any]]:
        plan: list[dict[str, Any]] = []
        for item in writes:
            spec = item.spec
            if spec.restore_value is not None:
                values: list[Any] = list(spec.encode(spec.restore_value))
            elif spec.table == "coil":
                values = [not v for v in item.values]
            else:
                values = client.read_holding_registers(item.address, len(item.values))
            plan.append(
                {"name": spec.name, "table": spec.table, "address": item.address, "values": values}
            )
        return plan

    def send(self, request: TaskRequest) -> dict[str, Any]:
        """Write every configured value (recording the restore values first for a pulse).

        Returns ``{"phase": "write", "device", "writes": [{"name", "table", "address",
        "reference", "value", "requests"}], "pulse_seconds"}``; for a fleet PLC each write
        also has ``commands`` (the request ids in the PLC's command history) and
        ``read_back`` (the values the connector read back).
        """
        if self.config.device_id is not None:
            return self._fleet_send(request, self.config.device_id)
        writes = self._resolve(request)
        report: list[dict[str, Any]] = []
        try:
            with self._client() as client:
                if self.config.pulse_seconds is not None:
                    plan = self._restore_plan(client, writes)
                    # put_if_absent: a retried write keeps the values read before the first try
                    self.services.state.put_if_absent(
                        RESTORE_NAMESPACE,
                        self._restore_key(request),
                        plan,
                        self.config.pulse_seconds + RESTORE_TTL_MARGIN_SECONDS,
                    )
                for item in writes:
                    requests = self._write(client, item.spec.table, item.address, item.values)
                    report.append(
                        {
                            "name": item.spec.name,
                            "table": item.spec.table,
                            "address": item.address,
                            "reference": format_reference(item.address, item.spec.table),
                            "value": item.shown,
                            "requests": requests,
                        }
                    )
        except ModbusError as err:
            raise self._task_error(err) from err
        return {
            "phase": "write",
            "device": self.config.describe_target(),
            "writes": report,
            "pulse_seconds": self.config.pulse_seconds,
        }

    def restore(self, request: TaskRequest) -> dict[str, Any]:
        """Write back the values the write phase of this execution recorded.

        No cooldown or dedup check: the write this completes already passed them.

        Raises:
            PermanentError: nothing was recorded (the write phase did not run for this
                execution, or its record expired).
            TransientError / PermanentError: the Modbus write failed.
        """
        state = self.services.state
        key = self._restore_key(request)
        plan = state.get(RESTORE_NAMESPACE, key)
        if plan is None:
            raise PermanentError(
                f"nothing to restore for '{key}': the write phase did not run for this "
                "execution or its record expired"
            )
        if self.config.device_id is not None:
            report = self._fleet_restore(request, self.config.device_id, plan)
        else:
            report = []
            try:
                with self._client() as client:
                    for item in plan:
                        table = str(item["table"])
                        address = int(item["address"])
                        values = list(item["values"])
                        requests = self._write(client, table, address, values)
                        report.append(
                            {
                                "name": item.get("name"),
                                "table": table,
                                "address": address,
                                "values": values,
                                "requests": requests,
                            }
                        )
            except ModbusError as err:
                raise self._task_error(err) from err
        state.delete(RESTORE_NAMESPACE, key)
        return self._result(
            request,
            "sent",
            None,
            attempts=1,
            detail={
                "phase": "restore",
                "device": self.config.describe_target(),
                "writes": report,
            },
        )

    # --- fleet PLC: commands through its connector ---------------------------------------

    def _commands(self, device_id: str) -> DeviceCommands:
        commands = self.services.device_commands
        if commands is None:
            raise PermanentError(
                f"fleet PLC {device_id!r} is written by its connector through the fleet, "
                "which this process does not have: run the pipeline with `aios up` (Play in "
                "the console) or in the cloud, or give config.connection to write the PLC "
                "directly from here"
            )
        return commands

    @staticmethod
    def _actor(request: TaskRequest) -> str:
        return f"pipeline {request.pipeline!r}, node {request.node_id!r}"

    def _command(
        self, request: TaskRequest, device_id: str, name: str, params: dict[str, Any]
    ) -> CommandAnswer:
        return self._commands(device_id).send(
            device_id,
            name,
            params,
            self.config.timeout_seconds,
            actor=self._actor(request),
        )

    @staticmethod
    def _target_params(
        table: WritableTable, address: int, data_type: str, order: str
    ) -> dict[str, Any]:
        """The address part of a command's params: 0-based below 10000, the six-digit
        reference from there (the connector reads numbers from 10000 up as references)."""
        wire: int | str = address if address < 10_000 else format_reference(address, table)
        if table == "coil":
            return {"table": "coil", "address": wire}
        return {"table": table, "address": wire, "data_type": data_type, "order": order}

    @staticmethod
    def _items(spec: PlcValueWrite, value: Any) -> list[Scalar]:
        """One value per item (coil state or number of the data type)."""
        items = value if isinstance(value, list) else [value]
        if spec.table == "coil":
            return [parse_coil(v) for v in items]
        return [spec.parse_scalar(v) for v in items]

    def _write_items(
        self,
        request: TaskRequest,
        device_id: str,
        entry: dict[str, Any],
    ) -> tuple[list[str], list[Any]]:
        """Send one write command per item of ``entry`` (``table``, ``address``,
        ``data_type``, ``order``, ``values``); return the request ids and read-backs."""
        table = cast(WritableTable, str(entry["table"]))
        data_type = cast(DataType, str(entry.get("data_type") or "uint16"))
        size = 1 if table == "coil" else REGISTER_COUNT[data_type]
        name = "write_coil" if table == "coil" else "write_register"
        ids: list[str] = []
        read_back: list[Any] = []
        for index, value in enumerate(entry["values"]):
            params = self._target_params(
                table, int(entry["address"]) + index * size, data_type, str(entry["order"])
            )
            params["value"] = value
            answer = self._command(request, device_id, name, params)
            ids.append(answer.request_id)
            read_back.append(answer.response.get("value"))
        return ids, read_back

    def _fleet_restore_plan(
        self, request: TaskRequest, device_id: str, writes: list[_Resolved]
    ) -> list[dict[str, Any]]:
        plan: list[dict[str, Any]] = []
        for item in writes:
            spec = item.spec
            values: list[Any]
            if spec.restore_value is not None:
                values = self._items(spec, spec.restore_value)
            elif spec.table == "coil":
                values = [not v for v in self._items(spec, item.shown)]
            else:
                values = []
                count = len(self._items(spec, item.shown))
                for index in range(count):
                    params = self._target_params(
                        spec.table,
                        item.address + index * spec.item_size,
                        spec.data_type,
                        spec.order,
                    )
                    answer = self._command(request, device_id, "read_register", params)
                    value = answer.response.get("value")
                    if isinstance(value, bool) or not isinstance(value, int | float):
                        raise PermanentError(
                            f"{device_id}: read_register answered without a value to restore "
                            f"({spec.table} address {item.address + index * spec.item_size})"
                        )
                    values.append(value if spec.data_type == "float32" else round(value))
            plan.append(
                {
                    "name": spec.name,
                    "table": spec.table,
                    "address": item.address,
                    "data_type": spec.data_type,
                    "order": spec.order,
                    "values": values,
                }
            )
        return plan

    def _fleet_send(self, request: TaskRequest, device_id: str) -> dict[str, Any]:
        writes = self._resolve(request)
        self._commands(device_id)  # no fleet: refuse before any command
        if self.config.pulse_seconds is not None:
            plan = self._fleet_restore_plan(request, device_id, writes)
            # put_if_absent: a retried write keeps the values read before the first try
            self.services.state.put_if_absent(
                RESTORE_NAMESPACE,
                self._restore_key(request),
                plan,
                self.config.pulse_seconds + RESTORE_TTL_MARGIN_SECONDS,
            )
        report: list[dict[str, Any]] = []
        for item in writes:
            spec = item.spec
            entry = {
                "table": spec.table,
                "address": item.address,
                "data_type": spec.data_type,
                "order": spec.order,
                "values": self._items(spec, item.shown),
            }
            ids, read_back = self._write_items(request, device_id, entry)
            report.append(
                {
                    "name": spec.name,
                    "table": spec.table,
                    "address": item.address,
                    "reference": format_reference(item.address, spec.table),
                    "value": item.shown,
                    "requests": len(ids),
                    "commands": ids,
                    "read_back": read_back,
                }
            )
        return {
            "phase": "write",
            "device": self.config.describe_target(),
            "writes": report,
            "pulse_seconds": self.config.pulse_seconds,
        }

    def _fleet_restore(
        self, request: TaskRequest, device_id: str, plan: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        report: list[dict[str, Any]] = []
        for entry in plan:
            if "data_type" not in entry:
                raise PermanentError(
                    "the restore record was written for a directly connected PLC, not for "
                    f"fleet PLC {device_id!r}; nothing restored"
                )
            ids, _ = self._write_items(request, device_id, entry)
            report.append(
                {
                    "name": entry.get("name"),
                    "table": entry["table"],
                    "address": int(entry["address"]),
                    "values": list(entry["values"]),
                    "requests": len(ids),
                    "commands": ids,
                }
            )
        return report


NODE = NodeType(
    manifest=MANIFEST,
    config_model=PlcWriteConfig,
    implementation=PlcWriteAction,
    event_role=EventRole.ACTION,
)
