"""Frame sources: video files, V4L2 webcams and RTSP cameras, all yielding :class:`Frame`.

Every source follows the :class:`FrameSource` protocol: iterate :meth:`~FrameSource.frames`
to get frames, call :meth:`~FrameSource.stop` (from any thread) to end the iteration, and
read :attr:`~FrameSource.live` to know whether frames arrive at the pace of the world.

* :class:`FileSource` decodes a file with PyAV. As a batch read (default) it yields every
  frame as fast as the consumer takes it; ``pts_seconds`` is the container timestamp, so runs
  are reproducible. With ``realtime=True`` it is paced at the file's frame rate and counts as
  live.
* :class:`WebcamSource` captures a V4L2 device with OpenCV.
* :class:`RtspSource` reads an RTSP camera over TCP with PyAV, with bounded timeouts, a
  stall watchdog, reconnection with exponential backoff, and credentials that never reach a
  log, an exception or a ``repr`` (only the redacted ``rtsp://user:***@host/...`` form does).
* :class:`LatestFrameReader` wraps a *live* source: a background thread reads continuously
  and keeps only the newest frame, so a slow consumer always processes the freshest frame;
  the frames it overwrote are counted in :attr:`LatestFrameReader.dropped_frames`. Batch
  file reads must never drop frames, so it refuses non-live sources.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import random
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from aios.vision.types import Frame, FrameSource

logger = logging.getLogger(__name__)

_POLL_SECONDS = 0.1


class SourceError(RuntimeError):
    """A source cannot deliver frames (missing file, unreachable device, refused login…).

    The message never contains credentials.
    """


class RtspAuthError(SourceError):
    """The RTSP server refused the credentials (401); retrying would not help."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------


