"""Parts of the cloud stream worker (``aios.cloud.worker``): its settings, how it turns the
pipeline's video inputs into cameras, secrets kept out of messages, and how events are cut
into device messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from zone_pipelines import person_zone_pipeline

from aios import assets
from aios.cloud import env
from aios.cloud.worker import (
    CameraSource,
    EventPublisher,
    KvsCameraWorker,
    WorkerConfig,
    WorkerStartError,
    build_plans,
    camera_sources,
    events_topic,
    redact,
    s3_media_target,
    secrets_of,
)
from aios.messages import MAX_PAYLOAD_BYTES, DeviceEventItem, DeviceEventsMessage
from aios.nodes import CATALOG
from aios.pipeline.validation import validate_pipeline

FULL = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
BASE_ENV = {
    env.RUN_ID: "run_1",
    env.DATABASE_URL: "dynamodb://aios-dev-DataTable",
    env.STAGE: "dev",
}


def pipeline_of(*cameras: dict[str, Any]) -> Any:
    """A pipeline with one zone branch per camera (node ids cam, cam2, …)."""
    document = person_zone_pipeline("p", cameras[0], zone="z", polygon=FULL, snapshot=False)
    for n, camera in enumerate(cameras[1:], start=2):
        extra = person_zone_pipeline("p", camera, zone="z", polygon=FULL, snapshot=False)
        rename = {node["id"]: f"{node['id']}{n}" for node in extra["nodes"]}
        for node in extra["nodes"]:
            node["id"] = rename[node["id"]]
        for edge in extra["edges"]:
            edge["source"], edge["target"] = rename[edge["source"]], rename[edge["target"]]
        document["nodes"] += extra["nodes"]
        document["edges"] += extra["edges"]
    return validate_pipeline(document, CATALOG)


def test_settings_from_the_environment() -> None:
    config = WorkerConfig.from_environment(
        {**BASE_ENV, env.TASK_TOKEN: "tok", env.MEDIA_BUCKET: "media"}
    )
    assert (config.run_id, config.task_token, config.media_bucket) == ("run_1", "tok", "media")
    assert config.worker_id == "cloud-stream-worker" and config.name_prefix == "aios"
    assert config.heartbeat_seconds == 20 and config.start_timeout_seconds == 600


def test_missing_or_bad_settings_are_named_without_their_values() -> None:
    with pytest.raises(WorkerStartError) as missing:
        WorkerConfig.from_environment({env.TASK_TOKEN: "secret-token-value"})
    assert "AIOS_RUN_ID" in str(missing.value) and "AIOS_STAGE" in str(missing.value)
    assert "secret-token-value" not in str(missing.value)
    with pytest.raises(WorkerStartError, match="AIOS_WORKER_HEARTBEAT_SECONDS"):
        WorkerConfig.from_environment({**BASE_ENV, "AIOS_WORKER_HEARTBEAT_SECONDS": "soon"})
    with pytest.raises(WorkerStartError, match="AIOS_RUN_ID is not a run id"):
        WorkerConfig.from_environment({**BASE_ENV, env.RUN_ID: "../etc"})


def test_each_video_input_gets_its_camera_and_topic() -> None:
    video = assets.path("vtest.avi")
    pipeline = pipeline_of(
        {"type": "aios/camera.device@1", "config": {"device_id": "site:gate"}},
        {"type": "aios/file.input@1", "config": {"path": str(video)}},
        {
            "type": "aios/camera.rtsp@1",
            "config": {"url": "rtsp://viewer:p%40ss%2Fw@10.0.0.7:8554/live?x=1"},
        },
    )
    config = WorkerConfig.from_environment({**BASE_ENV, "AIOS_NAME_PREFIX": "acme"})
    pairs = camera_sources(pipeline, config, {"site:gate": "site-gw"}.get)
    sources = {s.node_id: s for s, _ in pairs}
    workers = {s.node_id: w for s, w in pairs}
    fleet = sources["cam"]
    assert (fleet.kind, fleet.camera_id, fleet.publisher_id) == (
        "kinesis_video",
        "site:gate",
        "site:gate",
    )
    assert fleet.stream_name is not None and fleet.stream_name.startswith(
        "acme-dev-site-gw.site_gate-"
    )
    assert isinstance(workers["cam"], KvsCameraWorker)
    assert workers["cam"].redacted_url == f"kvs://{fleet.stream_name}"
    assert (sources["cam2"].kind, sources["cam2"].publisher_id) == ("file", "cloud-stream-worker")
    rtsp = workers["cam3"]
    # credentials leave the URL and are encoded once by the connector's camera
    assert rtsp.camera.url == "rtsp://10.0.0.7:8554/live?x=1" and rtsp.camera.username == "viewer"
    assert rtsp.redacted_url == "rtsp://viewer:***@10.0.0.7:8554/live?x=1"
    assert sources["cam3"].publisher_id == "cloud-stream-worker"

    plans = build_plans("run_1", pipeline, [s for s, _ in pairs], s3_media_target("media", "run_1"))
    assert [p.plan_id for p in plans] == ["run_1.cam", "run_1.cam2", "run_1.cam3"]
    # each plan carries its camera's branch only, as edge placement cuts it
    assert {n.id for n in plans[1].pipeline.nodes} == {"cam2", "detect2", "zone2", "dash2"}
    assert plans[0].media is not None
    assert plans[0].media.url_for("snapshots", "e1.jpg") == (
        "https://media.s3.amazonaws.com/runs/run_1/media/snapshots/e1.jpg"
    )


def test_inputs_a_cloud_worker_cannot_read_fail_the_start() -> None:
    config = WorkerConfig.from_environment(BASE_ENV)
    webcam = pipeline_of({"type": "aios/camera.webcam@1", "config": {}})
    with pytest.raises(WorkerStartError, match=r"node 'cam'.*cannot be read by a cloud"):
        camera_sources(webcam, config)
    unregistered = pipeline_of({"type": "aios/camera.device@1", "config": {"device_id": "cam9"}})
    with pytest.raises(WorkerStartError, match="'cam9' is not registered behind a connector"):
        camera_sources(unregistered, config)
    missing = pipeline_of({"type": "aios/file.input@1", "config": {"path": "/nowhere/v.mp4"}})
    with pytest.raises(WorkerStartError, match="not in the worker's image"):
        camera_sources(missing, config)


def test_rtsp_passwords_are_redacted_raw_and_encoded() -> None:
    pipeline = pipeline_of(
        {
            "type": "aios/camera.rtsp@1",
            "config": {"host": "cam.local", "username": "u", "password": "a/b@c"},
        },
        {"type": "aios/camera.rtsp@1", "config": {"url": "rtsp://u:x%3Ay@h/s"}},
    )
    secrets = secrets_of(pipeline)
    text = "open rtsp://u:a%2Fb%40c@cam.local failed; a/b@c; rtsp://u:x%3Ay@h/s x:y"
    redacted = redact(text, secrets)
    for secret in ("a/b@c", "a%2Fb%40c", "x%3Ay", "x:y"):
        assert secret not in redacted


def item(n: int, size: int = 10) -> DeviceEventItem:
    return DeviceEventItem(
        type="zone.enter",
        id=f"e{n}",
        message="x" * size,
        time=datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
    )


def test_events_are_cut_into_valid_device_messages() -> None:
    sent: list[tuple[str, dict[str, Any]]] = []

    def publish(topic: str, payload: dict[str, Any]) -> None:
        sent.append((topic, payload))

    publisher = EventPublisher(publish, lambda camera_id: camera_id)
    publisher.start()
    publisher.emit("cam-1", [item(n) for n in range(250)])  # over 100 events
    publisher.emit("cam-1", [item(1000 + n, size=1900) for n in range(100)])  # over 128 KB
    publisher.stop(timeout=10)
    assert {t for t, _ in sent} == {events_topic("cam-1")} == {"dt/aios/cam-1/events"}
    ids = [e["id"] for _, p in sent for e in p["events"]]
    assert ids == [f"e{n}" for n in range(250)] + [f"e{1000 + n}" for n in range(100)]
    for _, payload in sent:
        message = DeviceEventsMessage.model_validate(payload)
        assert message.device_id is None and len(message.events) <= 100
        assert len(json.dumps(payload)) <= MAX_PAYLOAD_BYTES
    assert len(sent) >= 5 and publisher.published == 350 and publisher.dropped == 0


def test_a_publish_that_keeps_failing_drops_the_message_after_its_attempts() -> None:
    calls: list[str] = []

    def publish(topic: str, payload: dict[str, Any]) -> None:
        calls.append(topic)
        raise ConnectionError("endpoint unreachable")

    publisher = EventPublisher(publish, lambda c: c, attempts=3, backoff_seconds=0.01)
    publisher.start()
    publisher.emit("cam-1", [item(1)])
    publisher.stop(timeout=10)
    assert len(calls) == 3 and publisher.dropped == 1 and publisher.published == 0


def test_camera_source_description() -> None:
    source = CameraSource("cam", "gate", "kinesis_video", "gate", "aios-dev-gate")
    assert source.describe() == {
        "node_id": "cam",
        "camera_id": "gate",
        "source": "kinesis_video",
        "stream_name": "aios-dev-gate",
    }
