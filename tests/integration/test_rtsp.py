"""RtspSource against a real RTSP server (GStreamer's, run by rtsp_server.py) on 127.0.0.1.

The server runs under Debian's ``/usr/bin/python3`` (``python3-gi``; gi is not in the venv).
The tests are skipped only when that interpreter or the GStreamer RTSP server packages are
absent (``gir1.2-gst-rtsp-server-1.0``, ``gstreamer1.0-plugins-{base,good,ugly}``).
"""

from __future__ import annotations

import itertools
import logging
import os
import select
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pipeline_builders import detect_zone_dashboard_edges

from aios.vision.sources import (
    LatestFrameReader,
    RtspAuthError,
    RtspSource,
    SourceError,
    redact_url,
)

pytestmark = pytest.mark.rtsp

SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = Path("/usr/bin/python3")
USER = "admin"
PASSWORD = "p@ss#w:rd/1"
WRONG_PASSWORD = "Wr0ng@Secr#t:/x"
MISSING = 3  # rtsp_server.py's exit status when GStreamer pieces are missing


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RtspServer:
    """A running rtsp_server.py subprocess."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 20.0) -> None:
        if not SYSTEM_PYTHON.exists():
            pytest.skip(f"{SYSTEM_PYTHON} is absent: the RTSP test server needs Debian python3-gi")
        proc = subprocess.Popen(
            [
                str(SYSTEM_PYTHON),
                str(SERVER_SCRIPT),
                *("--port", str(self.port), "--user", USER, "--password", PASSWORD),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.proc = proc
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                line = proc.stdout.readline()
                if line.startswith("READY"):
                    return
            if proc.poll() is not None:
                err = proc.stderr.read() if proc.stderr else ""
                self.proc = None
                if proc.returncode == MISSING:
                    pytest.skip(f"GStreamer RTSP server packages are absent: {err.strip()}")
                pytest.fail(f"RTSP server exited with {proc.returncode}: {err.strip()}")
        self.stop()
        pytest.fail(f"RTSP server did not get ready within {timeout} s")

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def server() -> Iterator[RtspServer]:
    srv = RtspServer(_free_port())
    srv.start()
    yield srv
    srv.stop()


class Consumer:
    """Iterate a source's frames in a thread, recording arrival times and the error."""

    def __init__(self, source: RtspSource | LatestFrameReader) -> None:
        self.source = source
        self.arrivals: list[tuple[float, int]] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for frame in self.source.frames():
                self.arrivals.append((time.monotonic(), frame.index))
        except BaseException as err:
            self.error = err

    def count(self) -> int:
        return len(self.arrivals)


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _source(port: int, **kwargs: object) -> RtspSource:
    options: dict[str, object] = {
        "open_timeout_seconds": 5.0,
        "stall_timeout_seconds": 2.0,
        "reconnect_initial_seconds": 0.2,
        "reconnect_max_seconds": 1.0,
    }
    options.update(kwargs)
    return RtspSource(
        host="127.0.0.1",
        port=port,
        path="/stream",
        username=USER,
        password=PASSWORD,
        **options,  # type: ignore[arg-type]
    )


def _assert_no_secret(text: str, secret: str) -> None:
    for form in (secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote(secret)):
        assert form not in text


def test_urls_encode_credentials_exactly_once() -> None:
    """Raw passwords are encoded once; an encoded URL is used as given."""
    # GIVEN a raw password with reserved characters and the same password pre-encoded
    encoded = urllib.parse.quote(PASSWORD, safe="")
    # WHEN sources are built from parts and from a URL
    from_parts = RtspSource(host="cam", port=554, path="s", username=USER, password=PASSWORD)
    from_url = RtspSource(f"rtsp://{USER}:{encoded}@cam:554/s")
    url_plus_fields = RtspSource("rtsp://cam:554/s", username=USER, password=PASSWORD)
    # THEN all three use the same once-encoded URL, and show only the redacted form
    for source in (from_parts, from_url, url_plus_fields):
        assert source._url.reveal() == f"rtsp://admin:{encoded}@cam:554/s"
        assert source.redacted_url == "rtsp://admin:***@cam:554/s"
        _assert_no_secret(repr(source), PASSWORD)
    assert "%2540" not in from_url._url.reveal()
    assert redact_url("rtsp://cam/s") == "rtsp://cam/s"
    with pytest.raises(ValueError):
        RtspSource(f"rtsp://{USER}:{encoded}@cam/s", username=USER, password=PASSWORD)


