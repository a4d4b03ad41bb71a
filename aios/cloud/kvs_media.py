"""Frames of a Kinesis Video stream, read with ``GetMedia`` and decoded with PyAV as they arrive.

A fleet camera analysed in the cloud (cloud placement) reaches the GPU stream worker through
Kinesis Video Streams: its connector sends the camera's video with ``PutMedia`` (MKV
fragments) to the stream named :func:`kvs_stream_name`, and the worker reads it back with
:class:`KvsMediaSource`:

1. ``GetDataEndpoint(StreamName, APIName="GET_MEDIA")`` on the ``kinesisvideo`` control
   plane gives the stream's data endpoint;
2. ``GetMedia(StreamName, StartSelector)`` on that endpoint (``kinesis-video-media``)
   answers with a chunked HTTP body: the stream's MKV fragments one after the other, each a
   complete MKV segment (EBML header, tracks, tags, clusters) as the producer sent it, with
   the service's tags added (Kinesis Video Streams developer guide, "GetMedia" and
   "Kinesis Video Streams data model");
3. the bytes are handed to PyAV (FFmpeg's Matroska demuxer) while they arrive, through a
   non-seekable reader; FFmpeg reads the concatenated segments as one stream, and each
   decoded frame keeps its **producer timestamp**: the block's timecode, absolute
   milliseconds since the Unix epoch (timecode scale 1 ms) as ``PutMedia`` with
   ``FragmentTimecodeType=ABSOLUTE`` stores them. :attr:`Frame.wall_time
   <aios.vision.types.Frame.wall_time>` is that time (UTC), ``pts_seconds`` the seconds since
   the first frame the source delivered.

``StartSelector`` is ``NOW`` (the newest data from now on), or ``PRODUCER_TIMESTAMP`` from a
given time. Every socket read is bounded (``read_timeout_seconds``), a watchdog drops a
connection that delivers no frame for ``stall_timeout_seconds``, and a lost connection is
opened again with exponential backoff and jitter — from the producer timestamp of the last
frame delivered when that is recent (:data:`RESUME_WINDOW_SECONDS`), frames up to it being
skipped, so a cut neither repeats nor loses frames; else from ``NOW``.

Live video arrives a fragment at a time (a burst of frames); with ``pace`` the source hands
frames on at the producer's rhythm (a playout clock anchored at the first frame, re-anchored
when it falls behind by :data:`MAX_PACING_LAG_SECONDS`), so latest-frame consumers do not
drop the frames of a burst.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import av

from aios.vision.sources import SourceError
from aios.vision.types import Frame

log = logging.getLogger(__name__)

STREAM_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_.-]{1,256}$")
"""A Kinesis Video stream name (``CreateStream`` API reference: 1–256 of ``a-zA-Z0-9_.-``)."""

GET_MEDIA = "GET_MEDIA"
"""``APIName`` of ``GetDataEndpoint`` for ``GetMedia``."""

START_NOW = "NOW"
START_PRODUCER_TIMESTAMP = "PRODUCER_TIMESTAMP"

RESUME_WINDOW_SECONDS = 60.0
"""After a lost connection, reading resumes at the last frame delivered when that frame is at
most this old (by the local clock); older, it starts at ``NOW`` (a live analysis catches up
rather than replaying a long outage)."""

MAX_PACING_LAG_SECONDS = 1.0
"""With pacing, a frame later than its playout time by more than this re-anchors the clock
(the consumer or the network fell behind: hand frames on at once instead of accumulating
delay)."""

ABSOLUTE_TIME_FLOOR = 946_684_800.0
"""2000-01-01T00:00:00Z as Unix seconds: a block time before it is a relative timecode."""

PRODUCER_TIMESTAMP_TAG = "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP"
"""The fragment tag Kinesis Video adds with the fragment's producer timestamp (seconds)."""

_FATAL_ERRORS = frozenset(
    {
        "ResourceNotFoundException",
        "NotAuthorizedException",
        "AccessDeniedException",
        "InvalidArgumentException",
        "UnrecognizedClientException",
    }
)
"""Error codes for which reconnecting cannot help (the stream or the rights are missing)."""