class FileSource:
    """Decode a video file with PyAV.

    ``pts_seconds`` is the container timestamp relative to the stream start (``index / fps``
    when the container has none; kept strictly increasing). With ``loop=True`` the file
    restarts at its end and both ``index`` and ``pts_seconds`` keep increasing (the next
    loop starts one frame duration after the last frame). ``wall_time`` is ``start_time``
    plus ``pts_seconds`` for batch reads and the capture time (UTC now) when ``realtime``.

    Args:
        path: the video file.
        realtime: pace frames at the file's frame rate (wall clock); the source is then live.
        loop: restart at the end of the file until stopped.
        source_id: written into each frame's ``source_id``.
        start_time: the UTC time of ``pts_seconds == 0`` for batch reads; default the time
            :meth:`frames` opened the file. A naive datetime is taken as UTC.

    Raises:
        SourceError: the file is missing, cannot be decoded, or has no video stream (raised
            by the constructor, which probes the file, and by :meth:`frames`).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        realtime: bool = False,
        loop: bool = False,
        source_id: str = "file",
        start_time: datetime | None = None,
    ) -> None:
        self.path = Path(path)
        self.realtime = realtime
        self.loop = loop
        self.source_id = source_id
        if start_time is not None and start_time.tzinfo is None:
            start_time = start_time.replace(tzinfo=UTC)
        self.start_time = start_time
        self._stop = threading.Event()
        container = self._open()
        try:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            self.fps: float = float(rate) if rate else 25.0
            self.width: int = int(stream.codec_context.width)
            self.height: int = int(stream.codec_context.height)
            self.frame_count: int | None = int(stream.frames) or None
        finally:
            container.close()

    @property
    def live(self) -> bool:
        """``True`` when paced in real time."""
        return self.realtime

    def __repr__(self) -> str:
        return (
            f"FileSource({str(self.path)!r}, realtime={self.realtime}, loop={self.loop}, "
            f"source_id={self.source_id!r})"
        )

    def _open(self) -> Any:
        if not self.path.is_file():
            raise SourceError(f"video file not found: {self.path}")
        try:
            container = av.open(str(self.path))
        except (av.FFmpegError, OSError) as err:
            raise SourceError(f"cannot open video file {self.path}: {err}") from err
        if not container.streams.video:
            container.close()
            raise SourceError(f"no video stream in {self.path}")
        return container

    def stop(self) -> None:
        """End the current and any later iteration (within one frame)."""
        self._stop.set()

    def frames(self) -> Iterator[Frame]:
        """Yield the file's frames (see the class docstring for timestamps and looping).

        Raises:
            SourceError: the file cannot be opened or decoding fails midway.
        """
        start_wall = self.start_time or _utc_now()
        start_mono = time.monotonic()
        index = 0
        offset = 0.0  # pts of the start of the current loop
        last_pts = -math.inf
        frame_duration = 1.0 / self.fps
        while not self._stop.is_set():
            container = self._open()
            yielded_in_pass = 0
            try:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                start = stream.start_time
                t0 = float(start * stream.time_base) if start is not None else 0.0
                try:
                    for av_frame in container.decode(stream):
                        if self._stop.is_set():
                            return
                        own = av_frame.time
                        rel = (own - t0) if own is not None else yielded_in_pass * frame_duration
                        pts = offset + rel
                        if pts <= last_pts:
                            pts = last_pts + frame_duration
                        if self.realtime:
                            delay = start_mono + pts - time.monotonic()
                            if delay > 0 and self._stop.wait(delay):
                                return
                            wall = _utc_now()
                        else:
                            wall = start_wall + timedelta(seconds=pts)
                        image = av_frame.to_ndarray(format="bgr24")
                        yield Frame(
                            image=image,
                            index=index,
                            pts_seconds=pts,
                            wall_time=wall,
                            source_id=self.source_id,
                            live=self.realtime,
                            nominal_fps=self.fps,
                        )
                        index += 1
                        yielded_in_pass += 1
                        last_pts = pts
                except av.FFmpegError as err:
                    raise SourceError(f"decoding {self.path} failed: {err}") from err
            finally:
                container.close()
            if not self.loop:
                return
            if yielded_in_pass == 0:
                raise SourceError(f"no decodable frame in {self.path}")
            offset = last_pts + frame_duration


# --------------------------------------------------------------------------------------
# Webcams
# --------------------------------------------------------------------------------------


class WebcamSource:
    """Capture a V4L2 device (``/dev/video<device_index>``) with OpenCV; a live source.

    ``pts_seconds`` is a monotonic clock since :meth:`frames` started; ``wall_time`` is the
    UTC capture time. A device that stops delivering is reopened up to ``reopen_attempts``
    times (with a growing pause) before :class:`SourceError` is raised.

    Args:
        device_index: V4L2 device number.
        width: requested capture width in pixels (the driver may choose another).
        height: requested capture height in pixels.
        fps: requested frame rate.
        source_id: written into each frame's ``source_id``.
        reopen_attempts: how many times a failing device is reopened.
    """

    live = True

    def __init__(
        self,
        device_index: int = 0,
        *,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        source_id: str = "webcam",
        reopen_attempts: int = 3,
    ) -> None:
        self.device_index = device_index
        self.width = width
        self.height = height
        self.fps = fps
        self.source_id = source_id
        self.reopen_attempts = reopen_attempts
        self._stop = threading.Event()

    def __repr__(self) -> str:
        return f"WebcamSource({self.device_index}, source_id={self.source_id!r})"

    def stop(self) -> None:
        """End the iteration after the current read (a V4L2 read blocks at most ~10 s)."""
        self._stop.set()

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self.device_index, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open webcam /dev/video{self.device_index} (V4L2)")
        if self.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        if self.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        if self.fps:
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        return cap

    def frames(self) -> Iterator[Frame]:
        """Yield captured frames until stopped.

        Raises:
            SourceError: the device cannot be opened, or keeps failing after reopening.
        """
        start = time.monotonic()
        index = 0
        failures = 0
        cap = self._open()
        try:
            while not self._stop.is_set():
                ok, image = cap.read()
                if not ok or image is None:
                    failures += 1
                    cap.release()
                    if failures > self.reopen_attempts:
                        raise SourceError(
                            f"webcam /dev/video{self.device_index} stopped delivering frames"
                        )
                    logger.warning(
                        "webcam /dev/video%d read failed; reopening (%d/%d)",
                        self.device_index,
                        failures,
                        self.reopen_attempts,
                    )
                    if self._stop.wait(0.5 * failures):
                        return
                    cap = self._open()
                    continue
                failures = 0
                if image.ndim == 2:
                    image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
                yield Frame(
                    image=np.ascontiguousarray(image, dtype=np.uint8),
                    index=index,
                    pts_seconds=time.monotonic() - start,
                    wall_time=_utc_now(),
                    source_id=self.source_id,
                    live=True,
                )
                index += 1
        finally:
            cap.release()


# --------------------------------------------------------------------------------------
# RTSP
# --------------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """Replace the password of a URL by ``***``: ``rtsp://user:***@host:554/path``.

    A URL without a password is returned unchanged; text that does not parse as a URL with
    credentials is reduced to ``scheme://***`` rather than risk leaking it.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc
    except ValueError:
        return "***"
    if "@" not in netloc:
        return url
    userinfo, _, hostport = netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    if not hostport:
        return f"{parts.scheme}://***"
    return urllib.parse.urlunsplit(
        (parts.scheme, f"{user}:***@{hostport}", parts.path, parts.query, "")
    )


