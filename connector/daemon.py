"""The connector daemon: one process bridging a site's devices to the platform.

:class:`Connector` owns, for one configuration file:

* the store-and-forward queue and the platform link (:mod:`connector.queue`,
  :mod:`connector.link`) — everything for the platform is queued durably first;
* a capture worker per enabled camera (:mod:`connector.cameras`) and the stream plans the
  platform pushes on ``cfg/aios/{connector_id}/desired`` (:mod:`connector.streams`);
* a poller per PLC and sensor (:mod:`connector.plc`, :mod:`connector.sensors`), whose
  readings become telemetry and whose commands arrive on ``cmd/aios/{connector_id}/req``;
* heartbeats every ``heartbeat_seconds``: the connector's own (CPU, memory, disk, queue
  depth, link state, version) and one per child device (camera fps and last frame age,
  PLC poll success rate).

A new configuration (:meth:`Connector.apply_config`, on ``SIGHUP`` or when the file
changes) restarts only the devices whose settings changed; a change of the platform
section reconnects the link. An invalid new file is reported and the running
configuration kept.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from aios.domain import DeviceKind
from aios.messages import (
    CONFIG_REPORTED,
    MAX_EVENTS_PER_MESSAGE,
    MAX_TELEMETRY_SAMPLES,
    CommandRequest,
    CommandResponse,
    ConfigReport,
    DesiredConfig,
    DeviceEventItem,
    DeviceEventsMessage,
    HealthMetrics,
    Heartbeat,
    Message,
    Telemetry,
    TelemetrySample,
    TopicKind,
)
from connector import __version__
from connector.cameras import CameraWorker
from connector.config import (
    CameraConfig,
    ConfigError,
    ConnectorConfig,
    ModbusSensorConfig,
    PlatformConfig,
    PlcConfig,
    SecretError,
    SimulatedSensorConfig,
    load_config,
    resolve_secret,
)
from connector.health import system_health
from connector.kvs import KvsUploads
from connector.link import PlatformLink
from connector.live import LIVE_COMMANDS, LiveManager, PlanFrames
from connector.media import MediaUploader
from connector.plc import ModbusPoller
from connector.queue import OutboundQueue, QueueFull
from connector.sensors import SimulatedSensor
from connector.streams import StreamPlanManager, parse_plans

log = logging.getLogger(__name__)

FIRMWARE = f"aios-connector {__version__}"
"""What the connector reports as its firmware version."""

STREAM_PLANS_KEY = "stream_plans"
"""Key of the desired configuration holding the stream plans (see :mod:`connector.streams`)."""

CONNECTOR_COMMANDS = ("ping", "status")
"""Commands the connector answers itself (``device_id`` = the connector)."""

SNAPSHOT_COMMAND = "snapshot"
"""Command to one of the connector's cameras (``device_id`` = the camera): its newest
frame as a bounded JPEG (see :meth:`Connector._snapshot`)."""

SNAPSHOT_WAIT_SECONDS = 3.0
"""How long a snapshot waits for a camera's first frame by default."""

PLAN_SETTLE_SECONDS = 5.0
"""Longest wait, after applying a desired configuration, for the plans it started or
updated to reach ``running`` (or ``failed``) before the ``config.reported`` event is sent,
so that the report says what runs rather than "starting" (a plan whose camera is down is
reported as waiting for it after this wait)."""


class Poller(Protocol):
    """What the daemon needs of a PLC or sensor worker."""

    def start(self) -> None: ...
    def stop(self, timeout: float = 5.0) -> None: ...
    def health(self) -> dict[str, float | int]: ...


def _now() -> datetime:
    return datetime.now(UTC)


def _message_id() -> str:
    return uuid.uuid4().hex


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def check_secrets(config: ConnectorConfig, *, base: Path) -> None:
    """Resolve every secret the enabled devices and the link need (relative ``file:``
    references from ``base``).

    Raises:
        SecretError: one cannot be resolved; the message names the field, e.g.
            ``cameras[0].password (camera gate): environment variable ... is not set``.
    """
    refs = [
        (f"cameras[{i}].password (camera {c.id})", c.password)
        for i, c in enumerate(config.cameras)
        if c.enabled and c.password is not None
    ]
    if config.platform.password:
        refs.append(("platform.password", config.platform.password))
    for where, ref in refs:
        try:
            resolve_secret(ref, base=base)
        except SecretError as err:
            raise SecretError(f"{where}: {err}") from err


