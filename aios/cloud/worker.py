"""The cloud stream worker: the stream tier of one run, in a GPU container (cloud placement).

The lifecycle state machine starts this worker as an ECS task (``DetectorTaskDefinition``,
``ecs:runTask.waitForTaskToken``) with the run id and the task token in its environment,
and waits for it. The worker (``python -m aios.cloud.worker``, or :func:`main`):

1. loads the run (``AIOS_RUN_ID``) and the pipeline revision it plays from the store
   (``AIOS_DATABASE_URL``);
2. builds one stream plan per video input node, the way edge placement does
   (:func:`aios.runs.edge.plan_document`, plan id ``"<run_id>.<node_id>"``), and runs them
   with the connector's own stream runtime (:class:`connector.streams.StreamPlanManager`:
   motion gate, detection on onnxruntime, tracking, zones, lines, dwell, counting; one
   onnxruntime session per model), each fed by a capture worker
   (:class:`connector.cameras.CameraWorker`):

   - a fleet camera (``aios/camera.device@1``) is read from the Kinesis Video stream its
     connector sends the video to, :func:`aios.cloud.kvs_media.kvs_stream_name`
     (``<AIOS_NAME_PREFIX>-<AIOS_STAGE>-<camera id>``), with
     :class:`~aios.cloud.kvs_media.KvsMediaSource`;
   - an RTSP camera (``aios/camera.rtsp@1``) is read as the connector reads one (timeouts,
     watchdog, reconnection with backoff; the password never logged);
   - a video file (``aios/file.input@1``) is played in real time in a loop, as the
     connector plays a file camera;
   - a webcam cannot be read by a cloud worker: the start fails, saying so;

3. emits each event that leaves the stream tier as the connector does
   (:func:`connector.streams.event_item`): a :class:`~aios.messages.DeviceEventsMessage` on
   ``dt/aios/{device}/events`` through IoT Core's data plane (``AIOS_IOT_DATA_ENDPOINT``),
   ``{device}`` being the fleet camera's id, or the worker's id (``AIOS_WORKER_ID``, default
   :data:`DEFAULT_WORKER_ID`) for the other sources — the ingest path (IoT rule → ingest
   function → fleet → run dispatch) takes it to the run's event state machine. The ingest
   takes messages of registered devices only: the worker registers its id in the fleet
   (:func:`register_worker_device`: a device of kind ``connector`` tagged
   :data:`WORKER_TAG`) when a source of the run publishes on it. Snapshots and clips go to the
   media bucket (``AIOS_MEDIA_BUCKET``) under the run's media keys
   (:func:`aios.runs.media.media_key`: ``runs/<run_id>/media/<kind>/<event_id>.<ext>``),
   the keys the events name;
4. once every plan runs — the model loaded and a first frame of every camera decoded and
   processed — answers ``SendTaskSuccess`` with ``{"task_arn", "worker", "cameras"}``
   (``task_arn`` from the ECS task metadata endpoint v4, ``ECS_CONTAINER_METADATA_URI_V4``,
   else ``null``); until then it sends ``SendTaskHeartbeat`` every
   ``AIOS_WORKER_HEARTBEAT_SECONDS``. A start that fails (no such run, an invalid pipeline,
   a plan that cannot start, nothing ready within ``AIOS_WORKER_START_TIMEOUT_SECONDS``, or
   a stop request first) answers ``SendTaskFailure`` with error :data:`WORKER_FAILED` and a
   cause without secrets, and exits 1;
5. runs until SIGTERM (ECS ``StopTask``) or SIGINT: stops the plans, flushes the events
   and uploads still queued (bounded by :data:`STOP_BUDGET_SECONDS`, inside ECS's default
   30 s stop timeout) and exits 0. A plan that fails while running ends the worker with
   exit status 1 (ECS then reports the task stopped);
6. keeps its health file fresh (:mod:`aios.cloud.worker_health`) for the container's
   ``HEALTHCHECK``.

Without ``AIOS_TASK_TOKEN`` (a worker started by hand) there is no callback.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aios.cloud import env
from aios.cloud.kvs_media import KvsMediaSource, kvs_stream_name
from aios.cloud.worker_health import health_file as health_file_path
from aios.cloud.worker_health import write_health
from aios.domain import DEVICE_ID_PATTERN
from aios.messages import MAX_EVENTS_PER_MESSAGE, MAX_PAYLOAD_BYTES, DeviceEventItem
from aios.nodes.camera_rtsp import RtspCameraConfig
from aios.pipeline.validation import PipelineInvalid, ValidatedPipeline
from aios.runs.media import MEDIA_KINDS, RUN_ID, media_key
from connector.cameras import CameraWorker
from connector.config import CameraConfig
from connector.media import MediaTarget, MediaUploader, UploadError
from connector.streams import StreamPlan, StreamPlanManager

log = logging.getLogger(__name__)

WORKER_FAILED = "Aios.WorkerFailed"
"""The ``error`` of the worker's ``SendTaskFailure`` (the lifecycle catches it)."""