def build_rtsp_url(
    host: str,
    port: int = 554,
    path: str = "",
    username: str | None = None,
    password: str | None = None,
) -> str:
    """Build ``rtsp://user:pass@host:port/path`` from raw (not yet encoded) parts.

    The username and password are percent-encoded exactly once with
    ``urllib.parse.quote(..., safe='')``, so ``@ # : /`` and ``%`` in them are safe. An IPv6
    host is bracketed.
    """
    hostpart = f"[{host}]" if ":" in host and not host.startswith("[") else host
    auth = ""
    if username is not None:
        auth = urllib.parse.quote(username, safe="")
        if password is not None:
            auth += ":" + urllib.parse.quote(password, safe="")
        auth += "@"
    if path and not path.startswith("/"):
        path = "/" + path
    return f"rtsp://{auth}{hostpart}:{int(port)}{path}"


def _with_credentials(url: str, username: str, password: str | None) -> str:
    parts = urllib.parse.urlsplit(url)
    auth = urllib.parse.quote(username, safe="")
    if password is not None:
        auth += ":" + urllib.parse.quote(password, safe="")
    return urllib.parse.urlunsplit(
        (parts.scheme, f"{auth}@{parts.netloc}", parts.path, parts.query, parts.fragment)
    )


class _SecretUrl:
    """A URL whose ``str``/``repr`` is the redacted form; :meth:`reveal` gives the real one."""

    __slots__ = ("_url", "redacted")

    def __init__(self, url: str) -> None:
        self._url = url
        self.redacted = redact_url(url)

    def reveal(self) -> str:
        return self._url

    def __repr__(self) -> str:
        return repr(self.redacted)

    def __str__(self) -> str:
        return self.redacted


@dataclass(frozen=True, slots=True)
class RtspHealth:
    """A snapshot of an :class:`RtspSource`'s state.

    Attributes:
        connected: a stream is open and delivering frames.
        frames_received: frames decoded since the source was created.
        reconnect_count: connection attempts after the first one.
        stall_count: times the watchdog tore a silent connection down.
        last_frame_time: UTC time of the newest frame, ``None`` before the first.
        fps: frames per second over the last ~2 s (0 when nothing arrived recently).
        last_error: the latest connection problem (redacted), ``None`` when none.
    """

    connected: bool
    frames_received: int
    reconnect_count: int
    stall_count: int
    last_frame_time: datetime | None
    fps: float
    last_error: str | None


_END = object()


