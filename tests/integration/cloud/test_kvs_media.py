"""Reading a Kinesis Video stream (``aios.cloud.kvs_media``): MKV fragments made with PyAV
from real video, served on 127.0.0.1 with the ``GetDataEndpoint``/``GetMedia`` HTTP API, read
by the real boto3 clients and decoded as they arrive."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from getmedia_server import Fragment, GetMediaServer, make_fragment, read_frames

from aios import assets
from aios.cloud.kvs_media import KvsMediaSource, kvs_stream_name
from aios.vision.sources import SourceError
from aios.vision.types import Frame

STREAM = "aios-test-gate-cam"
START_MS = 1_764_400_000_000
STEP_MS = 100
PER_FRAGMENT = 20


@pytest.fixture(autouse=True)
def kvs_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KINESIS_VIDEO"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def fragments() -> list[Fragment]:
    """Three fragments of 20 frames of vtest.avi, 100 ms apart, from START_MS."""
    images = read_frames(str(assets.path("vtest.avi")), 3 * PER_FRAGMENT)
    return [
        make_fragment(images[i : i + PER_FRAGMENT], START_MS + i * STEP_MS, STEP_MS)
        for i in range(0, len(images), PER_FRAGMENT)
    ]


@pytest.fixture
def serve(fragments: list[Fragment]) -> Iterator[Any]:
    servers: list[GetMediaServer] = []

    def start(**options: Any) -> GetMediaServer:
        server = GetMediaServer(STREAM, fragments, **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def source(server: GetMediaServer, **options: Any) -> KvsMediaSource:
    defaults: dict[str, Any] = {
        "source_id": "gate",
        "endpoint_url": server.url,
        "pace": False,
        "reconnect_initial_seconds": 0.05,
        "read_timeout_seconds": 2.0,
    }
    return KvsMediaSource(STREAM, **{**defaults, **options})


def take(src: KvsMediaSource, count: int, timeout: float = 30.0) -> list[Frame]:
    """The first ``count`` frames (the source is stopped afterwards)."""
    frames: list[Frame] = []
    deadline = time.monotonic() + timeout
    try:
        for frame in src.frames():
            frames.append(frame)
            if len(frames) >= count or time.monotonic() > deadline:
                break
    finally:
        src.stop()
    return frames


def producer_ms(frames: list[Frame]) -> list[int]:
    return [round(f.wall_time.timestamp() * 1000) for f in frames]


def expected_ms(count: int, first: int = 0) -> list[int]:
    return [START_MS + (first + k) * STEP_MS for k in range(count)]


def test_frames_keep_their_producer_timestamps(serve: Any) -> None:
    # GIVEN a stream of three fragments (60 frames)
    server = serve()
    # WHEN the source reads it from NOW
    frames = take(source(server), 60)
    # THEN every frame arrives decoded, in order, with its producer timestamp
    assert producer_ms(frames) == expected_ms(60)
    assert all(f.wall_time.tzinfo is UTC for f in frames)
    assert [f.index for f in frames] == list(range(60))
    assert frames[10].pts_seconds == pytest.approx(1.0, abs=1e-6)
    assert frames[0].image.shape == (576, 768, 3) and frames[0].source_id == "gate"
    assert all(f.live for f in frames)
    # AND the requests are the service's: GetDataEndpoint for GET_MEDIA, then a signed
    # GetMedia from NOW on the endpoint it gave
    assert server.endpoint_calls == 1
    assert [(r.stream_name, r.selector, r.signed) for r in server.requests] == [
        (STREAM, {"StartSelectorType": "NOW"}, True)
    ]


def test_a_cut_connection_resumes_after_the_last_frame(
    serve: Any, fragments: list[Fragment]
) -> None:
    # GIVEN a connection cut in the middle of the second fragment
    server = serve(cut_after_bytes=len(fragments[0].data) + len(fragments[1].data) // 2)
    src = source(server)
    # WHEN the source reads on
    frames = take(src, 60)
    # THEN it reconnects from the producer timestamp of the last frame it delivered and
    # goes on: every frame once, none lost
    assert producer_ms(frames) == expected_ms(60)
    assert len(server.requests) == 2
    resumed = server.requests[1].selector
    assert resumed["StartSelectorType"] == "PRODUCER_TIMESTAMP"
    last_before_cut = round(float(resumed["StartTimestamp"]) * 1000)
    assert START_MS + (PER_FRAGMENT - 1) * STEP_MS <= last_before_cut < START_MS + 40 * STEP_MS
    stats = src.stats()
    assert stats.connections == 2 and stats.skipped > 0 and stats.frames == 60


def test_a_stalled_connection_is_dropped_by_the_bounded_read(
    serve: Any, fragments: list[Fragment]
) -> None:
    # GIVEN a connection that stops sending (but stays open) after the first fragment
    server = serve(cut_after_bytes=len(fragments[0].data) + 1000, cut="stall")
    # WHEN the source reads with a 1 s read timeout
    started = time.monotonic()
    frames = take(source(server, read_timeout_seconds=1.0), 60)
    # THEN the stalled read ends, and the next connection delivers the rest
    assert producer_ms(frames) == expected_ms(60)
    assert len(server.requests) == 2
    assert time.monotonic() - started < 15


def test_a_start_time_reads_from_that_producer_time(serve: Any) -> None:
    # GIVEN a start inside the second fragment
    server = serve()
    start = datetime.fromtimestamp((START_MS + 25 * STEP_MS) / 1000, UTC)
    # WHEN the source reads from it
    frames = take(source(server, start=start), 35)
    # THEN the request selects that producer time, and the frames start there
    assert server.requests[0].selector["StartSelectorType"] == "PRODUCER_TIMESTAMP"
    assert float(server.requests[0].selector["StartTimestamp"]) == start.timestamp()
    assert producer_ms(frames) == expected_ms(35, first=25)


def test_pacing_hands_frames_on_at_the_producers_rhythm(serve: Any) -> None:
    server = serve()
    started = time.monotonic()
    frames = take(source(server, pace=True), 20)
    # 20 frames 100 ms apart arrive in one burst; paced, they span about 1.9 s
    assert len(frames) == 20
    assert time.monotonic() - started >= 1.7


def test_an_unknown_stream_fails_without_retrying(serve: Any) -> None:
    server = serve()
    src = KvsMediaSource(
        "aios-test-no-such-cam", source_id="x", endpoint_url=server.url, pace=False
    )
    with pytest.raises(SourceError, match="ResourceNotFoundException"):
        take(src, 1)
    assert server.requests == []  # refused before any media


def test_stop_from_another_thread_ends_the_reading(serve: Any) -> None:
    # GIVEN a slow stream (a chunk every 0.2 s)
    server = serve(chunk_bytes=2048, chunk_delay=0.2)
    src = source(server, read_timeout_seconds=5.0)
    got: list[Frame] = []
    thread = threading.Thread(target=lambda: got.extend(take(src, 1000, timeout=60)))
    thread.start()
    time.sleep(1.0)
    # WHEN it is stopped
    stopped_at = time.monotonic()
    src.stop()
    thread.join(10)
    # THEN the reading ends within a bounded read
    assert not thread.is_alive()
    assert time.monotonic() - stopped_at < 6
    assert len(got) < 60


def test_stream_names_follow_the_convention() -> None:
    assert (
        kvs_stream_name("aios", "prod", "site1-gw", "gate-cam.1") == "aios-prod-site1-gw.gate-cam.1"
    )
    # ':' is not allowed in stream names: replaced, and a digest keeps ids apart
    a, b = (
        kvs_stream_name("aios", "dev", "gw", "site:cam1"),
        kvs_stream_name("aios", "dev", "gw", "site_cam1"),
    )
    assert a.startswith("aios-dev-gw.site_cam1-") and len(a) == len("aios-dev-gw.site_cam1-") + 8
    assert a != b
    with pytest.raises(ValueError, match="Kinesis Video stream name"):
        kvs_stream_name("aios", "dev", "gw", "c" * 250)
    with pytest.raises(ValueError):
        kvs_stream_name("", "dev", "gw", "cam")
    with pytest.raises(ValueError, match="letters, digits"):
        kvs_stream_name("aios", "dev", "site:gw", "cam")
    with pytest.raises(ValueError, match="letters, digits"):
        kvs_stream_name("aios", "dev", "site.gw", "cam")


def test_a_connectors_upload_role_covers_its_own_streams_only() -> None:
    """The role's resource (template.yaml, KvsDeviceRole) with IAM's '*' wildcard, for
    connector 'site' (ThingName): its cameras' streams, never those of 'site-1' or 'site_2'."""
    from cloud_stack import load_template

    role = load_template()["Resources"]["KvsDeviceRole"]["Properties"]
    statement = role["Policies"][0]["PolicyDocument"]["Statement"][0]
    pattern = statement["Resource"]["Fn::Sub"]
    assert pattern.endswith("stream/${NamePrefix}-${Stage}-${!credentials-iot:ThingName}.*/*")
    allowed = re.compile(re.escape("aios-dev-site.") + ".*")
    assert allowed.fullmatch(kvs_stream_name("aios", "dev", "site", "cam-1"))
    assert allowed.fullmatch(kvs_stream_name("aios", "dev", "site", "gate.cam:2"))
    for other in ("site-1", "site_2", "sites"):
        assert not allowed.fullmatch(kvs_stream_name("aios", "dev", other, "cam-1"))