@dataclass
class ApplyReport:
    """What :meth:`Connector.apply_config` did, by device id."""

    started: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    link_restarted: bool = False


def register_map_report(device: PlcConfig | ModbusSensorConfig) -> DeviceEventItem:
    """The ``config.reported`` event of a Modbus device: its register map as this file has
    it (``{"unit_id", "poll_interval_seconds", "registers": [{"name", "table", "address"
    (0-based), "data_type", "order", "scale", "offset", "unit", "writable",
    "poll_interval_seconds"}]}``; no host, port or secret), so the console offers commands
    by register name. Version 0: it acknowledges no desired configuration."""
    registers = [
        {
            "name": r.name,
            "table": r.table,
            "address": r.pdu_address,
            "data_type": r.data_type,
            "order": r.order,
            "scale": r.scale,
            "offset": r.offset,
            "unit": r.unit,
            "writable": r.writable,
            "poll_interval_seconds": r.poll_interval_seconds,
        }
        for r in device.registers
    ]
    report = ConfigReport(
        version=0,
        config={
            "unit_id": device.unit_id,
            "poll_interval_seconds": device.poll_interval_seconds,
            "registers": registers,
        },
    )
    return DeviceEventItem(
        type=CONFIG_REPORTED,
        message=f"register map: {len(registers)} value(s)",
        data=report.model_dump(mode="json", exclude_none=True),
    )


