"""The demo site of ``aios up --demo``: a camera, a PLC and sensors beside the server, and
the intrusion pipeline playing on them.

What it sets up, in the data folder of ``aios up`` (every step reuses what a previous
start left, so starting again on the same folder duplicates nothing):

- a simulated Modbus TCP PLC in this process (:func:`aios.plc.simulator.start_simulator`,
  unit 1, on ``127.0.0.1:<demo_plc_port>``, setting ``AIOS_DEMO_PLC_PORT``, default
  :data:`DEFAULT_PLC_PORT`); every change of its first :data:`WATCHED_COILS` coils is
  logged (``demo PLC coil changed``, with ``coil``, ``register`` and ``value``); its
  holding registers named in :data:`PROCESS_SIGNALS` move like a plant's;
- the connector file ``<data_dir>/demo/connector.yaml``, made from
  ``examples/connector/local.yaml``: the demo video ``vtest.avi`` played in real time as the
  camera ``courtyard``, the simulated PLC (coil 0 ``siren``) at the port above, simulated
  sensors; the connector's own data under ``<data_dir>/demo/connector``. ``aios up`` runs it
  as its local connector (:mod:`aios.up.local_connector`), which registers the devices;
- the demo devices placed on the map: site :data:`SITE` and a location around
  :data:`SITE_CENTRE` (set only where a device has none, so an operator's changes stay);
- the alert rules :data:`ALERT_RULES` (each saved once: an operator's change stays);
- the pipeline :data:`PIPELINE_ID`, made from ``examples/pipelines/intrusion.json``: its
  camera is the fleet camera ``courtyard`` (the stream tier runs on the connector), its
  siren pulse writes coil 0 of the simulated PLC; WhatsApp, Telegram and email stay
  unconfigured (they report ``not_configured``). When a later start uses another PLC port,
  a new revision points the siren at it. A deleted demo pipeline is created again;
- Play of that pipeline (:meth:`aios.runs.service.PipelineRuns.execute`) unless it has an
  active run.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aios.domain import AlertRule, AlertRuleKind, Device, GeoPoint, Run
from aios.fleet.service import FleetService
from aios.plc.simulator import ModbusSimulator, start_simulator
from aios.services import Services
from aios.store.port import Conflict

log = logging.getLogger(__name__)

DEFAULT_PLC_PORT = 5020
"""TCP port of the demo PLC unless ``AIOS_DEMO_PLC_PORT`` says otherwise."""

PLC_HOST = "127.0.0.1"
"""The demo PLC listens on loopback only."""

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
"""The repository's examples, which the demo site is made from."""

CONNECTOR_EXAMPLE = EXAMPLES_DIR / "connector" / "local.yaml"
PIPELINE_EXAMPLE = EXAMPLES_DIR / "pipelines" / "intrusion.json"

DEMO_DIRNAME = "demo"
"""Folder of the data folder holding the demo's connector file and connector data."""

PIPELINE_ID = "pl_demo_intrusion"
"""Id of the demo's intrusion pipeline."""

SITE = "Demo site"
"""Site of the demo devices."""

SITE_CENTRE = GeoPoint(lat=38.7139, lon=-9.1334)
"""Where the demo connector stands on the map (WGS 84); its devices stand around it."""

DEVICE_SPREAD_METRES = 60.0
"""Distance of the connector's devices from it on the map, m."""

WATCHED_COILS = 16
"""Coils 0..15 of the demo PLC are watched; their changes are logged."""

COIL_POLL_SECONDS = 0.1
"""How often the watched coils are read, s (a 3 s siren pulse is seen whole)."""

ACTOR = "aios up (demo)"
"""Who the demo's registrations, changes and Play are recorded as."""

VIDEO_ASSET = "vtest.avi"

ALERT_RULES = (
    AlertRule(
        id="rule_demo_vibration",
        device_id="sim-vibration",
        kind=AlertRuleKind.METRIC_ABOVE,
        metric="vibration_rms",
        threshold=3.5,
        severity="warning",
    ),
    AlertRule(
        id="rule_demo_camera_offline",
        device_id="courtyard",
        kind=AlertRuleKind.OFFLINE,
        for_minutes=1,
        severity="critical",
    ),
)
"""The demo's alert rules: the simulated vibration rises above 3.5 mm/s for about half a
minute of each 2-minute cycle (an alert raised and cleared again and again); the camera
offline for a minute."""