# Worker settings beyond the contract's (:mod:`aios.cloud.env`), with their defaults.
NAME_PREFIX = env.NAME_PREFIX
"""First part of the Kinesis Video stream names (``NamePrefix`` of the template; ``aios``)."""
WORKER_ID = "AIOS_WORKER_ID"
"""The worker's device id on ``dt/aios/{id}/events`` (default :data:`DEFAULT_WORKER_ID`)."""
HEARTBEAT_SECONDS = "AIOS_WORKER_HEARTBEAT_SECONDS"
"""Seconds between ``SendTaskHeartbeat`` calls while starting (default 20)."""
START_TIMEOUT_SECONDS = "AIOS_WORKER_START_TIMEOUT_SECONDS"
"""Seconds the start may take before it fails (default 600)."""
WORK_DIR = "AIOS_WORKER_DIR"
"""Folder of evidence files before upload (default: a new temporary folder)."""
ECS_METADATA_URI = "ECS_CONTAINER_METADATA_URI_V4"
"""Set by the ECS agent in every container (task metadata endpoint version 4)."""

DEFAULT_NAME_PREFIX = "aios"
DEFAULT_WORKER_ID = "cloud-stream-worker"
"""One device for every run's worker: the fleet lists one publisher, not one per run (the
events say their run and plan)."""
WORKER_TAG = "aios:stream-worker"
"""Tag of the worker's device in the fleet."""
DEFAULT_HEARTBEAT_SECONDS = 20.0
DEFAULT_START_TIMEOUT_SECONDS = 600.0

HEALTH_INTERVAL_SECONDS = 5.0
"""How often the health file is rewritten (and the plans looked at)."""

STOP_BUDGET_SECONDS = 20.0
"""Longest a clean stop may take: plans, event flush and uploads (ECS waits 30 s by default
between SIGTERM and SIGKILL)."""

PUBLISH_ATTEMPTS = 5
"""Tries per events message (exponential backoff 0.5 s doubling to 8 s) before it is dropped
with an error in the log."""

MAX_CAUSE_CHARS = 32_768
"""``SendTaskFailure``'s ``cause`` limit (Step Functions API reference)."""


class WorkerStartError(RuntimeError):
    """The worker cannot start the run; the message says why (no secrets in it)."""


@dataclass(frozen=True)
class WorkerConfig:
    """The worker's settings, from its environment (see the module docstring).

    Attributes:
        run_id: the run served (``AIOS_RUN_ID``).
        task_token: the lifecycle's task token (``AIOS_TASK_TOKEN``; ``None``: no callback).
        database_url: ``AIOS_DATABASE_URL``.
        media_bucket: ``AIOS_MEDIA_BUCKET`` (``None``: evidence kept in the container only).
        stage: ``AIOS_STAGE``.
        name_prefix: ``AIOS_NAME_PREFIX``.
        worker_id: ``AIOS_WORKER_ID``.
        heartbeat_seconds: ``AIOS_WORKER_HEARTBEAT_SECONDS``.
        start_timeout_seconds: ``AIOS_WORKER_START_TIMEOUT_SECONDS``.
        work_dir: ``AIOS_WORKER_DIR``.
        health_file: ``AIOS_WORKER_HEALTH_FILE``.
    """

    run_id: str
    task_token: str | None
    database_url: str
    media_bucket: str | None
    stage: str
    name_prefix: str = DEFAULT_NAME_PREFIX
    worker_id: str = ""
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    start_timeout_seconds: float = DEFAULT_START_TIMEOUT_SECONDS
    work_dir: Path | None = None
    health_file: Path = field(default_factory=health_file_path)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> WorkerConfig:
        """Read the settings.

        Raises:
            WorkerStartError: a required variable is missing or a value is malformed (the
                message names the variables, never their values).
        """
        environ = os.environ if environ is None else environ
        missing = [
            name for name in (env.RUN_ID, env.DATABASE_URL, env.STAGE) if not environ.get(name)
        ]
        if missing:
            raise WorkerStartError(f"the worker's environment lacks {', '.join(missing)}")
        run_id = environ[env.RUN_ID]
        if RUN_ID.fullmatch(run_id) is None:
            raise WorkerStartError(f"{env.RUN_ID} is not a run id")

        def number(name: str, default: float) -> float:
            raw = environ.get(name)
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise WorkerStartError(f"{name} is not a number of seconds") from None
            if not value > 0:
                raise WorkerStartError(f"{name} must be positive")
            return value

        worker_id = environ.get(WORKER_ID) or DEFAULT_WORKER_ID
        if re.fullmatch(DEVICE_ID_PATTERN, worker_id) is None:
            raise WorkerStartError(f"{WORKER_ID} is not a device id")
        work_dir = environ.get(WORK_DIR)
        return cls(
            run_id=run_id,
            task_token=environ.get(env.TASK_TOKEN) or None,
            database_url=environ[env.DATABASE_URL],
            media_bucket=environ.get(env.MEDIA_BUCKET) or None,
            stage=environ[env.STAGE],
            name_prefix=environ.get(NAME_PREFIX) or DEFAULT_NAME_PREFIX,
            worker_id=worker_id,
            heartbeat_seconds=number(HEARTBEAT_SECONDS, DEFAULT_HEARTBEAT_SECONDS),
            start_timeout_seconds=number(START_TIMEOUT_SECONDS, DEFAULT_START_TIMEOUT_SECONDS),
            work_dir=Path(work_dir) if work_dir else None,
            health_file=health_file_path(environ),
        )