class RtspSource:
    """Read an RTSP camera over TCP with PyAV; a live source.

    Give either a complete ``url`` (its credentials, if any, must already be
    percent-encoded; they are used as given, never encoded again) or ``host`` (+ ``port``,
    ``path``). Raw ``username``/``password`` may be added to either form: they are encoded
    exactly once (``urllib.parse.quote(safe='')``), so ``@ # : /`` are fine.

    A background thread connects (``rtsp_transport=tcp``, open timeout
    ``open_timeout_seconds``), decodes, and hands frames over through a small queue (it
    waits while the consumer is busy: wrap the source in :class:`LatestFrameReader` to drop
    stale frames instead). One blocking read lasts at most
    ``min(read_timeout_seconds, stall_timeout_seconds)``. The *watchdog*: when no frame
    arrives for ``stall_timeout_seconds`` (a read timing out, or packets arriving that decode
    to no frame) the connection is torn down and reopened. Failed or lost connections are
    retried with exponential backoff: ``reconnect_initial_seconds`` doubling up to
    ``reconnect_max_seconds``, each delay shortened by a random fraction up to
    ``reconnect_jitter``; the delay resets after a frame arrives. A refused login
    (401) raises :class:`RtspAuthError` at once; ``max_reconnect_attempts`` (default
    unlimited) bounds the retries of other failures.

    :meth:`stop` returns at once from any thread; :meth:`frames` then ends within
    ``_POLL_SECONDS`` (0.1 s) and the thread exits within the open/read timeout.

    ``pts_seconds`` is a monotonic clock since the source was created; ``wall_time`` the
    UTC receive time; ``index`` counts frames across reconnections. Only the redacted URL
    (``rtsp://user:***@host:port/path``, :attr:`redacted_url`) appears in logs, exceptions
    and ``repr``.

    Raises:
        ValueError: neither or both of ``url`` and ``host``, or credentials given twice.
    """

    live = True

    def __init__(
        self,
        url: str | None = None,
        *,
        host: str | None = None,
        port: int = 554,
        path: str = "",
        username: str | None = None,
        password: str | None = None,
        source_id: str = "rtsp",
        open_timeout_seconds: float = 10.0,
        read_timeout_seconds: float = 5.0,
        stall_timeout_seconds: float = 5.0,
        reconnect_initial_seconds: float = 0.5,
        reconnect_max_seconds: float = 30.0,
        reconnect_jitter: float = 0.2,
        max_reconnect_attempts: int | None = None,
        queue_size: int = 2,
    ) -> None:
        if (url is None) == (host is None):
            raise ValueError("give exactly one of url or host")
        if password is not None and username is None:
            raise ValueError("a password needs a username")
        if url is not None:
            if not url.lower().startswith(("rtsp://", "rtsps://")):
                raise ValueError(f"not an rtsp:// URL: {redact_url(url)}")
            if username is not None:
                if "@" in urllib.parse.urlsplit(url).netloc:
                    raise ValueError("credentials given both in the URL and as arguments")
                url = _with_credentials(url, username, password)
        else:
            assert host is not None
            url = build_rtsp_url(host, port, path, username, password)
        self._url = _SecretUrl(url)
        self.source_id = source_id
        self.open_timeout_seconds = open_timeout_seconds
        self.read_timeout_seconds = read_timeout_seconds
        self.stall_timeout_seconds = stall_timeout_seconds
        self.reconnect_initial_seconds = reconnect_initial_seconds
        self.reconnect_max_seconds = reconnect_max_seconds
        self.reconnect_jitter = reconnect_jitter
        self.max_reconnect_attempts = max_reconnect_attempts
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max(1, queue_size))
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._start_mono = time.monotonic()
        self._connected = False
        self._frames_received = 0
        self._reconnect_count = 0
        self._stall_count = 0
        self._last_frame_time: datetime | None = None
        self._last_error: str | None = None
        self._recent: deque[float] = deque(maxlen=64)

    @property
    def redacted_url(self) -> str:
        """The URL with the password replaced by ``***``."""
        return self._url.redacted

    def __repr__(self) -> str:
        return f"RtspSource({self._url.redacted!r}, source_id={self.source_id!r})"

    # -- public API ----------------------------------------------------------------------

    def health(self) -> RtspHealth:
        """Return a snapshot of the connection state (thread-safe)."""
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._recent if now - t <= 2.0]
            fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) >= 2 else 0.0
            if recent and recent[-1] == recent[0]:
                fps = 0.0
            return RtspHealth(
                connected=self._connected,
                frames_received=self._frames_received,
                reconnect_count=self._reconnect_count,
                stall_count=self._stall_count,
                last_frame_time=self._last_frame_time,
                fps=fps,
                last_error=self._last_error,
            )

    def stop(self) -> None:
        """Ask the source to end; returns at once (see the class docstring)."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the background thread to exit; return whether it did."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def frames(self) -> Iterator[Frame]:
        """Yield frames until stopped; iterate once per source.

        Raises:
            RtspAuthError: the server refused the credentials.
            SourceError: ``max_reconnect_attempts`` was exhausted.
            RuntimeError: :meth:`frames` was called a second time.
        """
        if self._thread is not None:
            raise RuntimeError(f"{self!r}: frames() can be iterated only once")
        self._thread = threading.Thread(
            target=self._run, name=f"rtsp-{self.source_id}", daemon=True
        )
        self._thread.start()
        try:
            while not self._stop.is_set():
                try:
                    item = self._queue.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    continue
                if item is _END:
                    return
                if isinstance(item, SourceError):
                    # A fresh exception, raised here: no chained FFmpeg error (whose
                    # message holds the unredacted URL) travels with it.
                    raise type(item)(str(item))
                assert isinstance(item, Frame)
                yield item
        finally:
            self._stop.set()

    # -- background thread ---------------------------------------------------------------

    def _put(self, item: object) -> bool:
        """Hand an item to the consumer; ``False`` when stopped meanwhile."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _set_error(self, message: str) -> None:
        with self._lock:
            self._last_error = message
            self._connected = False

    def _run(self) -> None:
        failures = 0  # consecutive attempts that produced no frame, for the backoff
        attempts = 0
        try:
            while not self._stop.is_set():
                if attempts > 0:
                    with self._lock:
                        self._reconnect_count += 1
                attempts += 1
                before = self._frames_received
                try:
                    self._session()
                except RtspAuthError as err:
                    self._set_error(str(err))
                    logger.error("%s", err)
                    self._put(err)
                    return
                except SourceError as err:
                    self._set_error(str(err))
                    pending_warning: str | None = str(err)
                else:
                    pending_warning = None
                if self._stop.is_set():
                    return
                failures = 0 if self._frames_received > before else failures + 1
                if (
                    self.max_reconnect_attempts is not None
                    and failures > self.max_reconnect_attempts
                ):
                    final = SourceError(
                        f"{self._url.redacted}: giving up after {failures} failed attempts"
                        f" ({self._last_error})"
                    )
                    logger.error("%s", final)
                    self._put(final)
                    return
                delay = min(
                    self.reconnect_max_seconds,
                    self.reconnect_initial_seconds * 2 ** max(0, failures - 1),
                )
                delay *= 1.0 - self.reconnect_jitter * random.random()
                limit = (
                    "until stopped"
                    if self.max_reconnect_attempts is None
                    else f"{self.max_reconnect_attempts - failures + 1} more time(s)"
                )
                if pending_warning is not None:
                    logger.warning("%s; retrying in %.1f s, %s", pending_warning, delay, limit)
                else:
                    logger.info("%s: reconnecting in %.2f s", self._url.redacted, delay)
                if self._stop.wait(delay):
                    return
        except Exception:  # a bug: logged with the redacted URL only
            logger.exception("%s: RTSP reader crashed", self._url.redacted)
            self._put(SourceError(f"{self._url.redacted}: RTSP reader crashed"))
        finally:
            with self._lock:
                self._connected = False
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(_END)

    def _describe(self, err: BaseException) -> str:
        """Describe an FFmpeg error without the URL it carries."""
        text = err.strerror if isinstance(err, av.FFmpegError) else None
        text = text or type(err).__name__
        return text.replace(self._url.reveal(), self._url.redacted)

    def _session(self) -> None:
        """Connect and read until stopped (returns) or broken (raises).

        Raises:
            RtspAuthError: refused credentials.
            SourceError: any other failure, including a stall (message redacted).
        """
        redacted = self._url.redacted
        logger.info("%s: connecting", redacted)
        message: str | None = None
        auth_failed = False
        try:
            container = av.open(
                self._url.reveal(),
                options={"rtsp_transport": "tcp"},
                timeout=(
                    self.open_timeout_seconds,
                    min(self.read_timeout_seconds, self.stall_timeout_seconds),
                ),
            )
        except av.HTTPUnauthorizedError as err:
            auth_failed = True
            message = self._describe(err)
        except (av.FFmpegError, OSError) as err:
            message = self._describe(err)
        if message is not None:
            # Raised outside the except block so no FFmpeg error (with the raw URL in its
            # arguments) is attached as __context__.
            if auth_failed:
                raise RtspAuthError(
                    f"RTSP login refused by {redacted} ({message}): check username and password"
                )
            raise SourceError(f"cannot open RTSP stream {redacted}: {message}")

        stalled = False
        try:
            if not container.streams.video:
                message = "no video stream"
            else:
                stream = container.streams.video[0]
                last = time.monotonic()
                for packet in container.demux(stream):
                    if self._stop.is_set():
                        return
                    try:
                        decoded = packet.decode()
                    except av.FFmpegError as err:  # a corrupt packet: skip it
                        logger.debug("%s: decode error: %s", redacted, self._describe(err))
                        decoded = []
                    for av_frame in decoded:
                        image = av_frame.to_ndarray(format="bgr24")
                        now = time.monotonic()
                        if not self._put(self._record(image, now)):
                            return
                        last = time.monotonic()  # waiting for the consumer is no stall
                    if time.monotonic() - last > self.stall_timeout_seconds:
                        stalled = True
                        break
                else:
                    message = "the stream ended"
        except av.FFmpegError as err:  # includes the read timeout (the watchdog)
            message = self._describe(err)
            stalled = True
        finally:
            with self._lock:
                self._connected = False
            with contextlib.suppress(Exception):
                container.close()
        if self._stop.is_set():
            return
        if stalled:
            with self._lock:
                self._stall_count += 1
            detail = f" ({message})" if message else ""
            raise SourceError(
                f"{redacted}: watchdog: no frame for {self.stall_timeout_seconds:g} s{detail}"
            )
        raise SourceError(f"{redacted}: {message}")

    def _record(self, image: np.ndarray[Any, Any], now: float) -> Frame:
        wall = _utc_now()
        with self._lock:
            index = self._frames_received
            self._frames_received += 1
            self._connected = True
            self._last_frame_time = wall
            self._last_error = None
            self._recent.append(now)
        if index == 0:
            logger.info("%s: first frame %dx%d", self._url.redacted, image.shape[1], image.shape[0])
        return Frame(
            image=image,
            index=index,
            pts_seconds=now - self._start_mono,
            wall_time=wall,
            source_id=self.source_id,
            live=True,
        )


