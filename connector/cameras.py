"""Cameras: stream URLs by vendor, and one capture worker per camera.

A :class:`CameraWorker` captures one camera in its own thread — an RTSP stream read by
:class:`aios.vision.sources.RtspSource` (open and read timeouts, a watchdog, reconnection
with backoff), or a video file played in real time in a loop (a camera stand-in) — and
hands every frame to its subscribers (the stream plans running on that camera), each with
latest-frame semantics: a subscriber that is busy gets the newest frame next and the frames
it missed are counted as dropped. Its :meth:`~CameraWorker.health` is what the heartbeat
reports per camera; passwords never appear in it.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from aios.vision.sources import (
    FileSource,
    RtspAuthError,
    RtspSource,
    SourceError,
    build_rtsp_url,
    redact_url,
)
from aios.vision.types import Frame, FrameSource
from connector.config import CameraConfig

log = logging.getLogger(__name__)

CameraState = Literal["starting", "streaming", "reconnecting", "failed", "stopped"]

FPS_WINDOW_SECONDS = 2.0
"""Frames per second are measured over the frames of the last 2 s."""

RETRY_AFTER_FAILURE_SECONDS = 5.0
"""A source that gave up (refused login, unreadable file) is opened again after this
(at most the camera's ``reconnect_max_seconds``): the camera or file may be fixed meanwhile."""

_POLL_SECONDS = 0.1


def _stream_path(camera: CameraConfig) -> str:
    """The RTSP path (with query) of a vendor camera's channel and stream.

    Templates (vendor documentation: Hikvision ISAPI streaming channels, Dahua/Amcrest
    ``realmonitor``, Axis VAPIX RTSP ``media.amp`` with its ``camera`` and ``resolution``
    arguments, Reolink "Introduction to RTSP", Uniview ``unicast`` live URLs).
    """
    ch = camera.channel
    sub = camera.stream == "sub"
    match camera.vendor:
        case "hikvision":
            return f"/Streaming/Channels/{ch}{'02' if sub else '01'}"
        case "dahua" | "amcrest":
            return f"/cam/realmonitor?channel={ch}&subtype={1 if sub else 0}"
        case "axis":
            # VAPIX: the sub stream is the same encoder at a lower resolution.
            return f"/axis-media/media.amp?camera={ch}" + ("&resolution=640x360" if sub else "")
        case "reolink":
            return f"/h264Preview_{ch:02d}_{'sub' if sub else 'main'}"
        case "uniview":
            return f"/unicast/c{ch}/s{1 if sub else 0}/live"
        case _:
            assert camera.path is not None  # CameraConfig requires a path for generic
            return camera.path if camera.path.startswith("/") else "/" + camera.path


def camera_url(camera: CameraConfig, password: str | None = None) -> str:
    """Return the URL to open for ``camera``.

    Vendor cameras: ``rtsp://user:password@host:port`` plus the vendor's path for the
    channel and main/sub stream (see :func:`_stream_path`). Raw RTSP URLs get the username
    and password added. Credentials are percent-encoded exactly once
    (:func:`aios.vision.sources.build_rtsp_url`), so ``@ : / # %`` in a password are safe.
    A file camera (``file:///path`` or a path) gives the file's path.

    Args:
        camera: the camera's configuration.
        password: the resolved password (the config holds only a reference); ``None``
            for no password.

    Returns:
        The URL (it holds the password: log :func:`aios.vision.sources.redact_url` of it).
    """
    if camera.url is not None:
        parts = urllib.parse.urlsplit(camera.url)
        if parts.scheme == "file":
            return urllib.parse.unquote(parts.path)
        if parts.scheme == "":
            return camera.url
        if camera.username is None:
            return camera.url
        auth = urllib.parse.quote(camera.username, safe="")
        if password is not None:
            auth += ":" + urllib.parse.quote(password, safe="")
        return urllib.parse.urlunsplit(
            (parts.scheme, f"{auth}@{parts.netloc}", parts.path, parts.query, parts.fragment)
        )
    assert camera.host is not None
    return build_rtsp_url(
        camera.host,
        camera.port,
        _stream_path(camera),
        camera.username,
        password if camera.username is not None else None,
    )


@dataclass(frozen=True)
class CameraHealth:
    """A camera's capture state, as the heartbeat reports it.

    Attributes:
        state: ``starting`` (not yet a frame), ``streaming`` (frames arriving),
            ``reconnecting`` (the connection failed or stalled; retrying with backoff),
            ``failed`` (the source gave up: refused login, unreadable file; retried after
            :data:`RETRY_AFTER_FAILURE_SECONDS`), ``stopped``.
        fps: frames per second over the last :data:`FPS_WINDOW_SECONDS`.
        last_frame_time: UTC capture time of the newest frame, ``None`` before the first.
        frames: frames captured since the worker started.
        dropped: frames subscribers missed because they were busy (sum over subscribers).
        error: the latest problem, with any password replaced by ``***``; ``None`` when
            streaming.
    """

    state: CameraState
    fps: float
    last_frame_time: datetime | None
    frames: int
    dropped: int
    error: str | None


class _Subscription:
    """A live view of a camera's frames: a one-slot buffer holding the newest frame."""

    live = True

    def __init__(self, worker: CameraWorker, source_id: str | None) -> None:
        self._worker = worker
        self._source_id = source_id
        self._cond = threading.Condition()
        self._slot: Frame | None = None
        self._stopped = False
        self.dropped_frames = 0
        self.frames_delivered = 0

    def __repr__(self) -> str:
        return f"CameraSubscription({self._worker.camera.id!r})"

    def offer(self, frame: Frame) -> None:
        if self._source_id is not None:
            frame = dataclasses.replace(frame, source_id=self._source_id)
        with self._cond:
            if self._slot is not None:
                self.dropped_frames += 1
            self._slot = frame
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def frames(self) -> Iterator[Frame]:
        """Yield the newest frame each time the consumer asks, until stopped.

        Ends when :meth:`stop` is called or the camera worker stops.
        """
        while True:
            with self._cond:
                while self._slot is None and not self._stopped:
                    self._cond.wait(_POLL_SECONDS)
                if self._stopped:
                    return
                frame, self._slot = self._slot, None
                self.frames_delivered += 1
            assert frame is not None
            yield frame

    def stop(self) -> None:
        """Unsubscribe; :meth:`frames` ends within 0.1 s. Safe to call more than once."""
        self._worker._unsubscribe(self)
        self.close()


class CameraWorker:
    """Captures one camera in its own thread and fans its frames out to subscribers.

    Frames are re-stamped on the worker's clock so they stay ordered across
    reconnections: ``index`` counts frames since :meth:`start`, ``pts_seconds`` is
    monotonic seconds since :meth:`start`, ``source_id`` is the camera id (or the id a
    subscriber asked for).

    Args:
        camera: the camera's configuration (``enabled`` is the caller's business).
        password: the resolved password, never logged.
    """

    def __init__(self, camera: CameraConfig, password: str | None = None) -> None:
        self.camera = camera
        self._url = camera_url(camera, password)
        self._password = password
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._source: RtspSource | FileSource | None = None
        self._subscribers: list[_Subscription] = []
        self._state: CameraState = "starting"
        self._error: str | None = None
        self._frames = 0
        self._dropped_gone = 0
        self._last_frame: Frame | None = None
        self._last_frame_time: datetime | None = None
        self._recent: deque[float] = deque(maxlen=256)
        self._new_frame = threading.Condition(self._lock)
        self._started_mono = time.monotonic()

    def __repr__(self) -> str:
        return f"CameraWorker({self.camera.id!r}, {self.redacted_url!r})"

    @property
    def redacted_url(self) -> str:
        """The URL with the password replaced by ``***``."""
        return redact_url(self._url)

    @property
    def stopped(self) -> bool:
        """``True`` once :meth:`stop` was called (the worker cannot be started again)."""
        return self._stop.is_set()

    @property
    def thread(self) -> threading.Thread | None:
        """The capture thread (``None`` before :meth:`start`)."""
        return self._thread

    def _redact(self, text: str) -> str:
        text = text.replace(self._url, self.redacted_url)
        if self._password:
            for secret in {self._password, urllib.parse.quote(self._password, safe="")}:
                text = text.replace(secret, "***")
        return text

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start capturing in a background thread (returns at once; idempotent)."""
        with self._lock:
            if self._thread is not None:
                return
            self._started_mono = time.monotonic()
            self._thread = threading.Thread(
                target=self._run, name=f"camera-{self.camera.id}", daemon=True
            )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop capturing and end every subscription; wait up to ``timeout`` seconds.

        Safe at any time (a camera that never connected can be stopped), more than once.
        """
        self._stop.set()
        with self._lock:
            source = self._source
            subscribers = list(self._subscribers)
            self._subscribers.clear()
            self._state = "stopped"
            self._new_frame.notify_all()
        if source is not None:
            source.stop()
        for sub in subscribers:
            sub.close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("camera %s: capture thread still busy after stop", self.camera.id)

    def subscribe(self, source_id: str | None = None) -> FrameSource:
        """Return a live frame source of this camera (newest frame first).

        Args:
            source_id: written into the frames' ``source_id`` (default: the camera id).

        The source's ``stop()`` unsubscribes; it also ends when the worker stops. Frames a
        busy subscriber missed are counted in its ``dropped_frames`` and in
        :attr:`CameraHealth.dropped`.
        """
        sub = _Subscription(self, source_id)
        with self._lock:
            if self._stop.is_set():
                sub.close()
            else:
                self._subscribers.append(sub)
        return sub

    def _unsubscribe(self, sub: _Subscription) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)
                self._dropped_gone += sub.dropped_frames

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open."""
        with self._lock:
            return len(self._subscribers)

    def health(self) -> CameraHealth:
        """Return the capture state now (thread-safe)."""
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._recent if now - t <= FPS_WINDOW_SECONDS]
            fps = 0.0
            if len(recent) >= 2 and recent[-1] > recent[0]:
                fps = (len(recent) - 1) / (recent[-1] - recent[0])
            state = self._state
            error = self._error
            if state in ("starting", "streaming") and isinstance(self._source, RtspSource):
                # The RTSP reader reconnects by itself: its last failure is the camera's.
                rtsp = self._source.health()
                if not rtsp.connected and rtsp.last_error is not None:
                    state, error = "reconnecting", rtsp.last_error
            dropped = self._dropped_gone + sum(s.dropped_frames for s in self._subscribers)
            return CameraHealth(
                state=state,
                fps=round(fps, 2),
                last_frame_time=self._last_frame_time,
                frames=self._frames,
                dropped=dropped,
                error=None if error is None else self._redact(error),
            )

    def snapshot(self, timeout: float) -> Frame | None:
        """Return the newest frame, waiting up to ``timeout`` seconds for a first one.

        Returns ``None`` when no frame arrived in time (the camera is down or stopped).
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._last_frame is None and not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._new_frame.wait(min(left, _POLL_SECONDS))
            return self._last_frame

    def snapshot_jpeg(self, wait_seconds: float, max_bytes: int) -> dict[str, Any] | None:
        """The newest frame as a JPEG of at most ``max_bytes`` (see
        :func:`aios.api.snapshots.bounded_jpeg`), waiting up to ``wait_seconds`` for a
        first frame: ``{"jpeg_base64", "width", "height", "bytes", "captured_at"}``
        (``captured_at``: the frame's UTC capture time, ISO 8601), or ``None`` when no
        frame arrived in time.

        Raises:
            ValueError: the frame does not fit in ``max_bytes``.
        """
        from aios.api.snapshots import bounded_jpeg

        frame = self.snapshot(wait_seconds)
        if frame is None:
            return None
        shot = bounded_jpeg(frame.image, max_bytes=max_bytes)
        return {
            "jpeg_base64": base64.b64encode(shot.jpeg).decode("ascii"),
            "width": shot.width,
            "height": shot.height,
            "bytes": len(shot.jpeg),
            "captured_at": frame.wall_time.isoformat(),
        }

    # -- capture thread ----------------------------------------------------------------

    def _open(self) -> RtspSource | FileSource:
        c = self.camera
        if c.is_file:
            return FileSource(self._url, realtime=True, loop=True, source_id=c.id)
        return RtspSource(
            self._url,
            source_id=c.id,
            open_timeout_seconds=c.open_timeout_seconds,
            read_timeout_seconds=c.read_timeout_seconds,
            stall_timeout_seconds=c.stall_timeout_seconds,
            reconnect_max_seconds=c.reconnect_max_seconds,
        )

    def _set(self, state: CameraState, error: str | None) -> None:
        with self._lock:
            if not self._stop.is_set():
                self._state = state
                self._error = None if error is None else self._redact(error)

    def _deliver(self, frame: Frame) -> None:
        now = time.monotonic()
        with self._lock:
            frame = dataclasses.replace(
                frame,
                index=self._frames,
                pts_seconds=now - self._started_mono,
                source_id=self.camera.id,
                live=True,
            )
            self._frames += 1
            self._recent.append(now)
            self._last_frame = frame
            self._last_frame_time = frame.wall_time
            if self._state != "stopped":
                self._state, self._error = "streaming", None
            subscribers = list(self._subscribers)
            self._new_frame.notify_all()
        for sub in subscribers:
            sub.offer(frame)

    def _run(self) -> None:
        log.info("camera %s: capturing %s", self.camera.id, self.redacted_url)
        while not self._stop.is_set():
            try:
                source = self._open()
                with self._lock:
                    self._source = source
                if self._stop.is_set():
                    source.stop()
                for frame in source.frames():
                    if self._stop.is_set():
                        break
                    self._deliver(frame)
                else:
                    if not self._stop.is_set():
                        self._set("reconnecting", "the source ended")
            except (RtspAuthError, SourceError) as err:
                self._set("failed", str(err))
                log.warning("camera %s: %s", self.camera.id, self._redact(str(err)))
            except Exception as err:  # a bug: reported (redacted), retried
                self._set("failed", f"capture crashed: {type(err).__name__}")
                log.exception("camera %s: capture crashed", self.camera.id)
            finally:
                with self._lock:
                    source_now = self._source
                    self._source = None
                if source_now is not None:
                    source_now.stop()
                    if isinstance(source_now, RtspSource):
                        source_now.join(timeout=1.0)
            self._stop.wait(min(RETRY_AFTER_FAILURE_SECONDS, self.camera.reconnect_max_seconds))
        with self._lock:
            self._state = "stopped"
        log.info("camera %s: stopped", self.camera.id)