# --------------------------------------------------------------------------- cameras


class KvsCameraWorker(CameraWorker):
    """A :class:`~connector.cameras.CameraWorker` whose source is a Kinesis Video stream.

    The capture thread, fan-out to plans, health and retry after a failure are the
    connector's; only the source differs (:class:`~aios.cloud.kvs_media.KvsMediaSource`,
    which reconnects by itself). The camera's configuration is built without validation:
    ``url`` holds ``kvs://<stream name>``, which names the stream in logs and is never opened
    as a URL.

    Args:
        camera_id: the fleet camera's device id.
        stream_name: its Kinesis Video stream.
        source_options: keyword arguments of :class:`KvsMediaSource` (timeouts, start…).
    """

    def __init__(self, camera_id: str, stream_name: str, **source_options: Any) -> None:
        super().__init__(CameraConfig.model_construct(id=camera_id, url=f"kvs://{stream_name}"))
        self.stream_name = stream_name
        self.source_options = source_options

    def _open(self) -> KvsMediaSource:  # type: ignore[override]
        return KvsMediaSource(self.stream_name, source_id=self.camera.id, **self.source_options)


@dataclass(frozen=True)
class CameraSource:
    """Where one video input node of the run gets its frames.

    Attributes:
        node_id: the pipeline's video input node.
        camera_id: the plan's camera id (the fleet camera's device id, else the node id).
        kind: ``kinesis_video``, ``rtsp`` or ``file``.
        publisher_id: the device whose events topic carries the plan's events.
        stream_name: the Kinesis Video stream (``kinesis_video`` only).
    """

    node_id: str
    camera_id: str
    kind: str
    publisher_id: str
    stream_name: str | None = None

    def describe(self) -> dict[str, Any]:
        """The camera as the task output lists it."""
        out: dict[str, Any] = {
            "node_id": self.node_id,
            "camera_id": self.camera_id,
            "source": self.kind,
        }
        if self.stream_name is not None:
            out["stream_name"] = self.stream_name
        return out


def _rtsp_camera(node_id: str, config: RtspCameraConfig) -> tuple[CameraConfig, str | None]:
    """The connector camera of an ``aios/camera.rtsp@1`` config, and its password."""
    password = config.password.get_secret_value() if config.password is not None else None
    common = {
        "id": node_id,
        "open_timeout_seconds": config.open_timeout_seconds,
        "read_timeout_seconds": config.read_timeout_seconds,
        "stall_timeout_seconds": config.stall_timeout_seconds,
        "reconnect_max_seconds": config.reconnect_max_seconds,
    }
    if config.url is not None:
        parts = urllib.parse.urlsplit(config.url)
        username = urllib.parse.unquote(parts.username) if parts.username else None
        if parts.password is not None:
            password = urllib.parse.unquote(parts.password)
        netloc = parts.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port is not None:
            netloc += f":{parts.port}"
        url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
        return CameraConfig(url=url, username=username, **common), password
    return (
        CameraConfig(
            host=config.host,
            port=config.port,
            path=config.path,
            username=config.username,
            **common,
        ),
        password if config.username is not None else None,
    )