def kvs_stream_name(name_prefix: str, stage: str, connector_id: str, camera_id: str) -> str:
    """The Kinesis Video stream of a fleet camera:
    ``<name_prefix>-<stage>-<connector_id>.<camera_id>``.

    The connector writes (``PutMedia``) and the cloud stream worker reads (``GetMedia``) the
    stream of this name. The connector's part comes first and verbatim, then ``.``, which
    IoT thing names cannot hold: the upload role (``template.yaml``, ``KvsDeviceRole``) lets
    a connector write only the streams named
    ``<name_prefix>-<stage>-${credentials-iot:ThingName}.*``, and no connector's id followed
    by ``.`` starts another connector's stream names. Camera ids may hold ``:``, which
    stream names may not: it becomes ``_``, and the name then ends with ``-`` and 8 hex
    digits of the SHA-256 of the id, so two ids never share a stream.

    Raises:
        ValueError: a part is empty, the connector id holds ``:`` or ``.`` (it must appear
            verbatim, and ``.`` ends it), or the name is not a valid stream name
            (:data:`STREAM_NAME_PATTERN`: at most 256 of ``a-zA-Z0-9_.-``).
    """
    if not name_prefix or not stage or not connector_id or not camera_id:
        raise ValueError(
            "a stream name needs a name prefix, a stage, a connector id and a camera id"
        )
    if ":" in connector_id or "." in connector_id:
        raise ValueError(
            f"connector {connector_id!r}: a connector id with ':' or '.' cannot start a "
            "Kinesis Video stream name; give the connector an id of letters, digits, '_' and '-'"
        )
    safe = camera_id.replace(":", "_")
    if safe != camera_id:
        safe += "-" + hashlib.sha256(camera_id.encode()).hexdigest()[:8]
    name = f"{name_prefix}-{stage}-{connector_id}.{safe}"
    if STREAM_NAME_PATTERN.fullmatch(name) is None:
        raise ValueError(
            f"{name!r} is not a Kinesis Video stream name (1-256 letters, digits, '_', '.', '-')"
        )
    return name


class _Stalled(Exception):
    """No frame within the watchdog's time."""


class _Stopped(Exception):
    """The source was asked to stop."""


class _BodyReader:
    """The ``GetMedia`` payload as PyAV reads it: ``read(n)`` only (not seekable, so FFmpeg
    never seeks), returning what one socket read gives, never more than ``n`` bytes.

    Every read checks the stop flag and the watchdog (``last_frame``: a one-item list with
    the monotonic time of the newest frame, updated by the decoder loop).
    """

    def __init__(
        self,
        body: Any,
        stopping: threading.Event,
        last_frame: list[float],
        stall_seconds: float,
    ) -> None:
        self._body = body
        raw = getattr(body, "_raw_stream", None)  # urllib3's response: read1 returns early
        self._read1: Callable[[int], bytes] | None = getattr(raw, "read1", None)
        self._stopping = stopping
        self._last_frame = last_frame
        self._stall_seconds = stall_seconds
        self.bytes_read = 0
        self.error: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        if self._stopping.is_set():
            self.error = _Stopped()
            return b""
        if time.monotonic() - self._last_frame[0] > self._stall_seconds:
            self.error = _Stalled()
            return b""
        n = size if size and size > 0 else 65536
        try:
            data = self._read1(n) if self._read1 is not None else self._body.read(n)
        except BaseException as err:  # a reset or a read timeout: the session ends
            self.error = err
            return b""
        self.bytes_read += len(data)
        return bytes(data)


@dataclass(frozen=True)
class KvsSourceStats:
    """Counters of a :class:`KvsMediaSource`.

    Attributes:
        connections: ``GetMedia`` responses opened.
        frames: frames delivered.
        skipped: frames decoded again after a reconnection and skipped (already delivered).
        last_producer_time: producer timestamp of the newest frame delivered (UTC).
        last_error: the latest problem (no credentials: the request is signed, never logged).
    """

    connections: int
    frames: int
    skipped: int
    last_producer_time: datetime | None
    last_error: str | None


