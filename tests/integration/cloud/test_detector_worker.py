"""The cloud stream worker (``aios.cloud.worker``) on moto: the real model on the CPU, real
video, Step Functions waiting on the worker's task token, events on IoT Core's data plane,
snapshots in S3, and a clean stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from detector_worker_support import (
    BUCKET,
    IOT_DATA_ENDPOINT,
    REGION,
    TABLE,
    TASK_ARN,
    TaskMetadataServer,
    callback_machine,
    clients,
    execution_done,
    seed_run,
    task_token,
    wait_for,
)
from getmedia_server import GetMediaServer, make_fragment, read_frames
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from up_support import free_port
from zone_pipelines import person_zone_pipeline

from aios import assets
from aios.cloud import env
from aios.cloud.kvs_media import kvs_stream_name
from aios.cloud.worker import WORKER_FAILED, StreamWorker, TaskCallback, WorkerConfig
from aios.cloud.worker_health import check_health
from aios.config import Settings
from aios.domain import Device, DeviceKind
from aios.fleet.ingest import handle_message
from aios.fleet.service import FleetService
from aios.messages import DeviceEventsMessage
from aios.runs.media import media_key
from aios.services import Services
from aios.store.dynamodb import DynamoStore

FULL_FRAME = [[0.02, 0.02], [0.98, 0.02], [0.98, 0.98], [0.02, 0.98]]
RUN_ID = "run_w1"
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def video() -> Path:
    return assets.path("vtest.avi")


@pytest.fixture
def worker_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv(env.IOT_DATA_ENDPOINT, IOT_DATA_ENDPOINT)


@pytest.fixture
def moto_aws(worker_aws_env: None) -> Iterator[dict[str, Any]]:
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        aws = clients(boto3.session.Session())
        aws["s3"].create_bucket(Bucket=BUCKET)
        yield aws


def payloads(topic: str) -> list[bytes]:
    """The payloads moto's IoT data plane received on ``topic``."""
    from moto.iotdata.models import iotdata_backends

    backend = iotdata_backends[DEFAULT_ACCOUNT_ID][REGION]
    return [bytes(p) for t, p in list(backend.published_payloads) if t == topic]


def published(topic: str) -> list[DeviceEventsMessage]:
    """The events messages received on ``topic``, validated as the ingest validates them."""
    return [DeviceEventsMessage.model_validate(json.loads(p)) for p in payloads(topic)]


def worker_environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        env.RUN_ID: RUN_ID,
        env.DATABASE_URL: f"dynamodb://{TABLE}",
        env.MEDIA_BUCKET: BUCKET,
        env.STAGE: "test",
        "AIOS_WORKER_HEARTBEAT_SECONDS": "0.3",
        "AIOS_WORKER_START_TIMEOUT_SECONDS": "60",
        "AIOS_WORKER_DIR": str(tmp_path / "work"),
        "AIOS_WORKER_HEALTH_FILE": str(tmp_path / "health.json"),
        **extra,
    }


class Heartbeats:
    """Counts the ``SendTaskHeartbeat`` calls Step Functions accepted (botocore events)."""

    def __init__(self, sfn: Any) -> None:
        self.accepted = 0
        sfn.meta.events.register("after-call.sfn.SendTaskHeartbeat", self._after)

    def _after(self, http_response: Any, **_: Any) -> None:
        if http_response.status_code == 200:
            self.accepted += 1


class Failures:
    """The parameters of every ``SendTaskFailure`` request (moto keeps no ``cause``)."""

    def __init__(self, sfn: Any) -> None:
        self.params: list[dict[str, Any]] = []
        sfn.meta.events.register("before-call.sfn.SendTaskFailure", self._before)

    def _before(self, params: dict[str, Any], **_: Any) -> None:
        self.params.append(json.loads(params["body"]))


def run_in_thread(worker: StreamWorker) -> tuple[threading.Thread, list[int]]:
    status: list[int] = []
    thread = threading.Thread(target=lambda: status.append(worker.run()), daemon=True)
    thread.start()
    return thread, status