def secrets_of(pipeline: ValidatedPipeline) -> list[str]:
    """The passwords of the pipeline's RTSP cameras (to keep out of any message), raw and
    percent-encoded."""
    found: set[str] = set()
    for node in pipeline.nodes.values():
        config = node.config
        if not isinstance(config, RtspCameraConfig):
            continue
        values = []
        if config.password is not None:
            values.append(config.password.get_secret_value())
        if config.url is not None:
            raw = urllib.parse.urlsplit(config.url).password
            if raw:
                values += [raw, urllib.parse.unquote(raw)]
        for value in values:
            if value:
                found |= {value, urllib.parse.quote(value, safe="")}
    return sorted(found, key=len, reverse=True)


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def camera_sources(
    pipeline: ValidatedPipeline,
    config: WorkerConfig,
    connector_of: Callable[[str], str | None] = lambda camera_id: None,
) -> list[tuple[CameraSource, CameraWorker]]:
    """The capture worker of each video input node of ``pipeline`` (not started).

    ``connector_of`` gives the connector a fleet camera is registered behind (its
    ``parent_id``), which names the camera's Kinesis Video stream.

    Raises:
        WorkerStartError: a webcam node, a file that does not exist, a fleet camera whose
            stream cannot be named, or an input type the worker cannot read.
    """
    from aios.nodes.camera_device import DeviceCameraConfig
    from aios.nodes.file_input import FileInputConfig, resolve_path

    out: list[tuple[CameraSource, CameraWorker]] = []
    for node in pipeline.video_inputs():
        node_config = node.config
        if isinstance(node_config, DeviceCameraConfig):
            camera_id = node_config.device_id
            connector_id = connector_of(camera_id)
            if connector_id is None:
                raise WorkerStartError(
                    f"node '{node.id}': camera '{camera_id}' is not registered behind a "
                    "connector, so no Kinesis Video stream carries its video: register it "
                    "with its connector as parent"
                )
            try:
                stream = kvs_stream_name(config.name_prefix, config.stage, connector_id, camera_id)
            except ValueError as err:
                raise WorkerStartError(f"node '{node.id}': {err}") from None
            source = CameraSource(node.id, camera_id, "kinesis_video", camera_id, stream)
            out.append((source, KvsCameraWorker(camera_id, stream)))
        elif isinstance(node_config, RtspCameraConfig):
            camera, password = _rtsp_camera(node.id, node_config)
            source = CameraSource(node.id, node.id, "rtsp", config.worker_id)
            out.append((source, CameraWorker(camera, password)))
        elif isinstance(node_config, FileInputConfig):
            path = resolve_path(node_config.path).resolve()
            if not path.is_file():
                raise WorkerStartError(
                    f"node '{node.id}': the video file {node_config.path!r} is not in the "
                    "worker's image"
                )
            camera = CameraConfig(id=node.id, url=str(path))
            source = CameraSource(node.id, node.id, "file", config.worker_id)
            out.append((source, CameraWorker(camera)))
        else:
            raise WorkerStartError(
                f"node '{node.id}' ({node.node.type}) cannot be read by a cloud stream worker: "
                "use a fleet camera (its connector sends the video to Kinesis Video Streams), "
                "an RTSP camera reachable from the cloud, or play the pipeline at the edge"
            )
    if not out:
        raise WorkerStartError("the pipeline has no video input: nothing for a stream worker")
    return out


def register_worker_device(store: Any, worker_id: str) -> bool:
    """Make ``worker_id`` a device of the fleet (kind ``connector``, tag :data:`WORKER_TAG`)
    unless it is one already, so the ingest takes the events it publishes.

    Returns:
        Whether the device was created.

    Raises:
        WorkerStartError: ``worker_id`` is a device of another kind, or a child device.
    """
    from aios.domain import Device, DeviceKind
    from aios.store.port import Conflict

    current = store.devices.get(worker_id)
    if current is None:
        try:
            store.devices.create(
                Device(
                    id=worker_id,
                    name="Cloud stream worker",
                    kind=DeviceKind.CONNECTOR,
                    tags=[WORKER_TAG],
                )
            )
        except Conflict:  # another run's worker registered it meanwhile
            current = store.devices.get(worker_id)
        else:
            log.info("device %s registered for the stream workers' events", worker_id)
            return True
    if current is not None and (
        current.kind is not DeviceKind.CONNECTOR or current.parent_id is not None
    ):
        raise WorkerStartError(
            f"the worker's device id {worker_id!r} is a {current.kind.value} of the fleet"
            + (f" behind {current.parent_id!r}" if current.parent_id else "")
            + f": set {WORKER_ID} to an id of its own"
        )
    return False


def s3_media_target(bucket: str, run_id: str) -> MediaTarget:
    """The plans' media target: the run's media keys in ``bucket`` (the URL names the place;
    :class:`S3MediaUploader` writes with ``PutObject``)."""
    key = media_key(run_id, "{kind}", "{name}")
    return MediaTarget(upload_url=f"https://{bucket}.s3.amazonaws.com/{key}")


def build_plans(
    run_id: str,
    pipeline: ValidatedPipeline,
    sources: Sequence[CameraSource],
    media: MediaTarget | None,
) -> list[StreamPlan]:
    """One stream plan per video input node, as edge placement builds them.

    Raises:
        WorkerStartError: the part of the pipeline fed by an input is not a pipeline by
            itself (:func:`aios.runs.edge.plan_document`).
    """
    from aios.runs.edge import PLAN_VERSION, EdgePlacementError, plan_document, plan_id

    plans = []
    for source in sources:
        try:
            document = plan_document(pipeline, source.node_id)
        except EdgePlacementError as err:
            raise WorkerStartError(str(err)) from None
        plans.append(
            StreamPlan(
                plan_id=plan_id(run_id, source.node_id),
                version=PLAN_VERSION,
                camera_id=source.camera_id,
                pipeline=document,
                run_id=run_id,
                media=media,
            )
        )
    return plans