# --------------------------------------------------------------------------------------
# Latest-frame reader
# --------------------------------------------------------------------------------------


class LatestFrameReader:
    """Read a live source in a background thread and keep only the newest frame.

    A one-slot buffer: a frame that arrives before the consumer took the previous one
    replaces it, and the replaced frame is counted in :attr:`dropped_frames`. The consumer
    therefore always gets the freshest frame. Errors of the source are re-raised by
    :meth:`frames` after the frames already buffered.

    Args:
        source: a live source (``source.live`` true).

    Raises:
        ValueError: the source is not live (batch reads must never drop frames).
    """

    live = True

    def __init__(self, source: FrameSource) -> None:
        if not source.live:
            raise ValueError(
                f"LatestFrameReader wraps live sources only; {source!r} is a batch read, "
                "whose frames must never be dropped"
            )
        self.source = source
        self._cond = threading.Condition()
        self._slot: Frame | None = None
        self._done = False
        self._error: BaseException | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped_frames = 0
        self.frames_read = 0

    def __repr__(self) -> str:
        return f"LatestFrameReader({self.source!r})"

    def _run(self) -> None:
        try:
            for frame in self.source.frames():
                with self._cond:
                    self.frames_read += 1
                    if self._slot is not None:
                        self.dropped_frames += 1
                    self._slot = frame
                    self._cond.notify_all()
                if self._stopped.is_set():
                    break
        except BaseException as err:  # re-raised in the consumer's thread
            with self._cond:
                self._error = err
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def frames(self) -> Iterator[Frame]:
        """Yield the newest frame each time the consumer asks, until the source ends.

        Raises:
            SourceError: whatever the wrapped source raised.
            RuntimeError: called a second time.
        """
        if self._thread is not None:
            raise RuntimeError(f"{self!r}: frames() can be iterated only once")
        self._thread = threading.Thread(target=self._run, name="latest-frame", daemon=True)
        self._thread.start()
        try:
            while True:
                with self._cond:
                    while self._slot is None and not self._done and not self._stopped.is_set():
                        self._cond.wait(_POLL_SECONDS)
                    frame, self._slot = self._slot, None
                    if frame is None:
                        if self._error is not None and not self._stopped.is_set():
                            raise self._error
                        return
                yield frame
        finally:
            self.stop(timeout=0)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the wrapped source and wait up to ``timeout`` seconds for the thread."""
        self._stopped.set()
        self.source.stop()
        with self._cond:
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and timeout > 0 and thread is not threading.current_thread():
            thread.join(timeout)