@pytest.mark.timeout(90)
def test_password_with_reserved_characters_connects(
    server: RtspServer, caplog: pytest.LogCaptureFixture
) -> None:
    """admin / 'p@ss#w:rd/1' given as fields or in an encoded URL logs in; frames arrive."""
    caplog.set_level(logging.DEBUG)
    # GIVEN a source built from parts with the raw password
    source = _source(server.port)
    # WHEN 10 frames are read
    frames = []
    for frame in source.frames():
        frames.append(frame)
        if len(frames) == 10:
            break
    # THEN they are live 320×240 frames with increasing index and pts, and health says so
    assert [f.index for f in frames] == list(range(10))
    assert all(f.live and f.image.shape == (240, 320, 3) for f in frames)
    assert all(b.pts_seconds > a.pts_seconds for a, b in itertools.pairwise(frames))
    health = source.health()
    assert health.frames_received >= 10
    assert health.last_frame_time is not None and health.last_frame_time.tzinfo is not None
    assert health.reconnect_count == 0
    assert source.join(10)
    # AND the URL form with the pre-encoded password works as well
    encoded = urllib.parse.quote(PASSWORD, safe="")
    url_source = RtspSource(f"rtsp://{USER}:{encoded}@127.0.0.1:{server.port}/stream")
    first = next(iter(url_source.frames()))
    url_source.stop()
    assert first.image.shape == (240, 320, 3)
    assert url_source.join(10)
    # AND the password never reached the logs
    _assert_no_secret(caplog.text, PASSWORD)
    assert "rtsp://admin:***@127.0.0.1" in caplog.text