def test_file_camera_worker_reports_ready_publishes_events_and_snapshots(
    moto_aws: dict[str, Any],
    video: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a run of a file camera → people → zone (snapshots) → dashboard pipeline, and a
    # Standard state machine waiting on the worker's task token
    document = person_zone_pipeline(
        "yard watch",
        {"type": "aios/file.input@1", "config": {"path": str(video)}},
        zone="floor",
        polygon=FULL_FRAME,
        snapshot=True,
    )
    seed_run(moto_aws["dynamodb"], document)
    machine, queue_url = callback_machine(moto_aws["stepfunctions"], moto_aws["sqs"])
    execution = moto_aws["stepfunctions"].start_execution(
        stateMachineArn=machine, input=json.dumps({"run_id": RUN_ID})
    )["executionArn"]
    token = task_token(moto_aws["sqs"], queue_url)
    metadata = TaskMetadataServer().start()
    monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", metadata.uri)
    heartbeats = Heartbeats(moto_aws["stepfunctions"])
    config = WorkerConfig.from_environment(worker_environment(tmp_path, **{env.TASK_TOKEN: token}))
    worker = StreamWorker(config, callback=TaskCallback(token, moto_aws["stepfunctions"]))

    # WHEN the worker runs
    thread, status = run_in_thread(worker)
    try:
        done = execution_done(moto_aws["stepfunctions"], execution, 60)

        # THEN the execution leaves its waiting state with the worker's output
        assert done["status"] == "SUCCEEDED", done
        output = json.loads(done["output"])["worker"]
        assert output == {
            "task_arn": TASK_ARN,
            "worker": "cloud-stream-worker",
            "cameras": [{"node_id": "cam", "camera_id": "cam", "source": "file"}],
        }
        assert heartbeats.accepted >= 1  # sent while the model loaded and frames came
        assert check_health(config.health_file, 30) is None

        # AND zone events reach IoT Core on the worker's events topic, as device events
        topic = "dt/aios/cloud-stream-worker/events"
        messages = wait_for(lambda: published(topic), 45, "zone events on " + topic)
        # which the fleet's ingest takes from the worker's device, registered by the worker,
        # and hands to the run's hook
        hooked: list[tuple[str, Any]] = []
        fleet = FleetService(
            Services(
                store=DynamoStore(TABLE),
                settings=Settings(),
                device_event_hooks=[lambda device, items: hooked.append((device, items))],
            )
        )
        device = fleet.store.devices.get("cloud-stream-worker")
        assert device is not None and device.kind is DeviceKind.CONNECTOR
        assert "aios:stream-worker" in device.tags and not device.pending
        outcome = handle_message(fleet, topic, payloads(topic)[0])
        assert outcome.accepted, outcome
        assert hooked and hooked[0][0] == "cloud-stream-worker"
        item = messages[0].events[0]
        assert messages[0].device_id is None
        assert item.type == "zone.enter" and item.data["zone"] == "floor"
        assert item.data["run_id"] == RUN_ID and item.data["plan_id"] == f"{RUN_ID}.cam"
        assert item.data["class"] == "person" and item.id
        snapshot_key = media_key(
            RUN_ID, "snapshots", f"{item.data['stream_event']['event_id']}.jpg"
        )
        assert item.data["stream_event"]["snapshot"] == snapshot_key

        # AND its snapshot is in the media bucket under the run's media key
        s3 = moto_aws["s3"]

        def stored() -> dict[str, Any] | None:
            try:
                return s3.get_object(Bucket=BUCKET, Key=snapshot_key)  # type: ignore[no-any-return]
            except s3.exceptions.NoSuchKey:
                return None

        obj = wait_for(stored, 20, "the snapshot in S3")
        assert obj["ContentType"] == "image/jpeg"
        assert obj["Body"].read(3) == b"\xff\xd8\xff"
    finally:
        # WHEN it is asked to stop, THEN it stops cleanly
        worker.stop()
        thread.join(30)
        metadata.stop()
    assert not thread.is_alive() and status == [0]
    assert json.loads(config.health_file.read_text())["state"] == "stopping"


def test_fleet_camera_frames_come_from_its_kinesis_video_stream(
    moto_aws: dict[str, Any], video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a fleet camera whose connector sends its video to the stream of the convention
    images = read_frames(str(video), 80)
    start_ms = 1_764_400_000_000
    fragments = [
        make_fragment(images[i : i + 10], start_ms + i * 100, 100) for i in range(0, 80, 10)
    ]
    stream = kvs_stream_name("aios", "test", "site-1", "yard-cam")
    assert stream == "aios-test-site-1.yard-cam"
    server = GetMediaServer(stream, fragments).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_KINESIS_VIDEO", server.url)
    document = person_zone_pipeline(
        "yard watch",
        {"type": "aios/camera.device@1", "config": {"device_id": "yard-cam"}},
        zone="floor",
        polygon=FULL_FRAME,
        snapshot=False,
    )
    store = seed_run(moto_aws["dynamodb"], document)
    store.devices.create(Device(id="site-1", name="site 1", kind=DeviceKind.CONNECTOR))
    store.devices.create(
        Device(id="yard-cam", name="yard", kind=DeviceKind.CAMERA, parent_id="site-1")
    )
    config = WorkerConfig.from_environment(worker_environment(tmp_path))
    worker = StreamWorker(config)

    # WHEN the worker runs (no task token: started by hand)
    thread, status = run_in_thread(worker)
    try:
        # THEN its frames come from GetMedia, and the events go out on the camera's topic
        messages = wait_for(
            lambda: published("dt/aios/yard-cam/events"), 45, "zone events of the camera"
        )
        item = messages[0].events[0]
        assert item.type == "zone.enter" and item.data["plan_id"] == f"{RUN_ID}.cam"
        # ready once its start-up loop (every 0.2 s) has seen the plan's first frame
        wait_for(lambda: worker.state == "ready", 10, "the worker ready")
        # the fleet's ingest takes them as the camera's own events
        fleet = FleetService(Services(store=store, settings=Settings()))
        outcome = handle_message(
            fleet, "dt/aios/yard-cam/events", payloads("dt/aios/yard-cam/events")[0]
        )
        assert outcome.accepted, outcome
        assert store.devices.get("cloud-stream-worker") is None  # not needed: not registered
        assert [s.describe() for s in worker.sources] == [
            {
                "node_id": "cam",
                "camera_id": "yard-cam",
                "source": "kinesis_video",
                "stream_name": stream,
            }
        ]
        # the event's time is the frame's producer time
        event_ms = item.time.timestamp() * 1000 if item.time else 0
        assert start_ms <= event_ms <= start_ms + 8000
        assert server.requests[0].selector == {"StartSelectorType": "NOW"}
        assert server.requests[0].signed
    finally:
        worker.stop()
        thread.join(30)
        server.stop()
    assert status == [0]


def test_start_failure_answers_send_task_failure_without_secrets(
    moto_aws: dict[str, Any], tmp_path: Path
) -> None:
    # GIVEN an RTSP camera with a password that nothing answers at
    password = "p@ss:w0rd/#1"
    port = free_port()
    document = person_zone_pipeline(
        "gate",
        {
            "type": "aios/camera.rtsp@1",
            "config": {
                "host": "127.0.0.1",
                "port": port,
                "path": "/stream",
                "username": "viewer",
                "password": password,
                "open_timeout_seconds": 1,
                "reconnect_initial_seconds": 0.2,
                "reconnect_max_seconds": 0.5,
            },
        },
        zone="floor",
        polygon=FULL_FRAME,
        snapshot=False,
    )
    seed_run(moto_aws["dynamodb"], document)
    machine, queue_url = callback_machine(moto_aws["stepfunctions"], moto_aws["sqs"])
    execution = moto_aws["stepfunctions"].start_execution(
        stateMachineArn=machine, input=json.dumps({"run_id": RUN_ID})
    )["executionArn"]
    token = task_token(moto_aws["sqs"], queue_url)
    config = WorkerConfig.from_environment(
        worker_environment(
            tmp_path,
            **{env.TASK_TOKEN: token, "AIOS_WORKER_START_TIMEOUT_SECONDS": "4"},
        )
    )

    failures = Failures(moto_aws["stepfunctions"])

    # WHEN the worker cannot get a frame in time
    status = StreamWorker(config, callback=TaskCallback(token, moto_aws["stepfunctions"])).run()

    # THEN it answers SendTaskFailure with the contract's error, the cause naming the camera
    # and never the password, and exits 1
    assert status == 1
    done = execution_done(moto_aws["stepfunctions"], execution, 20)
    assert (done["status"], done["error"]) == ("FAILED", WORKER_FAILED)
    [sent] = failures.params
    assert sent["error"] == WORKER_FAILED
    cause = sent["cause"]
    assert "not ready after 4 s" in cause and "cam (waiting_for_camera" in cause
    for secret in (password, "p%40ss%3Aw0rd%2F%231"):
        assert secret not in cause
    assert json.loads(config.health_file.read_text())["state"] == "failed"


def test_missing_run_fails_the_task(moto_aws: dict[str, Any], tmp_path: Path) -> None:
    # GIVEN a task token for a run that is not in the store
    seed_run(
        moto_aws["dynamodb"],
        person_zone_pipeline(
            "x",
            {"type": "aios/file.input@1", "config": {"path": "asset:vtest.avi"}},
            zone="floor",
            polygon=FULL_FRAME,
            snapshot=False,
        ),
        run_id="run_other",
    )
    machine, queue_url = callback_machine(moto_aws["stepfunctions"], moto_aws["sqs"])
    execution = moto_aws["stepfunctions"].start_execution(
        stateMachineArn=machine, input=json.dumps({"run_id": RUN_ID})
    )["executionArn"]
    token = task_token(moto_aws["sqs"], queue_url)
    config = WorkerConfig.from_environment(worker_environment(tmp_path, **{env.TASK_TOKEN: token}))
    failures = Failures(moto_aws["stepfunctions"])
    # WHEN the worker starts, THEN the execution fails with the worker's error
    assert StreamWorker(config, callback=TaskCallback(token, moto_aws["stepfunctions"])).run() == 1
    done = execution_done(moto_aws["stepfunctions"], execution, 20)
    assert (done["status"], done["error"]) == ("FAILED", WORKER_FAILED)
    assert f"run {RUN_ID!r} is not in the store" in failures.params[0]["cause"]


def test_sigterm_stops_the_worker_process_cleanly(
    worker_aws_env: None, video: Path, tmp_path: Path
) -> None:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    process: subprocess.Popen[bytes] | None = None
    try:
        # GIVEN the table, bucket and run in a moto server
        aws = clients(boto3.session.Session(), endpoint)
        aws["s3"].create_bucket(Bucket=BUCKET)
        document = person_zone_pipeline(
            "yard watch",
            {"type": "aios/file.input@1", "config": {"path": str(video)}},
            zone="floor",
            polygon=FULL_FRAME,
            snapshot=False,
        )
        seed_run(aws["dynamodb"], document)
        environment = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AIOS_", "AWS_"))},
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_ENDPOINT_URL": endpoint,
            env.IOT_DATA_ENDPOINT: endpoint,
            **worker_environment(tmp_path),
        }
        health = tmp_path / "health.json"

        # WHEN the worker runs as its container runs it, and gets SIGTERM once ready
        process = subprocess.Popen(
            [sys.executable, "-m", "aios.cloud.worker"],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

        def ready() -> bool:
            assert process is not None and process.poll() is None, "the worker exited"
            try:
                return bool(json.loads(health.read_text())["state"] == "ready")
            except (OSError, ValueError):
                return False

        wait_for(ready, 60, "the worker to be ready", every=0.2)
        assert check_health(health, 30) is None
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)

        # THEN it stops cleanly with exit status 0
        assert process.returncode == 0, stderr.decode()[-2000:]
        assert json.loads(health.read_text())["state"] == "stopping"
        assert check_health(health, 30) == "the worker is stopping"
        assert b"stream worker stopped" in stderr
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)
        server.stop()
