"""A connector for the devices beside ``aios up``: started in the same process.

On one machine the cameras, PLCs and sensors near the server are reached through the same
connector daemon a site runs (:mod:`connector.daemon`), configured by the same YAML file;
only its ``platform`` section is replaced by the address of ``aios up``'s broker. The
connector and its devices are registered in the fleet when they are not there yet (the
file is the operator's own, so they need no approval), children with ``parent_id`` the
connector.

The file is watched as ``aios-connector`` watches it: saved changes are applied without
restarting the devices they do not touch, and devices it adds are registered first.

The ``connector`` package is imported only when a local connector is configured
(``AIOS_LOCAL_CONNECTOR`` or ``aios up --connector FILE``).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from aios.domain import Device, DeviceKind
from aios.fleet.service import FleetService
from aios.store.port import Conflict
from aios.up.broker import BrokerAddress

if TYPE_CHECKING:
    from connector.config import ConnectorConfig
    from connector.daemon import Connector

log = logging.getLogger(__name__)

_PASSWORD_VARIABLE = "AIOS_LOCAL_CONNECTOR_BROKER_PASSWORD"

WATCH_SECONDS = 2.0
"""How often the connector's file is checked for changes, s."""


class LocalConnectorError(Exception):
    """The local connector's file is invalid or a secret it references is missing."""


def register_devices(fleet: FleetService, config: ConnectorConfig) -> list[str]:
    """Register the connector and every device of ``config`` that the fleet lacks.

    Returns the ids registered. Existing devices are left as they are (an operator may
    have renamed or moved them).
    """
    connector_id = config.connector.id
    wanted: list[Device] = [
        Device(
            id=connector_id,
            name=config.connector.name or connector_id,
            kind=DeviceKind.CONNECTOR,
        )
    ]
    groups = (
        (DeviceKind.CAMERA, config.cameras),
        (DeviceKind.PLC, config.plcs),
        (DeviceKind.SENSOR, config.sensors),
    )
    for kind, items in groups:
        for item in items:
            wanted.append(
                Device(id=item.id, name=item.name or item.id, kind=kind, parent_id=connector_id)
            )
    registered = []
    for device in wanted:
        if fleet.store.devices.get(device.id) is not None:
            continue
        try:
            fleet.register(device, actor="aios up (local connector)")
        except Conflict:
            continue  # registered meanwhile by its first message
        registered.append(device.id)
    return registered


def start_local_connector(path: Path, fleet: FleetService, broker: BrokerAddress) -> Connector:
    """Load ``path``, register its devices, and start its connector against ``broker``.

    Raises:
        LocalConnectorError: the file is invalid (every problem listed) or a secret it
            references cannot be resolved.
    """
    from connector.config import ConfigError, PlatformConfig, SecretError, load_config
    from connector.daemon import Connector, check_secrets

    try:
        config = load_config(path)
    except ConfigError as err:
        raise LocalConnectorError(f"local connector: {err}") from err
    scheme = "mqtts" if broker.tls else "mqtt"
    password_ref = None
    if broker.password is not None:
        # handed over in this process's environment: a secret is never a config value
        os.environ[_PASSWORD_VARIABLE] = broker.password
        password_ref = f"env:{_PASSWORD_VARIABLE}"
    # the embedded broker (amqtt) speaks MQTT 3.1.1; an external one is assumed to too
    platform = PlatformConfig(
        mqtt_url=f"{scheme}://{broker.host}:{broker.port}",
        mqtt_version="3.1.1",
        username=broker.username,
        password=password_ref,
    )
    if broker.tls:
        raise LocalConnectorError(
            "local connector: the broker uses TLS; run the connector on its own "
            "(aios-connector --config FILE) with its certificates"
        )
    try:  # before anything is registered: a file that cannot run leaves no trace
        check_secrets(config, base=path.resolve().parent)
    except SecretError as err:
        raise LocalConnectorError(f"local connector: {err}") from err
    registered = register_devices(fleet, config)
    if registered:
        log.info("local connector: registered devices", extra={"devices": registered})

    def register_added(new: ConnectorConfig) -> None:
        added = register_devices(fleet, new)
        if added:
            log.info("local connector: registered devices", extra={"devices": added})

    connector = Connector(config, config_path=path, platform=platform, on_reload=register_added)
    try:
        connector.start()
    except SecretError as err:
        connector.stop(flush_timeout=0)
        raise LocalConnectorError(f"local connector: {err}") from err
    # until connector.stop(): applies the file when it changes
    threading.Thread(
        target=connector.run,
        kwargs={"watch_seconds": WATCH_SECONDS},
        name="local-connector-watch",
        daemon=True,
    ).start()
    return connector