class Connector:
    """The daemon for one configuration.

    Args:
        config: a validated configuration (:func:`connector.config.load_config`).
        config_path: the file it came from; :meth:`reload` reads it again. Relative secret
            file references are resolved from its folder.

        platform: replaces the file's ``platform`` section (now and on every reload):
            ``aios up`` runs a connector for local devices against its own broker.
        on_reload: called with a valid new configuration read by :meth:`reload`, before it
            is applied (``aios up`` registers the devices it adds); an exception it raises
            keeps the running configuration.

    Use :meth:`start`, then :meth:`stop` (or :meth:`run` until a signal).
    """

    def __init__(
        self,
        config: ConnectorConfig,
        *,
        config_path: Path | None = None,
        platform: PlatformConfig | None = None,
        on_reload: Callable[[ConnectorConfig], None] | None = None,
    ) -> None:
        self._platform = platform
        self._on_reload = on_reload
        config = self._effective(config)
        self.config = config
        self.config_path = config_path
        self.base = config_path.resolve().parent if config_path is not None else Path.cwd()
        self.id = config.connector.id
        self.started_at = time.monotonic()
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._commands = ThreadPoolExecutor(max_workers=4, thread_name_prefix="command")
        # desired configurations are applied one at a time, off the link's dispatch thread
        # (which must keep delivering commands while plans start)
        self._configs = ThreadPoolExecutor(max_workers=1, thread_name_prefix="desired")
        self.refused_messages = 0
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.queue = OutboundQueue(
            config.data_dir / "outbox.sqlite3", max_bytes=config.queue.max_bytes
        )
        self.link = self._make_link(config)
        self.cameras: dict[str, CameraWorker] = {}
        self.pollers: dict[str, Poller] = {}
        self.plcs: dict[str, ModbusPoller] = {}
        self.uploader = MediaUploader(config.data_dir / "media")
        self.kvs = KvsUploads()  # Kinesis Video uploads of the kvs_upload cameras
        self.plans = StreamPlanManager(
            self.cameras.get,
            self._emit_events,
            media_dir=config.data_dir / "media",
            uploader=self.uploader,
        )
        self.live = LiveManager(
            config.live,
            self.cameras.get,
            self.plans if isinstance(self.plans, PlanFrames) else None,
        )
        self._desired: DesiredConfig | None = None
        self._last_report: tuple[int, str] | None = None

    def _effective(self, config: ConnectorConfig) -> ConnectorConfig:
        if self._platform is None:
            return config
        return config.model_copy(update={"platform": self._platform})

    # ------------------------------------------------------------------ lifecycle

    def _make_link(self, config: ConnectorConfig) -> PlatformLink:
        return PlatformLink(
            config.platform,
            self.id,
            self.queue,
            inflight=config.queue.inflight,
            on_desired=self._on_desired,
            on_command=self._on_command,
            secrets_base=self.base,
        )

    def start(self) -> None:
        """Start the link, every enabled device and the heartbeat loop (non-blocking).

        Raises:
            SecretError: a secret reference of the configuration cannot be resolved.
        """
        self._check_secrets(self.config)
        self.uploader.start()
        self.link.start()
        # before any telemetry: a platform that registers unknown devices as pending
        # learns each one's kind from its first message
        self._announce(self.config, None)
        for camera in self.config.cameras:
            if camera.enabled:
                self._start_camera(camera)
        for device in [*self.config.plcs, *self.config.sensors]:
            if device.enabled:
                self._start_poller(device)
        self.kvs.sync(self.config, self.cameras)
        self._spawn(self._heartbeat_loop, "heartbeat")
        log.info(
            "connector %s started: %d camera(s), %d PLC(s), %d sensor(s)",
            self.id,
            len(self.cameras),
            len(self.plcs),
            len(self.pollers) - len(self.plcs),
        )

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, flush_timeout: float = 10.0) -> None:
        """Answer the commands already received, queue every device's last heartbeat, stop
        the stream plans and devices (no new messages), then flush the queue and disconnect.

        Queued messages are delivered for up to ``flush_timeout`` seconds (a link that is
        reconnecting is waited for within that bound); what could not be delivered stays
        in the queue and is sent first at the next start.
        """
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._configs.shutdown(wait=True, cancel_futures=True)
        # commands already received run (and are answered) while their devices still do
        self._commands.shutdown(wait=True, cancel_futures=False)
        self._send_heartbeats()  # every device's last health, flushed with the rest
        self.live.close_all()
        self.kvs.stop_all()
        self.plans.stop_all()
        with self._lock:
            for worker in list(self.pollers.values()):
                worker.stop()
            for camera in list(self.cameras.values()):
                camera.stop()
            self.pollers.clear()
            self.plcs.clear()
            self.cameras.clear()
        self.uploader.stop()
        for thread in self._threads:
            thread.join(timeout=5.0)
        deadline = time.monotonic() + flush_timeout
        if flush_timeout > 0 and self.queue.depth() > 0:
            # a link between two connection attempts (the broker just came back) still
            # delivers: wait for it within the same bound
            self.link.wait_connected(flush_timeout)
        self.link.stop(flush_timeout=max(0.0, deadline - time.monotonic()))
        self.queue.close()
        log.info("connector %s stopped", self.id)

    def run(self, *, watch_seconds: float | None = 2.0) -> None:
        """Run until :meth:`stop` is called (from a signal handler); reload the file when
        it changes (checked every ``watch_seconds``; ``None``: only on :meth:`reload`)."""
        last = self._fingerprint()
        while not self._stopping.wait(watch_seconds or 3600.0):
            if watch_seconds is None:
                continue
            current = self._fingerprint()
            if current != last:
                last = current
                try:
                    self.reload()
                except Exception:  # keep watching: the next save may fix it
                    log.exception("applying the changed configuration failed")

    def _fingerprint(self) -> tuple[int, int] | None:
        if self.config_path is None:
            return None
        try:
            st = self.config_path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    # ------------------------------------------------------------------ configuration

    def _check_secrets(self, config: ConnectorConfig) -> None:
        check_secrets(config, base=self.base)

    def _password(self, camera: CameraConfig) -> str | None:
        return None if camera.password is None else resolve_secret(camera.password, base=self.base)

    def _start_camera(self, camera: CameraConfig) -> None:
        worker = CameraWorker(camera, self._password(camera))
        worker.start()
        self.cameras[camera.id] = worker

    def _start_poller(self, device: PlcConfig | ModbusSensorConfig | SimulatedSensorConfig) -> None:
        worker: Poller
        if isinstance(device, SimulatedSensorConfig):
            worker = SimulatedSensor(device, self._emit_telemetry, self._emit_event)
        else:
            poller = ModbusPoller(device, self._emit_telemetry, self._emit_event)
            if isinstance(device, PlcConfig):
                self.plcs[device.id] = poller
            worker = poller
        worker.start()
        self.pollers[device.id] = worker
        if not isinstance(device, SimulatedSensorConfig):
            self._emit_event(device.id, register_map_report(device))

    def reload(self) -> ApplyReport | None:
        """Read the configuration file again and apply it; keep the running one if the
        file is invalid (the problems are logged). Returns what changed, or ``None``."""
        if self.config_path is None:
            return None
        try:
            config = load_config(self.config_path)
            self._check_secrets(config)
            if self._on_reload is not None:
                self._on_reload(config)
            report = self.apply_config(config)
        except (ConfigError, SecretError, ValueError) as err:
            # invalid, a secret or TLS file missing, or the connector id changed
            log.error("configuration not applied, the running one is kept: %s", err)
            return None
        log.info(
            "configuration applied: started %s, restarted %s, stopped %s, link %s",
            report.started or "-",
            report.restarted or "-",
            report.stopped or "-",
            "reconnected" if report.link_restarted else "unchanged",
        )
        return report

    def apply_config(self, config: ConnectorConfig) -> ApplyReport:
        """Move to ``config``, restarting only what changed.

        The connector id and data directory cannot change while running (they name the
        queue and the topics): a new value is refused.

        Raises:
            ConfigError: the connector id or data_dir differs.
            ValueError, SecretError: the new platform section's TLS files or password
                cannot be read (nothing was changed).
        """
        changed = [
            f"{name} ({old!s} → {new!s})"
            for name, old, new in (
                ("connector.id", self.id, config.connector.id),
                ("data_dir", self.config.data_dir, config.data_dir),
            )
            if old != new
        ]
        if changed:
            raise ConfigError(
                f"{' and '.join(changed)} cannot change while the connector runs; "
                "restart it to use the new value, or change it back"
            )
        config = self._effective(config)
        report = ApplyReport()
        with self._lock:
            old = self.config
            self.queue.max_bytes = config.queue.max_bytes  # checked on every send
            if config.platform != old.platform or config.queue.inflight != old.queue.inflight:
                link = self._make_link(config)  # raises before anything is changed
                self.link.stop(flush_timeout=2.0)
                self.link = link
                self.link.start()
                report.link_restarted = True
            old_cams = {c.id: c for c in old.cameras if c.enabled}
            new_cams = {c.id: c for c in config.cameras if c.enabled}
            changed_cams: list[str] = []
            for cid, cam in old_cams.items():
                if cid not in new_cams:
                    self.cameras.pop(cid).stop()
                    report.stopped.append(cid)
                elif new_cams[cid] != cam:
                    self.cameras.pop(cid).stop()
                    self._start_camera(new_cams[cid])
                    report.restarted.append(cid)
                    changed_cams.append(cid)
                else:
                    report.unchanged.append(cid)
            self._announce(config, old)
            for cid, cam in new_cams.items():
                if cid not in old_cams:
                    self._start_camera(cam)
                    report.started.append(cid)
                    changed_cams.append(cid)
            old_dev = {d.id: d for d in [*old.plcs, *old.sensors] if d.enabled}
            new_dev = {d.id: d for d in [*config.plcs, *config.sensors] if d.enabled}
            for did, dev in old_dev.items():
                if did not in new_dev:
                    self.pollers.pop(did).stop()
                    self.plcs.pop(did, None)
                    report.stopped.append(did)
                elif new_dev[did] != dev:
                    self.pollers.pop(did).stop()
                    self.plcs.pop(did, None)
                    self._start_poller(new_dev[did])
                    report.restarted.append(did)
                else:
                    report.unchanged.append(did)
            for did, dev in new_dev.items():
                if did not in old_dev:
                    self._start_poller(dev)
                    report.started.append(did)
            self.config = config
            self.live.configure(config.live)
            if changed_cams and self._desired is not None:
                # plans bound to a camera that was replaced follow it to the new worker
                self._submit_desired(self._desired, restart_cameras=changed_cams)
            cameras = dict(self.cameras)
        self.kvs.sync(config, cameras)  # uploads follow their camera's worker
        return report

    # ------------------------------------------------------------------ to the platform

    def _send(self, kind: TopicKind, message: Message) -> None:
        try:
            self.link.send(kind, message)
        except QueueFull:
            self.refused_messages += 1
            if self.refused_messages in (1, 10, 100) or self.refused_messages % 1000 == 0:
                log.error(
                    "the outbound queue is full (%d message(s) refused so far): the platform "
                    "has been unreachable long enough to fill queue.max_bytes; raise it or "
                    "restore the link",
                    self.refused_messages,
                )

    def _emit_telemetry(self, device_id: str, samples: list[TelemetrySample]) -> None:
        for chunk in _chunks(samples, MAX_TELEMETRY_SAMPLES):
            self._send(
                TopicKind.TELEMETRY,
                Telemetry(
                    message_id=_message_id(), time=_now(), device_id=device_id, samples=chunk
                ),
            )

    def _emit_events(self, device_id: str, events: list[DeviceEventItem]) -> None:
        for chunk in _chunks(events, MAX_EVENTS_PER_MESSAGE):
            self._send(
                TopicKind.EVENTS,
                DeviceEventsMessage(
                    message_id=_message_id(),
                    time=_now(),
                    device_id=None if device_id == self.id else device_id,
                    events=chunk,
                ),
            )

    def _emit_event(self, device_id: str, event: DeviceEventItem) -> None:
        self._emit_events(device_id, [event])

    def _heartbeat_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._send_heartbeats()
            except Exception:
                log.exception("heartbeat failed")
            self._stopping.wait(self.config.heartbeat_seconds)

    def connector_health(self) -> dict[str, float | int]:
        """The connector's own health metrics (numbers, for :class:`HealthMetrics`)."""
        health: dict[str, float | int] = dict(system_health(self.config.data_dir))
        stats = self.link.stats()
        health["queue_depth"] = stats.queue_depth
        health["queue_bytes"] = stats.queue_bytes
        health["link_connected"] = int(stats.connected)
        health["link_reconnects"] = stats.reconnects
        health["messages_rejected"] = stats.rejected
        health["messages_refused_queue_full"] = self.refused_messages
        health["cameras"] = len(self.cameras)
        health["stream_plans"] = len(self.plans.status())
        return health

    def camera_health(self, worker: CameraWorker) -> dict[str, float | int]:
        """A camera's health metrics: fps, frames, dropped frames, last frame age (s),
        streaming (1/0)."""
        h = worker.health()
        out: dict[str, float | int] = {
            "fps": round(h.fps, 2),
            "frames": h.frames,
            "dropped_frames": h.dropped,
            "streaming": int(h.state == "streaming"),
        }
        if h.last_frame_time is not None:
            out["last_frame_age_seconds"] = round(
                max(0.0, (_now() - h.last_frame_time).total_seconds()), 3
            )
        return out

    def _announce(self, config: ConnectorConfig, old: ConnectorConfig | None) -> None:
        """Queue a first heartbeat (its kind, no health yet) for every enabled device of
        ``config`` that ``old`` lacks, before the device sends anything else."""
        known = (
            set()
            if old is None
            else {d.id for d in [*old.cameras, *old.plcs, *old.sensors] if d.enabled}
        )
        groups: tuple[tuple[DeviceKind, list[Any]], ...] = (
            (DeviceKind.CAMERA, list(config.cameras)),
            (DeviceKind.PLC, list(config.plcs)),
            (DeviceKind.SENSOR, list(config.sensors)),
        )
        now = _now()
        for kind, devices in groups:
            for device in devices:
                if device.enabled and device.id not in known:
                    self._send(
                        TopicKind.HEARTBEAT,
                        Heartbeat(
                            message_id=_message_id(), time=now, device_id=device.id, kind=kind
                        ),
                    )

    def _send_heartbeats(self) -> None:
        now = _now()
        version = self._desired.version if self._desired is not None else None
        self._send(
            TopicKind.HEARTBEAT,
            Heartbeat(
                message_id=_message_id(),
                time=now,
                health=HealthMetrics.model_validate(self.connector_health()),
                firmware_version=FIRMWARE,
                config_version=version,
                kind=DeviceKind.CONNECTOR,
            ),
        )
        with self._lock:
            children: list[tuple[str, DeviceKind, dict[str, float | int]]] = [
                (cid, DeviceKind.CAMERA, self.camera_health(w)) for cid, w in self.cameras.items()
            ]
            for did, poller in self.pollers.items():
                kind = DeviceKind.PLC if did in self.plcs else DeviceKind.SENSOR
                children.append((did, kind, poller.health()))
        for device_id, kind, health in children:
            self._send(
                TopicKind.HEARTBEAT,
                Heartbeat(
                    message_id=_message_id(),
                    time=now,
                    device_id=device_id,
                    health=HealthMetrics.model_validate(health),
                    kind=kind,
                ),
            )

    # ------------------------------------------------------------------ from the platform

    def _on_desired(self, desired: DesiredConfig) -> None:
        if desired.device_id != self.id:
            log.warning(
                "ignored a desired configuration for %s (not this connector)", desired.device_id
            )
            return
        self._submit_desired(desired)

    def _submit_desired(
        self, desired: DesiredConfig, *, restart_cameras: list[str] | None = None
    ) -> None:
        if self._stopping.is_set():
            return
        try:
            self._configs.submit(self._apply_desired_logged, desired, restart_cameras)
        except RuntimeError:  # stopping meanwhile
            return

    def _apply_desired_logged(
        self, desired: DesiredConfig, restart_cameras: list[str] | None
    ) -> None:
        try:
            self._apply_desired(desired, restart_cameras=restart_cameras)
        except Exception:
            log.exception("desired configuration v%d could not be applied", desired.version)

    def _apply_desired(
        self, desired: DesiredConfig, *, restart_cameras: list[str] | None = None
    ) -> None:
        plans, errors = parse_plans(desired.config)
        if restart_cameras:
            # stop the plans of replaced cameras so apply() starts them on the new worker
            self.plans.apply([p for p in plans if p.camera_id not in restart_cameras])
        report = self.plans.apply(plans)
        errors += [f"stream plan {pid}: {why}" for pid, why in report.failed.items()]
        self._settle_plans({*report.started, *report.updated})
        self._desired = desired
        running = [
            {
                "plan_id": s.plan_id,
                "version": s.version,
                "camera_id": s.camera_id,
                "state": s.state,
                **({"error": s.error} if s.error else {}),
            }
            for s in self.plans.status()
        ]
        report_data = ConfigReport(
            version=desired.version,
            config={STREAM_PLANS_KEY: running},
            accepted=not errors,
            error="; ".join(errors)[:2000] if errors else None,
        )
        fingerprint = (desired.version, report_data.model_dump_json())
        if fingerprint == self._last_report:
            # the retained configuration again (every reconnection): same outcome, said once
            log.debug("desired configuration v%d again: nothing changed", desired.version)
            return
        self._last_report = fingerprint
        log.info(
            "desired configuration v%d: plans started %s, updated %s, stopped %s%s",
            desired.version,
            report.started or "-",
            report.updated or "-",
            report.stopped or "-",
            f", problems: {'; '.join(errors)}" if errors else "",
        )
        self._emit_event(
            self.id,
            DeviceEventItem(
                type=CONFIG_REPORTED,
                severity="info" if not errors else "warning",
                message=f"stream plans v{desired.version}: {len(running)} running",
                data=report_data.model_dump(mode="json", exclude_none=True),
            ),
        )

    def _settle_plans(self, plan_ids: set[str]) -> None:
        """Wait up to :data:`PLAN_SETTLE_SECONDS` for ``plan_ids`` to be running or failed."""
        deadline = time.monotonic() + PLAN_SETTLE_SECONDS
        while plan_ids and not self._stopping.is_set() and time.monotonic() < deadline:
            starting = [
                s
                for s in self.plans.status()
                if s.plan_id in plan_ids and s.state not in ("running", "failed")
            ]
            if not starting:
                return
            self._stopping.wait(0.05)

    def _on_command(self, request: CommandRequest) -> None:
        try:
            self._commands.submit(self._execute, request)
        except RuntimeError:  # the executor is shut down: stopping
            self._answer(
                request,
                False,
                {"retryable": True},
                "the connector is stopping; the command was not executed",
            )

    def _execute(self, request: CommandRequest) -> None:
        try:
            ok, result, error = self._run_command(request)
        except Exception as err:  # a bug must still be answered, not leave it to time out
            log.exception("command %s failed", request.request_id)
            ok, result, error = False, None, f"the connector failed: {type(err).__name__}"
        self._answer(request, ok, result, error)

    def _answer(
        self, request: CommandRequest, ok: bool, result: dict[str, Any] | None, error: str | None
    ) -> None:
        self._send(
            TopicKind.COMMAND_RESPONSE,
            CommandResponse(
                message_id=_message_id(),
                time=_now(),
                request_id=request.request_id,
                ok=ok,
                result=result,
                error=error,
            ),
        )

    def _run_command(
        self, request: CommandRequest
    ) -> tuple[bool, dict[str, Any] | None, str | None]:
        if request.deadline < _now():
            return (
                False,
                {"retryable": True},
                "the command arrived after its deadline; not executed",
            )
        if request.name in LIVE_COMMANDS:  # live view of a camera (connector.live)
            return self.live.execute(request.device_id, request.name, request.params)
        if request.name == SNAPSHOT_COMMAND and request.device_id != self.id:
            return self._snapshot(request)
        if request.device_id == self.id:
            if request.name == "ping":
                return True, {"version": __version__, "uptime_seconds": self.uptime()}, None
            if request.name == "status":
                return True, self.status(), None
            return (
                False,
                None,
                f"unknown connector command {request.name!r}; known: "
                + ", ".join(CONNECTOR_COMMANDS),
            )
        with self._lock:
            plc = self.plcs.get(request.device_id)
        if plc is None:
            known = ", ".join(sorted(self.plcs)) or "none"
            return (
                False,
                None,
                f"device {request.device_id!r} is not a PLC of connector {self.id} "
                f"(PLCs here: {known})",
            )
        outcome = plc.execute(request)
        return outcome.ok, outcome.result, outcome.error

    def _snapshot(self, request: CommandRequest) -> tuple[bool, dict[str, Any] | None, str | None]:
        """Answer ``snapshot`` for a camera of this connector: its newest frame as a JPEG
        (base64) of at most ``params.max_bytes`` (default and ceiling
        :data:`aios.api.snapshots.MAX_SNAPSHOT_BYTES`), waiting for a first frame at most
        ``params.wait_seconds`` (default :data:`SNAPSHOT_WAIT_SECONDS`) and never past the
        command's deadline."""
        from aios.api.snapshots import MAX_SNAPSHOT_BYTES

        with self._lock:
            worker = self.cameras.get(request.device_id)
            known = ", ".join(sorted(self.cameras)) or "none"
        if worker is None:
            return (
                False,
                None,
                f"device {request.device_id!r} is not a camera of connector {self.id} "
                f"(cameras here: {known})",
            )
        params = request.params or {}
        max_bytes = params.get("max_bytes", MAX_SNAPSHOT_BYTES)
        wait = params.get("wait_seconds", SNAPSHOT_WAIT_SECONDS)
        if not isinstance(max_bytes, int) or not 10_000 <= max_bytes <= MAX_SNAPSHOT_BYTES:
            return False, None, f"max_bytes must be an integer 10000–{MAX_SNAPSHOT_BYTES}"
        if not isinstance(wait, int | float) or not 0 <= wait <= 60:
            return False, None, "wait_seconds must be a number 0–60"
        left = (request.deadline - _now()).total_seconds() - 0.5
        try:
            result = worker.snapshot_jpeg(max(0.0, min(float(wait), left)), max_bytes)
        except ValueError as err:
            return False, None, f"camera {request.device_id}: {err}"
        if result is None:
            health = worker.health()
            why = f" ({health.error})" if health.error else ""
            return (
                False,
                None,
                f"camera {request.device_id} has no frame yet: it is {health.state}{why}",
            )
        return True, result, None

    # ------------------------------------------------------------------ status

    def uptime(self) -> float:
        """Seconds since the connector started."""
        return round(time.monotonic() - self.started_at, 3)

    def status(self) -> dict[str, Any]:
        """A JSON summary: link, queue, cameras, pollers, stream plans."""
        stats = self.link.stats()
        with self._lock:
            cameras = {cid: self.camera_health(w) for cid, w in self.cameras.items()}
            pollers = {did: p.health() for did, p in self.pollers.items()}
        return {
            "connector_id": self.id,
            "version": __version__,
            "uptime_seconds": self.uptime(),
            "link": {
                "connected": stats.connected,
                "queue_depth": stats.queue_depth,
                "published": stats.published,
                "acknowledged": stats.acknowledged,
                "rejected": stats.rejected,
                "reconnects": stats.reconnects,
            },
            "cameras": cameras,
            "devices": pollers,
            "stream_plans": [
                {"plan_id": s.plan_id, "camera_id": s.camera_id, "state": s.state}
                for s in self.plans.status()
            ],
            "live_sessions": self.live.status(),
            "kvs_uploads": self.kvs.status(),
        }