def _error_code(err: BaseException) -> str | None:
    response = getattr(err, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def _describe(err: BaseException) -> str:
    code = _error_code(err)
    if code:
        return code
    if isinstance(err, av.FFmpegError):
        return f"decoding failed: {err.strerror or type(err).__name__}"
    return type(err).__name__


class KvsMediaSource:
    """A live :class:`~aios.vision.types.FrameSource` reading a Kinesis Video stream.

    Args:
        stream_name: the stream (:func:`kvs_stream_name` for a fleet camera).
        source_id: written into every frame's ``source_id``.
        start: read from this producer time (``PRODUCER_TIMESTAMP``); ``None``: from now
            (``NOW``).
        session: the boto3 session the clients come from (default: a new one, region and
            credentials from the environment).
        endpoint_url: the ``kinesisvideo`` control-plane endpoint (``None``: the region's).
        connect_timeout_seconds: bound of a connection's set-up, seconds.
        read_timeout_seconds: bound of one socket read, seconds.
        stall_timeout_seconds: watchdog: a connection that gives no frame for this long is
            dropped and opened again, seconds.
        reconnect_initial_seconds: first wait after a failure; doubles per failure in a row
            up to ``reconnect_max_seconds``, less up to 20 % jitter.
        max_reconnect_attempts: failures in a row before :class:`SourceError`; ``None``:
            retry until stopped.
        pace: hand frames on at the producer's rhythm (see the module docstring).
        probe_bytes: bytes FFmpeg may read to recognise the stream before the first frame.

    Raises (from :meth:`frames`):
        SourceError: the stream does not exist, access is refused, or
            ``max_reconnect_attempts`` failures in a row.
    """

    live = True

    def __init__(
        self,
        stream_name: str,
        *,
        source_id: str,
        start: datetime | None = None,
        session: Any | None = None,
        endpoint_url: str | None = None,
        connect_timeout_seconds: float = 5.0,
        read_timeout_seconds: float = 5.0,
        stall_timeout_seconds: float = 15.0,
        reconnect_initial_seconds: float = 0.5,
        reconnect_max_seconds: float = 30.0,
        max_reconnect_attempts: int | None = None,
        pace: bool = True,
        probe_bytes: int = 32 * 1024,
    ) -> None:
        if STREAM_NAME_PATTERN.fullmatch(stream_name) is None:
            raise ValueError(f"{stream_name!r} is not a Kinesis Video stream name")
        if start is not None and (start.tzinfo is None or start.utcoffset() is None):
            raise ValueError("start must be a UTC time (timezone-aware)")
        self.stream_name = stream_name
        self.source_id = source_id
        self.start = start
        self._session = session
        self.endpoint_url = endpoint_url
        self.connect_timeout_seconds = connect_timeout_seconds
        self.read_timeout_seconds = read_timeout_seconds
        self.stall_timeout_seconds = stall_timeout_seconds
        self.reconnect_initial_seconds = reconnect_initial_seconds
        self.reconnect_max_seconds = reconnect_max_seconds
        self.max_reconnect_attempts = max_reconnect_attempts
        self.pace = pace
        self.probe_bytes = probe_bytes
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._body: Any | None = None
        self._connections = 0
        self._frames = 0
        self._skipped = 0
        self._last_time: float | None = None
        self._last_time_mono = 0.0
        self._first_time: float | None = None
        self._last_error: str | None = None

    def __repr__(self) -> str:
        return f"KvsMediaSource({self.stream_name!r})"

    def stats(self) -> KvsSourceStats:
        """The source's counters now (thread-safe)."""
        with self._lock:
            last = self._last_time
            return KvsSourceStats(
                connections=self._connections,
                frames=self._frames,
                skipped=self._skipped,
                last_producer_time=None if last is None else datetime.fromtimestamp(last, UTC),
                last_error=self._last_error,
            )

    def stop(self) -> None:
        """End :meth:`frames` (within one bounded read); safe from any thread, repeatedly."""
        self._stopping.set()
        with self._lock:
            body = self._body
        if body is not None:
            try:
                body.close()
            except Exception:  # closing a response another thread reads: best effort
                log.debug("%s: closing the response failed", self.stream_name, exc_info=True)

    # -- clients -------------------------------------------------------------------------

    def _boto_session(self) -> Any:
        if self._session is None:
            import boto3

            self._session = boto3.session.Session()
        return self._session

    def _config(self) -> Any:
        from botocore.config import Config

        return Config(
            connect_timeout=self.connect_timeout_seconds,
            read_timeout=self.read_timeout_seconds,
            retries={"max_attempts": 2, "mode": "standard"},
        )

    def _selector(self) -> dict[str, Any]:
        with self._lock:
            last, last_mono = self._last_time, self._last_time_mono
        if last is not None and time.monotonic() - last_mono <= RESUME_WINDOW_SECONDS:
            return {
                "StartSelectorType": START_PRODUCER_TIMESTAMP,
                "StartTimestamp": datetime.fromtimestamp(last, UTC),
            }
        if last is None and self.start is not None:
            return {"StartSelectorType": START_PRODUCER_TIMESTAMP, "StartTimestamp": self.start}
        return {"StartSelectorType": START_NOW}

    # -- reading -------------------------------------------------------------------------

    def frames(self) -> Iterator[Frame]:
        """Yield the stream's frames until stopped (reconnecting as the module says).

        Raises:
            SourceError: see the class docstring.
        """
        failures = 0
        while not self._stopping.is_set():
            delivered = False
            try:
                for frame in self._read_session():
                    delivered = True
                    failures = 0
                    yield frame
                if self._stopping.is_set():
                    return
                problem = "the stream ended"
            except _Stopped:
                return
            except Exception as err:
                if self._stopping.is_set():
                    return
                code = _error_code(err)
                problem = _describe(err)
                if code in _FATAL_ERRORS:
                    self._note(problem)
                    raise SourceError(
                        f"Kinesis Video stream {self.stream_name!r}: {problem}"
                    ) from None
            self._note(problem)
            if not delivered:
                failures += 1
            if self.max_reconnect_attempts is not None and failures > self.max_reconnect_attempts:
                raise SourceError(
                    f"Kinesis Video stream {self.stream_name!r}: {problem} "
                    f"({failures} failures in a row)"
                )
            delay = min(
                self.reconnect_max_seconds,
                self.reconnect_initial_seconds * 2 ** max(0, failures - 1),
            )
            delay *= 1.0 - 0.2 * random.random()
            log.warning(
                "Kinesis Video stream %s: %s; reconnecting in %.2f s",
                self.stream_name,
                problem,
                delay,
            )
            if self._stopping.wait(delay):
                return

    def _note(self, problem: str) -> None:
        with self._lock:
            self._last_error = problem

    def _read_session(self) -> Iterator[Frame]:
        """One ``GetMedia`` response, decoded until it ends (returns) or fails (raises)."""
        session = self._boto_session()
        config = self._config()
        control = session.client("kinesisvideo", endpoint_url=self.endpoint_url, config=config)
        endpoint = control.get_data_endpoint(StreamName=self.stream_name, APIName=GET_MEDIA)[
            "DataEndpoint"
        ]
        media = session.client("kinesis-video-media", endpoint_url=endpoint, config=config)
        selector = self._selector()
        response = media.get_media(StreamName=self.stream_name, StartSelector=selector)
        body = response["Payload"]
        with self._lock:
            self._body = body
            self._connections += 1
            resume_after = self._last_time
        # the first fragment may begin before the start asked for: its earlier frames go
        start_at = self.start.timestamp() if resume_after is None and self.start else None
        if self._stopping.is_set():
            body.close()
            return
        log.info(
            "Kinesis Video stream %s: reading from %s",
            self.stream_name,
            selector["StartSelectorType"],
        )
        last_frame = [time.monotonic()]
        reader = _BodyReader(body, self._stopping, last_frame, self.stall_timeout_seconds)
        container: Any = None
        try:
            try:
                container = av.open(
                    reader,
                    mode="r",
                    format="matroska",
                    options={"probesize": str(max(32, self.probe_bytes))},
                )
            except av.FFmpegError:
                if reader.error is not None:
                    raise reader.error from None
                raise
            if not container.streams.video:
                raise SourceError("the stream has no video track")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            nominal_fps = float(rate) if rate else None
            base = _tag_time(container.metadata)
            anchor: tuple[float, float] | None = None
            for packet in container.demux(stream):
                if self._stopping.is_set():
                    return
                try:
                    decoded = packet.decode()
                except av.FFmpegError as err:  # a damaged packet: skip it
                    log.debug("%s: %s", self.stream_name, _describe(err))
                    decoded = []
                for av_frame in decoded:
                    if av_frame.pts is None or av_frame.time_base is None:
                        continue
                    produced = float(av_frame.pts * av_frame.time_base)
                    if produced < ABSOLUTE_TIME_FLOOR and base is not None:
                        produced += base  # a relative timecode: from the fragment's tag
                    last_frame[0] = time.monotonic()
                    if (resume_after is not None and produced <= resume_after + 1e-4) or (
                        start_at is not None and produced < start_at - 1e-4
                    ):
                        with self._lock:
                            self._skipped += 1
                        continue
                    image = av_frame.to_ndarray(format="bgr24")
                    if self.pace:
                        anchor = self._pace(anchor, produced)
                        if self._stopping.is_set():
                            return
                    yield self._frame(image, produced, nominal_fps)
            if reader.error is not None and not isinstance(reader.error, _Stopped):
                raise reader.error
        except av.FFmpegError:
            if reader.error is not None and not isinstance(reader.error, _Stopped):
                raise reader.error from None
            if self._stopping.is_set():
                return
            raise
        finally:
            with self._lock:
                self._body = None
            if container is not None:
                try:
                    container.close()
                except Exception:
                    log.debug("%s: closing the demuxer failed", self.stream_name, exc_info=True)
            try:
                body.close()
            except Exception:
                log.debug("%s: closing the response failed", self.stream_name, exc_info=True)

    def _pace(self, anchor: tuple[float, float] | None, produced: float) -> tuple[float, float]:
        now = time.monotonic()
        if anchor is None:
            return (now, produced)
        due = anchor[0] + (produced - anchor[1])
        if now - due > MAX_PACING_LAG_SECONDS or due - now > MAX_PACING_LAG_SECONDS * 5:
            return (now, produced)  # behind (or a jump in the producer's clock): re-anchor
        if due > now:
            self._stopping.wait(due - now)
        return anchor

    def _frame(self, image: Any, produced: float, nominal_fps: float | None) -> Frame:
        with self._lock:
            if self._first_time is None:
                self._first_time = produced
            index = self._frames
            self._frames += 1
            self._last_time = produced
            self._last_time_mono = time.monotonic()
            self._last_error = None
            first = self._first_time
        if index == 0:
            log.info(
                "Kinesis Video stream %s: first frame %dx%d",
                self.stream_name,
                image.shape[1],
                image.shape[0],
            )
        return Frame(
            image=image,
            index=index,
            pts_seconds=produced - first,
            wall_time=datetime.fromtimestamp(produced, UTC),
            source_id=self.source_id,
            live=True,
            nominal_fps=nominal_fps,
        )


def _tag_time(metadata: Any) -> float | None:
    """The producer timestamp tag of the first fragment (seconds), if present and numeric."""
    raw = metadata.get(PRODUCER_TIMESTAMP_TAG) if hasattr(metadata, "get") else None
    try:
        return None if raw is None else float(raw)
    except (TypeError, ValueError):
        return None