class DemoError(Exception):
    """The demo site cannot be set up; the message says what to change."""


# --------------------------------------------------------------------------- the PLC


class CoilWatch:
    """Logs every change of the first ``count`` coils of ``plc`` (a background thread).

    ``names``: coil address → register name, used in the log records.
    """

    def __init__(
        self,
        plc: ModbusSimulator,
        names: dict[int, str],
        *,
        count: int = WATCHED_COILS,
        interval: float = COIL_POLL_SECONDS,
    ) -> None:
        self.plc = plc
        self.names = names
        self.count = count
        self.interval = interval
        self.changes: list[tuple[int, bool]] = []
        """(coil, value) of every change seen, oldest first."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-plc-coils", daemon=True)

    def start(self) -> None:
        """Start watching (the coils' values now are the baseline)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (safe to call twice)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)

    def _run(self) -> None:
        before: list[bool] | None = None
        while not self._stop.wait(0 if before is None else self.interval):
            try:
                now = self.plc.read_coils(0, self.count)
            except Exception:  # the simulator stopped: nothing more to watch
                return
            for address, (old, new) in enumerate(zip(before or now, now, strict=True)):
                if old != new:
                    self.changes.append((address, new))
                    name = self.names.get(address, f"coil {address}")
                    log.info(
                        "demo PLC coil changed: %s %s",
                        name,
                        "ON" if new else "OFF",
                        extra={"coil": address, "register": name, "value": new},
                    )
            before = now


PROCESS_SIGNALS: dict[str, Callable[[float], float]] = {
    "tank_level": lambda t: 55.0 + 30.0 * math.sin(2 * math.pi * t / 300.0),
    "temperature": lambda t: 42.0 + 6.0 * math.sin(2 * math.pi * t / 600.0),
    "batch_count": lambda t: float(int(t // 10)),
}
"""The demo PLC's process values by register name, from the seconds since it started: a
tank filling and emptying every 5 minutes (%), a temperature swinging every 10 minutes
(degC), a batch counted every 10 s. Registers of other names stay as written."""

PROCESS_SECONDS = 1.0
"""How often the process values are written into the demo PLC's registers, s."""


class PlcProcess:
    """Writes :data:`PROCESS_SIGNALS` into the holding registers of ``plc`` that the
    connector's first PLC reads under those names (a background thread), so the PLC's
    telemetry moves like a plant's."""

    def __init__(self, plc: ModbusSimulator, connector: dict[str, Any]) -> None:
        from connector.config import PlcConfig

        self.plc = plc
        plcs = connector.get("plcs") or []
        registers = PlcConfig.model_validate(plcs[0]).registers if plcs else []
        self.registers = [
            r for r in registers if r.table == "holding_register" and r.name in PROCESS_SIGNALS
        ]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-plc-process", daemon=True)

    def start(self) -> None:
        """Start writing (time 0 is now)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop writing (safe to call twice)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)

    def write(self, seconds: float) -> None:
        """Write every process value at ``seconds`` after the start."""
        from aios.plc.modbus import encode

        for register in self.registers:
            data_type = register.data_type
            if data_type == "bool":
                continue
            value = PROCESS_SIGNALS[register.name](seconds)
            raw = (value - register.offset) / register.scale
            if data_type != "float32":
                raw = round(raw)
            self.plc.set_holding_registers(
                register.pdu_address, encode(raw, data_type, register.order)
            )

    def _run(self) -> None:
        started = time.monotonic()
        while True:
            try:
                self.write(time.monotonic() - started)
            except Exception:  # the simulator stopped: nothing more to drive
                return
            if self._stop.wait(PROCESS_SECONDS):
                return


def coil_names(connector: dict[str, Any]) -> dict[int, str]:
    """Coil address → register name, from the first PLC of a connector document."""
    plcs = connector.get("plcs") or []
    registers = plcs[0].get("registers") or [] if plcs else []
    return {
        int(r["address"]): str(r["name"])
        for r in registers
        if r.get("table") == "coil" and "address" in r and "name" in r
    }


# --------------------------------------------------------------------------- the connector


def _read_example(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as err:
        raise DemoError(
            f"the demo is made from {path}, which cannot be read ({err.strerror}); run "
            "aios up --demo from a checkout of the repository"
        ) from err


def connector_document(
    example: dict[str, Any], *, data_dir: Path, plc_port: int, video: Path
) -> dict[str, Any]:
    """The demo connector: ``example`` (``examples/connector/local.yaml`` as loaded) with
    its data under ``<data_dir>/demo/connector``, its cameras playing ``video``, its PLCs at
    ``127.0.0.1:<plc_port>``, and no platform section (``aios up`` gives its own)."""
    document = copy.deepcopy(example)
    document.pop("platform", None)
    document["data_dir"] = str(data_dir / DEMO_DIRNAME / "connector")
    for camera in document.get("cameras") or []:
        camera["url"] = str(video)
    for plc in document.get("plcs") or []:
        plc["host"] = PLC_HOST
        plc["port"] = plc_port
    return document


def write_connector_file(document: dict[str, Any], path: Path) -> Path:
    """Write the demo connector ``document`` as YAML at ``path`` (left untouched when it
    holds the same already, so its watcher sees no change). Returns ``path``.

    Raises:
        DemoError: the file cannot be written.
    """
    text = (
        "# The demo site's connector, written by `aios up --demo` at every start from\n"
        "# examples/connector/local.yaml (changes here are overwritten: edit the example).\n"
        + yaml.safe_dump(document, sort_keys=False)
    )
    try:
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            return path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        raise DemoError(f"cannot write the demo connector file {path}: {err.strerror}") from err
    return path


def device_ids(connector: dict[str, Any]) -> list[str]:
    """The connector's id, then its cameras', PLCs' and sensors' ids, in file order."""
    ids = [str(connector["connector"]["id"])]
    for group in ("cameras", "plcs", "sensors"):
        ids += [str(item["id"]) for item in connector.get(group) or []]
    return ids


def demo_locations(ids: list[str]) -> dict[str, GeoPoint]:
    """The connector (``ids[0]``) at :data:`SITE_CENTRE`, the others evenly on a circle
    of :data:`DEVICE_SPREAD_METRES` around it."""
    if not ids:
        return {}
    locations = {ids[0]: SITE_CENTRE}
    others = ids[1:]
    metres_per_degree = 111_320.0
    for index, device_id in enumerate(others):
        angle = 2 * math.pi * index / len(others)
        dlat = DEVICE_SPREAD_METRES * math.cos(angle) / metres_per_degree
        dlon = (
            DEVICE_SPREAD_METRES
            * math.sin(angle)
            / (metres_per_degree * math.cos(math.radians(SITE_CENTRE.lat)))
        )
        locations[device_id] = GeoPoint(
            lat=round(SITE_CENTRE.lat + dlat, 6), lon=round(SITE_CENTRE.lon + dlon, 6)
        )
    return locations


def place_devices(fleet: FleetService, locations: dict[str, GeoPoint]) -> list[str]:
    """Give each device of ``locations`` the site :data:`SITE` and its location, where it
    has none (what an operator set is kept). Returns the ids changed; devices that are not
    registered are skipped."""
    changed = []
    for device_id, point in locations.items():
        device: Device | None = fleet.store.devices.get(device_id)
        if device is None:
            continue
        changes: dict[str, Any] = {}
        if device.site is None:
            changes["site"] = SITE
        if device.location is None:
            changes["location"] = point.model_dump()
        if not changes:
            continue
        fleet.update(device_id, changes, expected_version=None, actor=ACTOR)
        changed.append(device_id)
    return changed


def ensure_alert_rules(
    fleet: FleetService, rules: tuple[AlertRule, ...] = ALERT_RULES
) -> list[str]:
    """Save each of ``rules`` whose id is not stored yet and whose device is registered
    (an operator's change to a demo rule stays). Returns the ids saved."""
    saved = []
    for rule in rules:
        if fleet.store.alerts.get_rule(rule.id) is not None:
            continue
        if fleet.store.devices.get(rule.device_id) is None:
            continue
        fleet.put_rule(rule, actor=ACTOR)
        saved.append(rule.id)
    return saved


# --------------------------------------------------------------------------- the pipeline


def pipeline_document(example: dict[str, Any], *, camera_id: str, plc_port: int) -> dict[str, Any]:
    """The demo pipeline: ``example`` (``examples/pipelines/intrusion.json`` as loaded)
    with its video inputs replaced by the fleet camera ``camera_id`` and its PLC writes
    aimed at the demo PLC."""
    from aios.runs.edge import FLEET_CAMERA_TYPE

    document = copy.deepcopy(example)
    for node in document.get("nodes") or []:
        node_type = str(node.get("type", ""))
        if node_type in ("aios/file.input@1", "aios/camera.rtsp@1", "aios/camera.webcam@1"):
            node["type"] = FLEET_CAMERA_TYPE
            node["config"] = {"device_id": camera_id}
        elif node_type.startswith("aios/plc_write@"):
            _aim_at_demo_plc(node, plc_port)
    metadata = document.setdefault("metadata", {})
    if isinstance(metadata, dict):
        metadata["camera"] = camera_id
    return document


def _aim_at_demo_plc(node: dict[str, Any], plc_port: int) -> bool:
    """Point a PLC write node at the demo PLC; return whether it changed."""
    connection = node.setdefault("config", {}).setdefault("connection", {})
    wanted = {"transport": "tcp", "host": PLC_HOST, "port": plc_port}
    if all(connection.get(k) == v for k, v in wanted.items()):
        return False
    connection.update(wanted)
    return True


def retarget_plc(document: dict[str, Any], plc_port: int) -> dict[str, Any] | None:
    """``document`` with its PLC writes on loopback moved to ``plc_port`` (a demo PLC of
    an earlier start on another port), or ``None`` when none needs it. Writes to other
    hosts are an operator's choice and stay."""
    changed = copy.deepcopy(document)
    moved = False
    for node in changed.get("nodes") or []:
        if not str(node.get("type", "")).startswith("aios/plc_write@"):
            continue
        connection = (node.get("config") or {}).get("connection") or {}
        if connection.get("transport", "tcp") == "tcp" and connection.get("host") == PLC_HOST:
            moved = _aim_at_demo_plc(node, plc_port) or moved
    return changed if moved else None


def ensure_pipeline(services: Services, document: dict[str, Any], plc_port: int) -> str:
    """Store the demo pipeline as :data:`PIPELINE_ID` unless it exists; when it exists
    with its siren on another loopback port, save a revision on ``plc_port``. Returns
    the pipeline id."""
    from aios.domain import PipelineRecord
    from aios.pipeline.document import PipelineDocument

    store = services.store.pipelines
    record = store.get(PIPELINE_ID)
    if record is None:
        parsed = PipelineDocument.model_validate(document)
        now = services.clock()
        new = PipelineRecord(
            id=PIPELINE_ID,
            name=parsed.name,
            description=parsed.description,
            created_by=ACTOR,
            created_at=now,
            updated_at=now,
        )
        try:
            store.create(new, parsed.model_dump(mode="json", by_alias=True))
            log.info("demo pipeline created", extra={"pipeline_id": PIPELINE_ID})
        except Conflict:
            pass  # created meanwhile
        return PIPELINE_ID
    latest = store.get_revision(PIPELINE_ID, record.latest_revision)
    moved = retarget_plc(latest.document, plc_port) if latest is not None else None
    if moved is not None:
        try:
            store.add_revision(
                PIPELINE_ID,
                moved,
                expected_revision=record.latest_revision,
                created_by=ACTOR,
                at=services.clock(),
            )
            log.info(
                "demo pipeline: siren moved to the demo PLC's port",
                extra={"pipeline_id": PIPELINE_ID, "port": plc_port},
            )
        except Conflict:
            log.warning("demo pipeline changed meanwhile: its PLC port is left as it is")
    return PIPELINE_ID


def play(services: Services, pipeline_id: str) -> Run | None:
    """Play the pipeline unless it has an active run; return the run started (``None``
    when it was active already or could not start: the reason is logged, the service
    keeps running so the console can show and fix it)."""
    from aios.runs.service import PipelineRuns

    runs = PipelineRuns(services)
    if runs.active(pipeline_id) is not None:
        return None
    try:
        run = runs.execute(pipeline_id, actor=ACTOR)
    except Exception as err:
        log.error("the demo pipeline could not start: %s", err, extra={"pipeline_id": pipeline_id})
        return None
    log.info("demo pipeline playing", extra={"pipeline_id": pipeline_id, "run_id": run.id})
    return run


# --------------------------------------------------------------------------- the site


@dataclass
class DemoSite:
    """The running demo PLC and what the rest of the start needs."""

    plc: ModbusSimulator
    watch: CoilWatch
    process: PlcProcess
    connector_file: Path
    connector: dict[str, Any]
    pipeline: dict[str, Any]
    plc_port: int
    pipeline_id: str = PIPELINE_ID
    camera_id: str = ""
    locations: dict[str, GeoPoint] = field(default_factory=dict)

    def stop(self) -> None:
        """Stop the coil watch, the process values and the PLC."""
        self.watch.stop()
        self.process.stop()
        self.plc.stop()

    def finish(self, services: Services, fleet: FleetService) -> bool:
        """Once the local connector runs (its devices registered): place the devices,
        store the pipeline and Play it. Returns whether the pipeline has an active run
        (``False``: it could not start; the reason is logged)."""
        from aios.runs.service import PipelineRuns

        placed = place_devices(fleet, self.locations)
        if placed:
            log.info("demo devices placed on the map", extra={"devices": placed})
        rules = ensure_alert_rules(fleet)
        if rules:
            log.info("demo alert rules saved", extra={"rules": rules})
        ensure_pipeline(services, self.pipeline, self.plc_port)
        play(services, self.pipeline_id)
        return PipelineRuns(services).active(self.pipeline_id) is not None


def start_demo_site(data_dir: Path, plc_port: int) -> DemoSite:
    """Start the demo PLC on ``plc_port`` and write the demo connector file.

    Raises:
        DemoError: the port is taken, the demo video cannot be had, or the examples
            cannot be read.
    """
    from aios import assets

    connector_example = yaml.safe_load(_read_example(CONNECTOR_EXAMPLE))
    pipeline_example = json.loads(_read_example(PIPELINE_EXAMPLE))
    try:
        video = assets.path(VIDEO_ASSET)
    except Exception as err:
        raise DemoError(
            f"the demo video {VIDEO_ASSET} is missing and could not be fetched ({err}); "
            "run `aios assets fetch` (or scripts/setup.sh)"
        ) from err
    data_dir = data_dir.resolve()
    connector = connector_document(
        connector_example, data_dir=data_dir, plc_port=plc_port, video=video
    )
    cameras = connector.get("cameras") or []
    if not cameras:
        raise DemoError(f"{CONNECTOR_EXAMPLE} has no camera for the demo pipeline")
    camera_id = str(cameras[0]["id"])
    pipeline = pipeline_document(pipeline_example, camera_id=camera_id, plc_port=plc_port)
    path = write_connector_file(connector, data_dir / DEMO_DIRNAME / "connector.yaml")
    try:
        plc = start_simulator(host=PLC_HOST, port=plc_port)
    except (RuntimeError, TimeoutError) as err:
        raise DemoError(
            f"the demo PLC cannot listen on {PLC_HOST}:{plc_port} ({err}); stop what uses "
            "the port or choose another with AIOS_DEMO_PLC_PORT"
        ) from err
    try:
        watch = CoilWatch(plc, coil_names(connector))
        process = PlcProcess(plc, connector)
    except Exception:
        plc.stop()
        raise
    watch.start()
    process.start()
    log.info("demo PLC listening", extra={"host": PLC_HOST, "port": plc.port})
    return DemoSite(
        plc=plc,
        watch=watch,
        process=process,
        connector_file=path,
        connector=connector,
        pipeline=pipeline,
        plc_port=plc_port,
        camera_id=camera_id,
        locations=demo_locations(device_ids(connector)),
    )