# --------------------------------------------------------------------------- outputs


class S3MediaUploader(MediaUploader):
    """The connector's uploader (queue, retries, clips sent once complete), writing each
    file with S3 ``PutObject`` to ``runs/<run_id>/media/<kind>/<name>`` of ``bucket``.

    Args:
        bucket: the media bucket.
        run_id: the run whose keys are written.
        client: an S3 client (default: a new one from the environment).
        media_dir, **options: as :class:`~connector.media.MediaUploader`.
    """

    def __init__(
        self,
        bucket: str,
        run_id: str,
        *,
        client: Any | None = None,
        media_dir: Path | None = None,
        **options: Any,
    ) -> None:
        super().__init__(media_dir, **options)
        self.bucket = bucket
        self.run_id = run_id
        if client is None:
            import boto3

            client = boto3.client("s3")
        self._s3 = client

    def upload(self, path: Path, kind: str, target: MediaTarget) -> None:
        """Write one file now (boto3 retries throttling and 5xx).

        Raises:
            FileNotFoundError: no such file.
            UploadError: S3 refused it.
        """
        del target  # the key is the run's; the target only says that media are wanted
        data = path.read_bytes()
        key = media_key(self.run_id, kind, path.name)
        try:
            self._s3.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=MEDIA_KINDS[kind]
            )
        except Exception as err:
            code = getattr(err, "response", {}).get("Error", {}).get("Code")
            raise UploadError(
                f"upload of {path.name} to s3://{self.bucket}/{key} failed: "
                f"{code or type(err).__name__}"
            ) from None


def events_topic(device_id: str) -> str:
    """``dt/aios/{device_id}/events``."""
    return f"dt/aios/{device_id}/events"