@pytest.mark.timeout(60)
def test_wrong_password_fails_clearly_without_leaking_it(
    server: RtspServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused login raises RtspAuthError; the password is in no message, log or repr."""
    caplog.set_level(logging.DEBUG)
    # GIVEN a source with a wrong password
    source = RtspSource(
        host="127.0.0.1",
        port=server.port,
        path="/stream",
        username=USER,
        password=WRONG_PASSWORD,
        open_timeout_seconds=5.0,
    )
    # WHEN it is read
    started = time.monotonic()
    with pytest.raises(RtspAuthError) as info:
        next(iter(source.frames()))
    # THEN it fails at once, says why, and the password appears nowhere
    assert time.monotonic() - started < 15
    message = str(info.value)
    assert "401" in message or "Unauthorized" in message
    assert "rtsp://admin:***@127.0.0.1" in message
    assert info.value.__cause__ is None and info.value.__context__ is None
    for text in (message, repr(info.value), repr(source), caplog.text, str(source.health())):
        _assert_no_secret(text, WRONG_PASSWORD)
    assert isinstance(info.value, SourceError)
    assert source.join(10)


@pytest.mark.timeout(120)
def test_watchdog_reconnects_after_server_freezes_and_resumes(server: RtspServer) -> None:
    """SIGSTOP: the watchdog fires within bounded time; SIGCONT: frames flow again."""
    # GIVEN a source receiving frames through a LatestFrameReader
    source = _source(server.port, stall_timeout_seconds=1.5, open_timeout_seconds=2.0)
    consumer = Consumer(LatestFrameReader(source))
    try:
        assert wait_until(lambda: consumer.count() >= 5, 30), consumer.error
        # WHEN the server process is frozen
        server.pause()
        frozen_at = time.monotonic()
        # THEN the watchdog tears the connection down within the stall timeout (+ margin)
        assert wait_until(lambda: source.health().stall_count >= 1, 8)
        assert time.monotonic() - frozen_at < 8
        assert not source.health().connected
        # WHEN the server resumes
        count = consumer.count()
        server.resume()
        # THEN the source reconnects and new frames arrive
        assert wait_until(lambda: consumer.count() >= count + 5, 40), source.health()
        health = source.health()
        assert health.connected and health.reconnect_count >= 1
        assert consumer.error is None
    finally:
        server.resume()
        consumer.source.stop()
        consumer.thread.join(10)
    assert not consumer.thread.is_alive()
    assert source.join(10)


@pytest.mark.timeout(120)
def test_source_reconnects_after_server_restart_on_same_port(server: RtspServer) -> None:
    """Killing the server is noticed; a new server on the same port is reconnected to."""
    # GIVEN a source receiving frames
    source = _source(server.port)
    consumer = Consumer(source)
    try:
        assert wait_until(lambda: consumer.count() >= 5, 30), consumer.error
        # WHEN the server is killed
        server.stop()
        # THEN the source notices within bounded time
        # (the error is recorded just after the connection is marked down)
        assert wait_until(
            lambda: not source.health().connected and source.health().last_error is not None, 10
        ), source.health()
        # WHEN a new server starts on the same port
        count = consumer.count()
        server.start()
        # THEN frames flow again
        assert wait_until(lambda: consumer.count() >= count + 5, 40), source.health()
        assert source.health().reconnect_count >= 1
        assert consumer.error is None
    finally:
        source.stop()
        consumer.thread.join(10)
    assert not consumer.thread.is_alive()
    assert source.join(10)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections and never says anything."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    accepted: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    done.set()
    thread.join(5)
    for conn in accepted:
        conn.close()
    listener.close()


@pytest.mark.timeout(60)
def test_camera_that_never_answers_can_be_stopped(silent_port: int) -> None:
    """stop() during a connection attempt that never completes returns promptly."""
    # GIVEN a source connecting to a server that accepts but never replies
    source = _source(silent_port, open_timeout_seconds=3.0)
    consumer = Consumer(source)
    time.sleep(1.0)
    assert consumer.count() == 0
    # WHEN it is stopped mid-connection
    started = time.monotonic()
    source.stop()
    stop_took = time.monotonic() - started
    # THEN stop() returns at once, frames() ends within a poll interval, and the
    # background thread exits within the open timeout
    assert stop_took < 0.5
    consumer.thread.join(2.0)
    assert not consumer.thread.is_alive()
    assert consumer.error is None
    assert source.join(5.0)
    assert time.monotonic() - started < 5.0


@pytest.mark.timeout(60)
def test_unused_port_retries_with_backoff_and_stops(caplog: pytest.LogCaptureFixture) -> None:
    """A refused connection is retried with backoff; max_reconnect_attempts bounds it."""
    caplog.set_level(logging.INFO)
    # GIVEN a port nobody listens on and a source allowed 3 retries
    source = _source(_free_port(), max_reconnect_attempts=3, reconnect_initial_seconds=0.1)
    # WHEN it is read
    started = time.monotonic()
    with pytest.raises(SourceError, match="giving up after 4 failed attempts"):
        next(iter(source.frames()))
    # THEN it gave up after backoff delays of ~0.1 + 0.2 + 0.4 s (jitter shortens them)
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 10
    assert source.health().reconnect_count == 3
    assert caplog.text.count("retrying in") == 3
    assert "retrying in" in caplog.text and "1 more time(s)" in caplog.text
    _assert_no_secret(caplog.text, PASSWORD)


def _rtsp_pipeline(port: int) -> dict[str, object]:
    """A camera.rtsp → detection → zone → dashboard pipeline on the test server."""
    return {
        "name": "rtsp pipeline",
        "nodes": [
            {
                "id": "cam",
                "type": "aios/camera.rtsp@1",
                "config": {
                    "host": "127.0.0.1",
                    "port": port,
                    "path": "/stream",
                    "username": USER,
                    "password": PASSWORD,
                    "open_timeout_seconds": 2.0,
                    "stall_timeout_seconds": 1.5,
                    "reconnect_initial_seconds": 0.2,
                    "reconnect_max_seconds": 1.0,
                },
            },
            {"id": "detect", "type": "aios/object_detection@1", "config": {}},
            {"id": "zone", "type": "aios/zone@1", "config": {"polygon": [[0, 0], [1, 0], [1, 1]]}},
            {"id": "dash", "type": "aios/dashboard@1", "config": {}},
        ],
        "edges": detect_zone_dashboard_edges("cam", "detect", "zone", "dash"),
    }


class _PipelineRun:
    """A StreamRunner running in a thread, counting processed frames."""

    def __init__(self, doc: dict[str, object]) -> None:
        from aios.nodes import CATALOG
        from aios.pipeline.validation import validate_pipeline
        from aios.runtime.events import MemorySink
        from aios.runtime.stream import StreamRunner

        self.frames = 0
        self.error: BaseException | None = None
        self.runner = StreamRunner(
            validate_pipeline(doc, CATALOG), MemorySink(), on_progress=self._count
        )
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _count(self, _source_id: str, _frame: object) -> None:
        self.frames += 1

    def _run(self) -> None:
        try:
            self.runner.run()
        except BaseException as err:
            self.error = err


@pytest.mark.timeout(180)
def test_pipeline_survives_a_frozen_camera_and_stops_promptly(
    server: RtspServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A whole pipeline keeps running through a camera outage and resumes after it."""
    caplog.set_level(logging.DEBUG)
    # GIVEN a pipeline processing frames from the camera
    run = _PipelineRun(_rtsp_pipeline(server.port))
    try:
        assert wait_until(lambda: run.frames >= 5, 60), run.error
        # WHEN the camera freezes for longer than the watchdog
        server.pause()
        time.sleep(4.0)
        stalled_at = run.frames
        # THEN the pipeline is still alive (not crashed, not stuck) ...
        assert run.thread.is_alive() and run.error is None
        server.resume()
        # ... AND frames flow through it again once the camera is back
        assert wait_until(lambda: run.frames >= stalled_at + 5, 60), run.error
    finally:
        server.resume()
        started = time.monotonic()
        run.runner.stop()
        run.thread.join(15)
    # AND stopping it takes bounded time
    assert not run.thread.is_alive()
    assert time.monotonic() - started < 15
    assert run.error is None
    _assert_no_secret(caplog.text, PASSWORD)


@pytest.mark.timeout(60)
def test_pipeline_on_a_camera_that_never_answers_can_be_stopped(silent_port: int) -> None:
    """A pipeline whose camera never connected stops within bounded time."""
    # GIVEN a pipeline waiting on a camera that accepts but never replies
    run = _PipelineRun(_rtsp_pipeline(silent_port))
    time.sleep(1.5)
    assert run.frames == 0 and run.thread.is_alive()
    # WHEN it is stopped
    started = time.monotonic()
    run.runner.stop()
    run.thread.join(10)
    # THEN it ends promptly, without error
    assert not run.thread.is_alive()
    assert time.monotonic() - started < 10
    assert run.error is None
