"""Asking a fleet camera something through its connector, while an API request waits: the
snapshot (``GET /devices/{id}/snapshot``) and the live view (``POST /devices/{id}/live``)."""

from __future__ import annotations

import time

from aios.api.errors import ConflictApi, ServiceUnavailable
from aios.api.routes._common import require
from aios.domain import Command, CommandStatus, Device, DeviceKind, DeviceStatus
from aios.fleet.service import FleetService
from aios.store.port import Store

POLL_SECONDS = 0.05
"""How often the API looks for the connector's answer while it waits."""


def camera_and_connector(
    store: Store, fleet: FleetService, device_id: str, what: str
) -> tuple[Device, Device]:
    """The camera ``device_id`` and the connector it is configured on, for ``what`` (e.g.
    "a live view", "snapshots") — which only that connector can give.

    Raises:
        NotFoundApi: no such device.
        ConflictApi: not a camera (``not_a_camera``); no connector, or one that does not
            exist (``no_connector``).
        ServiceUnavailable: its connector is offline (``device_unreachable``).
    """
    device = require(store.devices.get(device_id), f"device '{device_id}'")
    if device.kind is not DeviceKind.CAMERA:
        raise ConflictApi(
            f"device '{device_id}' is a {device.kind.value}, not a camera: only cameras have "
            f"{what}",
            code="not_a_camera",
        )
    if device.parent_id is None:
        raise ConflictApi(
            f"camera '{device_id}' is not behind a connector: only the connector a camera is "
            f"configured on can give {what}",
            code="no_connector",
        )
    connector = store.devices.get(device.parent_id)
    if connector is None:
        raise ConflictApi(
            f"camera '{device_id}' names connector '{device.parent_id}', which does not exist",
            code="no_connector",
        )
    if fleet.view(connector).status is DeviceStatus.OFFLINE:
        raise ServiceUnavailable(
            f"connector '{connector.id}' of camera '{device_id}' is offline: it must be "
            f"connected for {what} (see its last heartbeat on the device page)",
            code="device_unreachable",
        )
    return device, connector


def await_answer(store: Store, request_id: str, seconds: float) -> Command | None:
    """The command once answered (or timed out), or ``None`` if still pending after
    ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        command = store.commands.get(request_id)
        if command is not None and command.status is not CommandStatus.PENDING:
            return command
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_SECONDS)