class EventPublisher:
    """Publishes device events from a queue in its own thread (the plans never wait on the
    network): one :class:`~aios.messages.DeviceEventsMessage` per call and device, split to
    stay within :data:`~aios.messages.MAX_EVENTS_PER_MESSAGE` events and
    :data:`~aios.messages.MAX_PAYLOAD_BYTES`.

    Args:
        publish: ``publish(topic, payload)`` (:meth:`aios.cloud.iot.IotDataLink.publish`).
        topic_device: the device whose topic carries a camera's events (camera id → id).
        attempts: tries per message (:data:`PUBLISH_ATTEMPTS`).
    """

    def __init__(
        self,
        publish: Callable[[str, dict[str, Any]], None],
        topic_device: Callable[[str], str],
        *,
        attempts: int = PUBLISH_ATTEMPTS,
        backoff_seconds: float = 0.5,
    ) -> None:
        import queue

        self._publish = publish
        self._topic_device = topic_device
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self._queue: queue.Queue[tuple[str, list[DeviceEventItem]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="event-publisher", daemon=True)
        self._started = False
        self.published = 0
        self.dropped = 0

    def start(self) -> None:
        """Start the publishing thread (once)."""
        if not self._started:
            self._started = True
            self._thread.start()

    def emit(self, camera_id: str, items: list[DeviceEventItem]) -> None:
        """Queue the events of one frame of ``camera_id`` (thread-safe, returns at once)."""
        if items:
            self._queue.put((camera_id, list(items)))

    def stop(self, timeout: float) -> None:
        """Publish what is queued (for up to ``timeout`` seconds), then end the thread."""
        self._queue.put(None)
        if self._started:
            self._thread.join(timeout)

    def _messages(self, items: list[DeviceEventItem]) -> list[dict[str, Any]]:
        """The messages carrying ``items`` (the topic names the device: no ``device_id``)."""
        from aios.messages import DeviceEventsMessage

        out = []
        step = MAX_EVENTS_PER_MESSAGE
        pending = [items[i : i + step] for i in range(0, len(items), step)]
        while pending:
            chunk = pending.pop(0)
            message = DeviceEventsMessage(
                message_id=uuid.uuid4().hex,
                time=datetime.now(UTC),
                events=chunk,
            )
            payload = message.model_dump(mode="json", exclude_none=True)
            size = len(json.dumps(payload, separators=(",", ":")))
            if size > MAX_PAYLOAD_BYTES and len(chunk) > 1:
                half = len(chunk) // 2
                pending[:0] = [chunk[:half], chunk[half:]]
                continue
            if size > MAX_PAYLOAD_BYTES:
                log.error("event %s dropped: %d bytes, over the message limit", chunk[0].id, size)
                self.dropped += 1
                continue
            out.append(payload)
        return out

    def _send(self, topic: str, payload: dict[str, Any]) -> None:
        delay = self.backoff_seconds
        for attempt in range(1, self.attempts + 1):
            try:
                self._publish(topic, payload)
                self.published += len(payload["events"])
                return
            except Exception as err:
                code = getattr(err, "response", {}).get("Error", {}).get("Code")
                if attempt == self.attempts:
                    self.dropped += len(payload["events"])
                    log.error(
                        "%d event(s) on %s dropped after %d attempts: %s",
                        len(payload["events"]),
                        topic,
                        attempt,
                        code or type(err).__name__,
                    )
                    return
                time.sleep(delay)
                delay = min(delay * 2, 8.0)

    def _run(self) -> None:
        while True:
            entry = self._queue.get()
            if entry is None:
                return
            camera_id, items = entry
            device_id = self._topic_device(camera_id)
            for payload in self._messages(items):
                self._send(events_topic(device_id), payload)


class TaskCallback:
    """The lifecycle's ``.waitForTaskToken`` callback (no-ops without a token).

    Args:
        token: the task token.
        client: a Step Functions client (default: a new one from the environment).
    """

    def __init__(self, token: str | None, client: Any | None = None) -> None:
        self.token = token
        self._client = client
        self.answered = False

    def _sfn(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("stepfunctions")
        return self._client

    def heartbeat(self) -> None:
        """``SendTaskHeartbeat`` (a failure is logged: the next one may pass)."""
        if self.token is None or self.answered:
            return
        try:
            self._sfn().send_task_heartbeat(taskToken=self.token)
        except Exception as err:
            log.warning("task heartbeat failed: %s", _code(err))

    def success(self, output: Mapping[str, Any]) -> None:
        """``SendTaskSuccess`` with ``output`` as JSON.

        Raises:
            botocore.exceptions.ClientError: refused (the token expired or was answered).
        """
        if self.token is None or self.answered:
            return
        self._sfn().send_task_success(taskToken=self.token, output=json.dumps(output))
        self.answered = True

    def failure(self, cause: str) -> None:
        """``SendTaskFailure`` with :data:`WORKER_FAILED` and ``cause`` (a failure of the
        call is logged)."""
        if self.token is None or self.answered:
            return
        try:
            self._sfn().send_task_failure(
                taskToken=self.token, error=WORKER_FAILED, cause=cause[:MAX_CAUSE_CHARS]
            )
            self.answered = True
        except Exception as err:
            log.error("SendTaskFailure failed: %s", _code(err))


def _code(err: BaseException) -> str:
    response = getattr(err, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    return type(err).__name__


def ecs_task_arn(environ: Mapping[str, str] | None = None, timeout: float = 2.0) -> str | None:
    """The ARN of the ECS task this container runs in (``GET ${ECS_CONTAINER_METADATA_URI_V4}
    /task``, field ``TaskARN``), or ``None`` outside ECS or when the endpoint does not
    answer within ``timeout`` seconds."""
    environ = os.environ if environ is None else environ
    base = environ.get(ECS_METADATA_URI)
    if not base:
        return None
    try:
        with urllib.request.urlopen(base.rstrip("/") + "/task", timeout=timeout) as response:
            body = json.loads(response.read(1024 * 1024))
    except (OSError, ValueError) as err:
        log.warning("ECS task metadata unavailable: %s", type(err).__name__)
        return None
    arn = body.get("TaskARN") if isinstance(body, dict) else None
    return arn if isinstance(arn, str) else None


# --------------------------------------------------------------------------- the worker


class StreamWorker:
    """One run's stream tier in this process (see the module docstring).

    Args:
        config: the settings.
        store: the store (default: opened from ``config.database_url``).
        publish: publishes a device message (default: IoT Core's data plane,
            :meth:`aios.cloud.iot.IotDataLink.publish`).
        callback: the task callback (default: :class:`TaskCallback` of the config's token).
        s3_client: the media bucket's client (default: a new one).
    """

    def __init__(
        self,
        config: WorkerConfig,
        *,
        store: Any | None = None,
        publish: Callable[[str, dict[str, Any]], None] | None = None,
        callback: TaskCallback | None = None,
        s3_client: Any | None = None,
    ) -> None:
        self.config = config
        self._store = store
        self._publish = publish
        self.callback = callback or TaskCallback(config.task_token)
        self._s3_client = s3_client
        self.stopping = threading.Event()
        self.sources: list[CameraSource] = []
        self.cameras: dict[str, CameraWorker] = {}
        self.manager: StreamPlanManager | None = None
        self.publisher: EventPublisher | None = None
        self.uploader: S3MediaUploader | None = None
        self.state = "starting"
        self._secrets: list[str] = []
        self._work_dir: Path | None = None

    def stop(self) -> None:
        """Ask the worker to stop (thread- and signal-safe)."""
        self.stopping.set()

    # -- start ---------------------------------------------------------------------------

    def _open_store(self) -> Any:
        if self._store is None:
            from aios.config import Settings
            from aios.store.factory import open_store

            self._store = open_store(Settings(database_url=self.config.database_url))
        return self._store

    def _connector_of(self, camera_id: str) -> str | None:
        """The connector a fleet camera is registered behind (``None``: unknown camera)."""
        device = self._open_store().devices.get(camera_id)
        return None if device is None else device.parent_id

    def load_pipeline(self) -> ValidatedPipeline:
        """The pipeline revision of the run.

        Raises:
            WorkerStartError: no such run, a run that is not active, no such revision, or a
                revision that does not validate.
        """
        from aios.nodes import CATALOG
        from aios.pipeline.validation import validate_pipeline

        store = self._open_store()
        run = store.runs.get(self.config.run_id)
        if run is None:
            raise WorkerStartError(f"run {self.config.run_id!r} is not in the store")
        if not run.status.active:
            raise WorkerStartError(f"run {run.id!r} is {run.status.value}, not active")
        revision = store.pipelines.get_revision(run.pipeline_id, run.revision)
        if revision is None:
            raise WorkerStartError(
                f"revision {run.revision} of pipeline {run.pipeline_id!r} is not in the store"
            )
        try:
            return validate_pipeline(revision.document, CATALOG)
        except PipelineInvalid as err:
            raise WorkerStartError(
                f"revision {run.revision} of pipeline {run.pipeline_id!r} is not valid: "
                + "; ".join(str(i) for i in err.issues)
            ) from None

    def _default_publish(self) -> Callable[[str, dict[str, Any]], None]:
        from aios.cloud.iot import IotDataLink

        link = IotDataLink.from_environment()

        def publish(topic: str, payload: dict[str, Any]) -> None:
            link.publish(topic, payload)

        return publish

    def start(self) -> None:
        """Load the run, start the cameras and plans (returns once they are started, not
        ready: see :meth:`wait_ready`).

        Raises:
            WorkerStartError: see :meth:`load_pipeline`, :func:`camera_sources`,
                :func:`build_plans`; a plan refused by the plan manager.
        """
        config = self.config
        pipeline = self.load_pipeline()
        self._secrets = secrets_of(pipeline)
        pairs = camera_sources(pipeline, config, self._connector_of)
        self.sources = [s for s, _ in pairs]
        self.cameras = {s.camera_id: c for s, c in pairs}
        if len(self.cameras) != len(pairs):
            raise WorkerStartError("two video inputs of the pipeline name the same camera")
        media = s3_media_target(config.media_bucket, config.run_id) if config.media_bucket else None
        plans = build_plans(config.run_id, pipeline, self.sources, media)
        if any(s.publisher_id == config.worker_id for s in self.sources):
            register_worker_device(self._open_store(), config.worker_id)
        if config.work_dir is not None:
            self._work_dir = config.work_dir
            self._work_dir.mkdir(parents=True, exist_ok=True)
        else:
            self._work_dir = Path(tempfile.mkdtemp(prefix="aios-worker-"))
        if config.media_bucket:
            self.uploader = S3MediaUploader(
                config.media_bucket,
                config.run_id,
                client=self._s3_client,
                retry_interval_seconds=10.0,
                file_wait_seconds=60.0,
            )
            self.uploader.start()
        publishers = {s.camera_id: s.publisher_id for s in self.sources}
        self.publisher = EventPublisher(
            self._publish or self._default_publish(),
            lambda camera_id: publishers.get(camera_id, config.worker_id),
        )
        self.publisher.start()
        for camera in self.cameras.values():
            camera.start()
        self.manager = StreamPlanManager(
            self.cameras.get,
            self.publisher.emit,
            media_dir=self._work_dir / "media",
            uploader=self.uploader,
        )
        report = self.manager.apply(plans)
        if report.failed:
            raise WorkerStartError(
                "; ".join(f"plan {pid}: {error}" for pid, error in sorted(report.failed.items()))
            )
        import onnxruntime

        log.info(
            "run %s: %d camera(s) starting (%s); onnxruntime providers available: %s",
            config.run_id,
            len(self.sources),
            ", ".join(f"{s.node_id}={s.kind}" for s in self.sources),
            onnxruntime.get_available_providers(),
        )

    def plan_states(self) -> list[dict[str, Any]]:
        """Each plan's state, frames and events (the health file's ``plans``)."""
        if self.manager is None:
            return []
        return [
            {
                "plan_id": s.plan_id,
                "camera_id": s.camera_id,
                "state": s.state,
                "frames": s.frames,
                "events": s.events,
                **({"error": redact(s.error, self._secrets)} if s.error else {}),
            }
            for s in self.manager.status()
        ]

    def _write_health(self) -> None:
        try:
            write_health(
                self.config.health_file, self.state, self.config.worker_id, self.plan_states()
            )
        except OSError as err:
            log.warning("the health file cannot be written: %s", err.strerror)

    def wait_ready(self) -> None:
        """Wait until every plan runs and has processed a frame, sending heartbeats: one at
        once (the plans have started: the lifecycle's heartbeat timeout restarts), then one
        every ``heartbeat_seconds``.

        Raises:
            WorkerStartError: a plan failed, the start timed out, or a stop was asked.
        """
        deadline = time.monotonic() + self.config.start_timeout_seconds
        self.callback.heartbeat()
        next_beat = time.monotonic() + self.config.heartbeat_seconds
        next_health = 0.0
        while True:
            states = self.plan_states()
            failed = [s for s in states if s["state"] == "failed"]
            if failed:
                raise WorkerStartError(
                    "; ".join(f"plan {s['plan_id']}: {s.get('error')}" for s in failed)
                )
            if states and all(s["state"] == "running" and s["frames"] >= 1 for s in states):
                return
            now = time.monotonic()
            if self.stopping.is_set():
                raise WorkerStartError("the worker was stopped before it was ready")
            if now >= deadline:
                waiting = [
                    f"{s['camera_id']} ({s['state']}"
                    + (f": {s['error']}" if s.get("error") else "")
                    + ")"
                    for s in states
                    if not (s["state"] == "running" and s["frames"] >= 1)
                ]
                raise WorkerStartError(
                    f"not ready after {self.config.start_timeout_seconds:g} s: "
                    + ", ".join(waiting)
                )
            if now >= next_beat:
                self.callback.heartbeat()
                next_beat = now + self.config.heartbeat_seconds
            if now >= next_health:
                self._write_health()
                next_health = now + HEALTH_INTERVAL_SECONDS
            self.stopping.wait(0.2)

    def output(self) -> dict[str, Any]:
        """The ``SendTaskSuccess`` output: ``{"task_arn", "worker", "cameras"}``."""
        return {
            "task_arn": ecs_task_arn(),
            "worker": self.config.worker_id,
            "cameras": [s.describe() for s in self.sources],
        }

    # -- run -----------------------------------------------------------------------------

    def run(self) -> int:
        """Start, report ready, serve until stopped; return the exit status (0: stopped
        cleanly; 1: the start failed or a plan failed)."""
        self._write_health()
        try:
            self.start()
            self.wait_ready()
            self.callback.success(self.output())
        except Exception as err:
            if isinstance(err, WorkerStartError):
                message = str(err)
            else:  # the cause names the error only; the log has its text, secrets removed
                message = f"{_code(err)} while starting"
                log.error("start failed: %s", redact(f"{_code(err)}: {err}", self._secrets)[:2000])
            cause = redact(f"stream worker of run {self.config.run_id}: {message}", self._secrets)
            log.error("%s", cause)
            self.callback.failure(cause)
            self.state = "failed"
            self._write_health()
            self.shutdown()
            return 1
        self.state = "ready"
        self._write_health()
        log.info("run %s: stream worker ready (%s)", self.config.run_id, self.config.worker_id)
        status = 0
        while not self.stopping.wait(HEALTH_INTERVAL_SECONDS):
            self._write_health()
            failed = [s for s in self.plan_states() if s["state"] == "failed"]
            if failed:
                for s in failed:
                    log.error("plan %s failed: %s", s["plan_id"], s.get("error"))
                self.state = "failed"
                status = 1
                break
        if status == 0:
            self.state = "stopping"
        self._write_health()
        self.shutdown()
        return status

    def shutdown(self) -> None:
        """Stop the plans, the cameras, then flush events and uploads, within
        :data:`STOP_BUDGET_SECONDS`."""
        deadline = time.monotonic() + STOP_BUDGET_SECONDS

        def left(share: float) -> float:
            return max(0.5, min(share, deadline - time.monotonic()))

        if self.manager is not None:
            self.manager.stop_all(timeout=left(8.0))
        for camera in self.cameras.values():
            camera.stop(timeout=left(2.0))
        if self.publisher is not None:
            self.publisher.stop(timeout=left(5.0))
        if self.uploader is not None:
            if not self.uploader.wait_idle(left(5.0)):
                log.warning("%d media upload(s) not finished at stop", self.uploader.pending())
            self.uploader.stop(timeout=left(2.0))
        log.info("run %s: stream worker stopped", self.config.run_id)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the worker from its environment until SIGTERM; return the exit status."""
    del argv
    logging.basicConfig(
        level=os.environ.get("AIOS_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = WorkerConfig.from_environment()
    except WorkerStartError as err:
        log.error("%s", err)
        token = os.environ.get(env.TASK_TOKEN)
        if token:
            TaskCallback(token).failure(f"stream worker: {err}")
        return 1
    worker = StreamWorker(config)

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return worker.run()


if __name__ == "__main__":  # pragma: no cover - the container's entry point
    sys.exit(main())
