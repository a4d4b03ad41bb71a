"""Video upload to Amazon Kinesis Video Streams with ``PutMedia``.

A camera marked ``kvs_upload`` in the configuration is encoded and streamed to its Kinesis
video stream (``<name_prefix>-<stage>-<camera id>``, :func:`stream_name`) for cloud
placement of stream plans and for the archive:

- **Encoding** (:class:`FragmentEncoder`): frames → H.264 (libx264 through PyAV, no
  B-frames) in one Matroska stream. A fragment is one MKV cluster; a keyframe is forced at
  the start of each fragment (every ``fragment_seconds``) and the muxer's ``dash`` mode
  starts a cluster exactly at each keyframe. Timestamps are absolute producer times in
  milliseconds since the Unix epoch (Matroska's default ``TimestampScale`` of 1 ms), from
  each frame's capture time (``Frame.wall_time``), strictly increasing.
  :class:`ClusterSplitter` cuts the muxer's byte stream into the stream header (EBML
  header, Segment, Info, Tracks) and the clusters (Matroska, RFC 9559).
- **Sending** (:class:`KvsUploader`): ``GetDataEndpoint(APIName=PUT_MEDIA)``, then
  ``POST <endpoint>/putMedia`` with the headers ``x-amzn-stream-name``,
  ``x-amzn-fragment-timecode-type: ABSOLUTE`` and ``x-amzn-producer-start-timestamp``
  (seconds since the epoch), a chunked body (the header, then each fragment as it is
  ready), signed with Signature Version 4 for the service ``kinesisvideo``
  (botocore's ``SigV4Auth``; the body is streamed, so its hash is ``UNSIGNED-PAYLOAD``).
  The response is read while the body is still being sent (h11): acknowledgements
  ``{"EventType": "BUFFERING"|"RECEIVED"|"PERSISTED"|"ERROR"|"IDLE",
  "FragmentTimecode": ms, "FragmentNumber": "...", "ErrorId": n}`` (Kinesis Video
  Streams API reference, PutMedia). A fragment is released on ``RECEIVED`` or
  ``PERSISTED``; an ``ERROR`` is logged, counted and passed to ``on_error`` (the
  fragment is not sent again: the service refused its content).
- **Bounded, resilient**: fragments wait in a buffer of at most ``buffer_seconds`` of
  video (the oldest are dropped and counted beyond that); a lost connection is retried
  with exponential backoff and jitter (:func:`connector.link.backoff_delay`), and the new
  session sends the stream header again, then every fragment not yet acknowledged.
- **Credentials** (:class:`IotCredentials`): temporary credentials from the AWS IoT
  credentials provider — ``GET https://<credentials endpoint>/role-aliases/<alias>/
  credentials`` over mutual TLS with the connector's certificate and the header
  ``x-amzn-iot-thingname`` (AWS IoT Core developer guide, "Authorizing direct calls to
  AWS services using AWS IoT Core credential provider") — refreshed before they expire;
  or (:class:`EnvironmentCredentials`) the standard AWS chain.

Secrets (keys, session tokens, signatures) never reach a log line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import select
import socket
import ssl
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import h11

from aios.cloud.kvs_media import kvs_stream_name
from aios.vision.types import BGRImage, FrameSource
from connector.config import CameraConfig, ConnectorConfig, KvsConfig, TlsConfig
from connector.link import backoff_delay

log = logging.getLogger(__name__)

SERVICE = "kinesisvideo"
"""SigV4 service name of Kinesis Video Streams (control and data plane)."""

PUT_MEDIA_API = "PUT_MEDIA"
"""``APIName`` of ``GetDataEndpoint`` for the ingestion endpoint."""

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
"""SigV4 payload hash of a body that is streamed (not known when the request is signed)."""

RELEASE_EVENTS = frozenset({"RECEIVED", "PERSISTED"})
"""Acknowledgements after which a fragment is no longer kept for resending."""

IDLE_END_SECONDS = 20.0
"""A session with nothing to send for this long is ended (Kinesis Video closes a PutMedia
connection after 30 s without data) and opened again with the next fragment."""

IO_TIMEOUT_SECONDS = 10.0
"""Bound of one connect, TLS handshake or send."""

# Matroska element ids (RFC 9559, section 5.1)
EBML_ID = 0x1A45DFA3
SEGMENT_ID = 0x18538067
CLUSTER_ID = 0x1F43B675
TIMESTAMP_ID = 0xE7
SIMPLE_BLOCK_ID = 0xA3
BLOCK_GROUP_ID = 0xA0
_UNKNOWN_SIZE_8 = bytes.fromhex("01FFFFFFFFFFFFFF")


def stream_name(name_prefix: str, stage: str, connector_id: str, camera_id: str) -> str:
    """The Kinesis video stream of a camera of this connector:
    ``<name_prefix>-<stage>-<connector id>-<camera id>``, the cloud side's naming
    (:func:`aios.cloud.kvs_media.kvs_stream_name`: the stream worker reads the stream of the
    same name, and the upload role allows only the connector's own streams).

    Raises:
        ValueError: not a valid stream name.
    """
    return kvs_stream_name(name_prefix, stage, connector_id, camera_id)


# --------------------------------------------------------------------------- Matroska


class MkvError(ValueError):
    """The byte stream is not the Matroska the splitter expects."""


def _vint(data: bytes | bytearray, pos: int, *, keep_marker: bool) -> tuple[int, int] | None:
    """An EBML variable-size integer at ``pos``: ``(value, length)``; ``None`` when the
    bytes are not all there yet. Size values of all ones (unknown size) are returned as -1.

    Raises:
        MkvError: the first byte is 0 (longer than 8 bytes).
    """
    if pos >= len(data):
        return None
    first = data[pos]
    if first == 0:
        raise MkvError(f"invalid EBML variable-size integer at byte {pos}")
    length = 9 - first.bit_length()
    if pos + length > len(data):
        return None
    raw = int.from_bytes(data[pos : pos + length], "big")
    if keep_marker:
        return raw, length
    value = raw & ((1 << (7 * length)) - 1)
    if value == (1 << (7 * length)) - 1:
        return -1, length
    return value, length


def _element(data: bytes | bytearray, pos: int) -> tuple[int, int, int] | None:
    """``(id, header length, data size)`` of the element at ``pos`` (size -1: unknown),
    or ``None`` when its header is incomplete."""
    ident = _vint(data, pos, keep_marker=True)
    if ident is None:
        return None
    size = _vint(data, pos + ident[1], keep_marker=False)
    if size is None:
        return None
    return ident[0], ident[1] + size[1], size[0]


def cluster_info(cluster: bytes) -> tuple[int, int]:
    """``(timestamp, blocks)`` of one complete Cluster element: its Timestamp (in
    TimestampScale units: ms here) and its number of SimpleBlocks and BlockGroups (frames).

    Raises:
        MkvError: not a cluster, or it has no Timestamp.
    """
    head = _element(cluster, 0)
    if head is None or head[0] != CLUSTER_ID:
        raise MkvError("not a Matroska Cluster element")
    pos, end = head[1], len(cluster)
    timestamp: int | None = None
    blocks = 0
    while pos < end:
        child = _element(cluster, pos)
        if child is None or child[2] < 0:
            raise MkvError("truncated or unknown-size element inside a Cluster")
        ident, header, size = child
        if ident == TIMESTAMP_ID:
            timestamp = int.from_bytes(cluster[pos + header : pos + header + size], "big")
        elif ident in (SIMPLE_BLOCK_ID, BLOCK_GROUP_ID):
            blocks += 1
        pos += header + size
    if timestamp is None:
        raise MkvError("the Cluster has no Timestamp element")
    return timestamp, blocks


@dataclass(frozen=True)
class Fragment:
    """One MKV cluster = one Kinesis Video fragment.

    Attributes:
        timecode_ms: the cluster's Timestamp: producer time of its first frame, ms since
            the Unix epoch (the ``FragmentTimecode`` of its acknowledgements).
        frames: frames (blocks) in it.
        data: the Cluster element's bytes.
        last_ms: the time of its last frame, ms (known to the encoder; 0 if not).
    """

    timecode_ms: int
    frames: int
    data: bytes
    last_ms: int = 0

    @property
    def duration_ms(self) -> int:
        """Milliseconds from its first to its last frame."""
        return max(0, self.last_ms - self.timecode_ms)


class ClusterSplitter:
    """Cuts a Matroska byte stream into its header and its clusters (incrementally).

    The header is everything before the first Cluster — EBML header, the Segment's ID with
    an unknown size (a stream has no end), Info, Tracks… — and is sent at the start of
    every PutMedia session. Elements after the clusters (Cues, Tags written by the
    trailer) are dropped. Clusters must have a known size (FFmpeg's Matroska muxer writes
    each cluster whole when it ends it).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._header = bytearray()
        self.header: bytes | None = None
        self._in_segment = False

    def feed(self, data: bytes) -> list[Fragment]:
        """Add bytes; return the clusters completed by them.

        Raises:
            MkvError: not Matroska, or a cluster of unknown size.
        """
        self._buffer += data
        out: list[Fragment] = []
        while True:
            element = _element(self._buffer, 0)
            if element is None:
                return out
            ident, head, size = element
            if not self._in_segment:
                if ident == EBML_ID and size >= 0:
                    if len(self._buffer) < head + size:
                        return out
                    self._header += self._buffer[: head + size]
                    del self._buffer[: head + size]
                    continue
                if ident == SEGMENT_ID:
                    # the Segment's children follow: keep its ID (4 bytes), make its size
                    # unknown (a stream has no end)
                    self._header += self._buffer[:4] + _UNKNOWN_SIZE_8
                    del self._buffer[:head]
                    self._in_segment = True
                    continue
                raise MkvError(f"expected the EBML header or a Segment, found id {ident:#x}")
            if size < 0:
                raise MkvError(f"element {ident:#x} of unknown size: not supported")
            if len(self._buffer) < head + size:
                return out
            chunk = bytes(self._buffer[: head + size])
            del self._buffer[: head + size]
            if ident == CLUSTER_ID:
                if self.header is None:
                    self.header = bytes(self._header)
                timestamp, blocks = cluster_info(chunk)
                out.append(Fragment(timestamp, blocks, chunk))
            elif self.header is None:
                self._header += chunk


class _Sink:
    """A write-only, non-seekable file for PyAV's muxer, feeding a :class:`ClusterSplitter`."""

    def __init__(self, splitter: ClusterSplitter) -> None:
        self.splitter = splitter
        self.fragments: list[Fragment] = []

    def write(self, data: bytes) -> int:
        self.fragments.extend(self.splitter.feed(bytes(data)))
        return len(data)

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


def fit_size(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """The encoded size of a ``width``×``height`` image: scaled down (never up) to fit
    ``max_width``×``max_height`` with its aspect ratio, even dimensions (4:2:0 chroma)."""
    scale = min(1.0, max_width / width, max_height / height)
    w = max(2, int(width * scale) // 2 * 2)
    h = max(2, int(height * scale) // 2 * 2)
    return w, h


class FragmentEncoder:
    """Frames → H.264 in Matroska, cut into fragments (one cluster each).

    Args:
        fragment_seconds: a keyframe (and so a new cluster) is forced at the first frame
            at least this long after the current fragment's first frame.
        max_width, max_height: larger images are scaled down (aspect kept).
        bitrate_kbps: the H.264 target bit rate.

    Use :meth:`add` for each frame, :meth:`close` at the end (it returns the last
    fragment). :attr:`header` is the stream header once the first fragment is out.
    """

    def __init__(
        self,
        *,
        fragment_seconds: float = 2.0,
        max_width: int = 1280,
        max_height: int = 720,
        bitrate_kbps: int = 1000,
    ) -> None:
        self.fragment_ms = round(fragment_seconds * 1000)
        self.max_width = max_width
        self.max_height = max_height
        self.bitrate_kbps = bitrate_kbps
        self._splitter = ClusterSplitter()
        self._sink = _Sink(self._splitter)
        self._container: Any = None
        self._stream: Any = None
        self._size: tuple[int, int] | None = None
        self._last_ms: int | None = None
        self._fragment_start: int | None = None
        self._times: deque[int] = deque()  # frame times of fragments not yet cut
        self.frames = 0

    @property
    def header(self) -> bytes | None:
        """EBML header + Segment (unknown size) + Info + Tracks; ``None`` before the first
        fragment."""
        return self._splitter.header

    @property
    def size(self) -> tuple[int, int] | None:
        """The encoded (width, height), once the first frame is in."""
        return self._size

    def _open(self, width: int, height: int) -> None:
        import av

        self._size = fit_size(width, height, self.max_width, self.max_height)
        self._container = av.open(
            self._sink,
            mode="w",
            format="matroska",
            # live: no seeking back (no Cues, no durations); dash: a cluster exactly at
            # each keyframe (FFmpeg matroskaenc options)
            options={"live": "1", "dash": "1", "cluster_time_limit": "11000"},
        )
        stream = self._container.add_stream(
            "libx264",
            options={
                "preset": "veryfast",
                "tune": "zerolatency",  # no B-frames, no look-ahead: each frame out at once
                "keyint": "infinite",  # keyframes only where forced: fragment starts
                "scenecut": "0",
                "forced-idr": "1",
            },
        )
        stream.width, stream.height = self._size
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = self.bitrate_kbps * 1000
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.time_base = Fraction(1, 1000)
        self._stream = stream

    def add(self, image: BGRImage, time_ms: int) -> list[Fragment]:
        """Encode one frame captured at ``time_ms`` (ms since the epoch; a time not after
        the previous frame's is moved 1 ms after it). Returns the fragments it completed.

        Raises:
            MkvError: the muxer's output could not be split (a bug).
        """
        import av

        if self._container is None:
            self._open(int(image.shape[1]), int(image.shape[0]))
        assert self._size is not None
        if self._last_ms is not None and time_ms <= self._last_ms:
            time_ms = self._last_ms + 1
        self._last_ms = time_ms
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame = frame.reformat(width=self._size[0], height=self._size[1], format="yuv420p")
        frame.pts = time_ms
        frame.time_base = Fraction(1, 1000)
        if self._fragment_start is None or time_ms - self._fragment_start >= self.fragment_ms:
            frame.pict_type = av.video.frame.PictureType.I
            self._fragment_start = time_ms
        self._times.append(time_ms)
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1
        return self._take()

    def close(self) -> list[Fragment]:
        """Flush the encoder and end the stream; return the last fragment(s)."""
        if self._container is None:
            return []
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self._container = None
        return self._take()

    def _take(self) -> list[Fragment]:
        out = []
        for fragment in self._sink.fragments:
            frame_times = [self._times.popleft() for _ in range(fragment.frames) if self._times]
            last = frame_times[-1] if frame_times else fragment.timecode_ms
            out.append(Fragment(fragment.timecode_ms, fragment.frames, fragment.data, last))
        self._sink.fragments.clear()
        return out


# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class Credentials:
    """AWS credentials for one signature (never logged)."""

    access_key: str
    secret_key: str
    token: str | None = None

    def __repr__(self) -> str:
        return f"Credentials(access_key={self.access_key[:4]}…)"


class CredentialSource(Protocol):
    """Where the uploader's AWS credentials come from."""

    def get(self) -> Credentials:
        """Current credentials (refreshed when near expiry).

        Raises:
            CredentialsError: none can be had now.
        """
        ...

    def invalidate(self) -> None:
        """The service refused the current ones: fetch new ones next time."""
        ...


class CredentialsError(RuntimeError):
    """No AWS credentials could be obtained (the message says why, without secrets)."""


class EnvironmentCredentials:
    """The standard AWS chain (``AWS_ACCESS_KEY_ID``…, shared files, instance role), as
    botocore resolves it (and refreshes it, for temporary credentials)."""

    def __init__(self) -> None:
        self._credentials: Any = None

    def get(self) -> Credentials:
        if self._credentials is None:
            import botocore.session

            self._credentials = botocore.session.get_session().get_credentials()
        if self._credentials is None:
            raise CredentialsError(
                "no AWS credentials in the environment (AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY, a profile or an instance role); or use kvs.credentials: iot"
            )
        frozen = self._credentials.get_frozen_credentials()
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)

    def invalidate(self) -> None:
        self._credentials = None


class IotCredentials:
    """Temporary credentials from the AWS IoT credentials provider for a role alias.

    ``GET https://<endpoint>/role-aliases/<role_alias>/credentials`` over mutual TLS (the
    thing's certificate and key), header ``x-amzn-iot-thingname: <thing>``; the answer is
    ``{"credentials": {"accessKeyId", "secretAccessKey", "sessionToken", "expiration"}}``.
    botocore's ``RefreshableCredentials`` fetches new ones before ``expiration``.

    Args:
        endpoint: the account's ``iot:CredentialProvider`` endpoint host (``host[:port]``).
        role_alias: the IoT role alias.
        thing_name: the thing the certificate is attached to (the connector id).
        tls: the connector's TLS files (``ca_file`` verifies the endpoint; ``cert_file``
            and ``key_file`` authenticate).
        timeout: seconds for one request.
    """

    def __init__(
        self,
        endpoint: str,
        role_alias: str,
        thing_name: str,
        tls: TlsConfig,
        *,
        ca_file: Path | None = None,
        timeout: float = IO_TIMEOUT_SECONDS,
    ) -> None:
        if tls.cert_file is None or tls.key_file is None:
            raise ValueError("the IoT credentials provider needs the certificate and key")
        self.url = (
            f"https://{endpoint}/role-aliases/{urllib.parse.quote(role_alias, safe='')}/credentials"
        )
        self.thing_name = thing_name
        self._tls = tls
        self._ca_file = ca_file or tls.ca_file
        self._timeout = timeout
        self._credentials: Any = None
        self._lock = threading.Lock()

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self._ca_file))
        assert self._tls.cert_file is not None and self._tls.key_file is not None
        context.load_cert_chain(str(self._tls.cert_file), str(self._tls.key_file))
        return context

    def fetch(self) -> dict[str, str]:
        """One request to the provider: botocore's credential metadata
        (``access_key``, ``secret_key``, ``token``, ``expiry_time``).

        Raises:
            CredentialsError: refused (status and the provider's message), unreachable,
                or an answer without credentials.
        """
        import httpx

        try:
            with httpx.Client(verify=self._context(), timeout=self._timeout) as client:
                response = client.get(self.url, headers={"x-amzn-iot-thingname": self.thing_name})
        except (httpx.HTTPError, OSError, ssl.SSLError) as err:
            raise CredentialsError(
                f"IoT credentials provider {self.url} unreachable: {type(err).__name__}: {err}"
            ) from err
        if response.status_code != 200:
            try:
                message = str(response.json().get("message", ""))[:200]
            except ValueError:
                message = response.text[:200]
            raise CredentialsError(
                f"IoT credentials provider refused (HTTP {response.status_code}: {message}); "
                "check the role alias, the policy's iot:AssumeRoleWithCertificate and that "
                "the certificate is attached to the thing"
            )
        try:
            creds = response.json()["credentials"]
            return {
                "access_key": creds["accessKeyId"],
                "secret_key": creds["secretAccessKey"],
                "token": creds["sessionToken"],
                "expiry_time": creds["expiration"],
            }
        except (ValueError, KeyError, TypeError) as err:
            raise CredentialsError(
                "the IoT credentials provider's answer has no credentials"
            ) from err

    def get(self) -> Credentials:
        from botocore.credentials import RefreshableCredentials

        with self._lock:
            if self._credentials is None:
                self._credentials = RefreshableCredentials.create_from_metadata(
                    metadata=self.fetch(),
                    refresh_using=self.fetch,
                    method="iot-credentials-provider",
                )
            try:
                frozen = self._credentials.get_frozen_credentials()
            except CredentialsError:
                raise
            except Exception as err:  # botocore wraps refresh failures
                self._credentials = None
                raise CredentialsError(f"refreshing IoT credentials failed: {err}") from err
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)

    def invalidate(self) -> None:
        with self._lock:
            self._credentials = None


def sign_put_media(
    url: str,
    stream: str,
    producer_start_ms: int,
    credentials: Credentials,
    region: str,
) -> list[tuple[str, str]]:
    """The headers of a PutMedia request to ``url`` (``https://host[:port]/putMedia``),
    signed with SigV4 (service ``kinesisvideo``, payload ``UNSIGNED-PAYLOAD``).

    Returns:
        ``(name, value)`` pairs: ``host``, the ``x-amzn-*`` parameters,
        ``x-amz-content-sha256``, ``X-Amz-Date``, ``X-Amz-Security-Token`` (temporary
        credentials) and ``Authorization``. ``transfer-encoding`` is added by the caller
        (not signed).
    """
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as BotoCredentials

    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port and parts.port != (443 if parts.scheme == "https" else 80):
        host += f":{parts.port}"
    request = AWSRequest(
        method="POST",
        url=url,
        headers={
            "host": host,
            "x-amzn-stream-name": stream,
            "x-amzn-fragment-timecode-type": "ABSOLUTE",
            "x-amzn-producer-start-timestamp": f"{producer_start_ms / 1000:.3f}",
            "x-amz-content-sha256": UNSIGNED_PAYLOAD,
        },
    )
    request.context["payload_signing_enabled"] = False
    boto = BotoCredentials(credentials.access_key, credentials.secret_key, credentials.token)
    SigV4Auth(boto, SERVICE, region).add_auth(request)
    return [(name, str(value)) for name, value in request.headers.items()]


# --------------------------------------------------------------------------- uploader


@dataclass
class Ack:
    """One PutMedia acknowledgement."""

    event: str
    timecode_ms: int | None
    fragment_number: str | None = None
    error_id: int | None = None
    error_code: str | None = None


def parse_acks(buffer: str) -> tuple[list[Ack], str]:
    """The complete acknowledgements at the start of ``buffer`` and the rest (an
    incomplete object). Objects may be separated by newlines or follow each other.

    Raises:
        ValueError: text that is not JSON objects.
    """
    decoder = json.JSONDecoder()
    acks: list[Ack] = []
    pos = 0
    while True:
        while pos < len(buffer) and buffer[pos] in " \t\r\n":
            pos += 1
        if pos >= len(buffer):
            return acks, ""
        try:
            value, end = decoder.raw_decode(buffer, pos)
        except json.JSONDecodeError:
            if buffer[pos] != "{":
                raise ValueError("the acknowledgement stream is not JSON objects") from None
            return acks, buffer[pos:]
        pos = end
        if isinstance(value, dict) and "Acknowledgement" in value:  # the documented wrapper
            value = value["Acknowledgement"]
        if not isinstance(value, dict):
            raise ValueError("an acknowledgement is not a JSON object")
        timecode = value.get("FragmentTimecode")
        error_id = value.get("ErrorId")
        acks.append(
            Ack(
                event=str(value.get("EventType", "")).upper(),
                timecode_ms=int(timecode) if timecode is not None else None,
                fragment_number=(
                    str(value["FragmentNumber"]) if "FragmentNumber" in value else None
                ),
                error_id=int(error_id) if error_id is not None else None,
                error_code=str(value["ErrorCode"]) if "ErrorCode" in value else None,
            )
        )


@dataclass
class KvsStats:
    """Counters of one uploader since :meth:`KvsUploader.start`.

    ``fragments``: made by the encoder; ``sent``: fragment sends (a resend counts again);
    ``acknowledged``: released by RECEIVED/PERSISTED; ``errors``: ERROR acknowledgements;
    ``dropped``: fragments dropped from a full buffer; ``sessions``: PutMedia requests
    answered 200; ``failures``: sessions that failed (connection, HTTP status).
    """

    stream: str
    connected: bool = False
    frames: int = 0
    fragments: int = 0
    sent: int = 0
    acknowledged: int = 0
    persisted: int = 0
    errors: int = 0
    dropped: int = 0
    sessions: int = 0
    failures: int = 0
    buffered: int = 0
    last_error: str | None = None
    error_acks: list[Ack] = field(default_factory=list)


class _SessionFailed(RuntimeError):
    def __init__(self, message: str, *, auth: bool = False, endpoint: bool = False) -> None:
        super().__init__(message)
        self.auth = auth
        self.endpoint = endpoint


@dataclass
class _Pending:
    fragment: Fragment
    session: int = -1  # the session that sent it last (-1: not sent)


class KvsUploader:
    """Encodes a camera's frames and streams them to one Kinesis video stream.

    Args:
        stream: the stream name (:func:`stream_name`).
        source: the camera's frames (``CameraWorker.subscribe()``); the upload ends (after
            sending what is left) when it ends.
        config: the ``kvs`` section (region, fragment length, limits, endpoints).
        credentials: where the credentials come from.
        on_error: called with each ERROR acknowledgement (on the sending thread).
        data_endpoint: the PutMedia endpoint URL; ``None``: ``GetDataEndpoint`` (cached;
            asked again after a connection failure).

    :meth:`start` runs two threads (encoding, sending); :meth:`stop` ends both.
    """

    def __init__(
        self,
        stream: str,
        source: FrameSource,
        config: KvsConfig,
        credentials: CredentialSource,
        *,
        on_error: Callable[[Ack], None] | None = None,
        data_endpoint: str | None = None,
    ) -> None:
        self.stream = stream
        self.source = source
        self.config = config
        self.credentials = credentials
        self.on_error = on_error
        self._fixed_endpoint = data_endpoint
        self._endpoint: str | None = data_endpoint
        self._encoder = FragmentEncoder(
            fragment_seconds=config.fragment_seconds,
            max_width=config.max_width,
            max_height=config.max_height,
            bitrate_kbps=config.bitrate_kbps,
        )
        self._cond = threading.Condition()
        self._pending: deque[_Pending] = deque()
        self._header: bytes | None = None
        self._producer_start: int | None = None
        self._source_done = False
        self._stopping = threading.Event()
        self._session = 0
        self._stats = KvsStats(stream=stream)
        self._rng = random.Random()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ public

    def start(self) -> None:
        """Start encoding and sending (returns at once)."""
        for target, name in ((self._encode_loop, "encode"), (self._send_loop, "send")):
            thread = threading.Thread(target=target, name=f"kvs-{name}-{self.stream}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, flush_timeout: float = 5.0) -> None:
        """Stop the source, send what is buffered for up to ``flush_timeout`` s, close."""
        self.source.stop()
        self.wait_idle(flush_timeout)
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(flush_timeout + IO_TIMEOUT_SECONDS)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until the source has ended and every fragment was acknowledged (or
        dropped); ``False`` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (self._source_done and not self._pending):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def stats(self) -> KvsStats:
        """A snapshot of the counters."""
        with self._cond:
            snapshot = KvsStats(**{**self._stats.__dict__, "error_acks": []})
            snapshot.error_acks = list(self._stats.error_acks)
            snapshot.buffered = len(self._pending)
            return snapshot

    # ------------------------------------------------------------------ encoding

    def _encode_loop(self) -> None:
        min_gap_ms = 1000.0 / self.config.max_fps
        last_ms: float | None = None
        try:
            for frame in self.source.frames():
                if self._stopping.is_set():
                    break
                time_ms = round(frame.wall_time.timestamp() * 1000)
                # at most max_fps (a 1 ms tolerance for clock rounding)
                if last_ms is not None and time_ms - last_ms < min_gap_ms - 1:
                    continue
                last_ms = time_ms
                self._push(self._encoder.add(frame.image, time_ms))
                with self._cond:
                    self._stats.frames += 1
            self._push(self._encoder.close())
        except Exception as err:
            log.exception("kvs %s: encoding failed", self.stream)
            with self._cond:
                self._stats.last_error = f"encoding failed: {type(err).__name__}: {err}"
        finally:
            with self._cond:
                self._source_done = True
                self._cond.notify_all()

    def _push(self, fragments: list[Fragment]) -> None:
        if not fragments:
            return
        with self._cond:
            if self._header is None:
                self._header = self._encoder.header
                self._producer_start = fragments[0].timecode_ms
            for fragment in fragments:
                self._pending.append(_Pending(fragment))
                self._stats.fragments += 1
            self._bound()
            self._cond.notify_all()

    def _bound(self) -> None:
        """Drop the oldest fragments beyond ``buffer_seconds`` of video (lock held); the
        newest one always stays."""
        limit_ms = self.config.buffer_seconds * 1000
        while len(self._pending) > 1:
            span = self._pending[-1].fragment.last_ms - self._pending[0].fragment.timecode_ms
            if span <= limit_ms:
                return
            dropped = self._pending.popleft()
            self._stats.dropped += 1
            if self._stats.dropped in (1, 10, 100) or self._stats.dropped % 1000 == 0:
                log.warning(
                    "kvs %s: buffer full (%g s of video): dropped fragment %d (%d so far)",
                    self.stream,
                    self.config.buffer_seconds,
                    dropped.fragment.timecode_ms,
                    self._stats.dropped,
                )

    # ------------------------------------------------------------------ sending

    def _send_loop(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            with self._cond:
                while not self._stopping.is_set() and not (
                    self._header is not None and self._pending
                ):
                    self._cond.wait(0.1)
            if self._stopping.is_set():
                return
            try:
                self._run_session()
                attempt = 0
            except _SessionFailed as err:
                self._failed(str(err))
                if err.auth:
                    self.credentials.invalidate()
                if err.endpoint and self._fixed_endpoint is None:
                    self._endpoint = None
            except CredentialsError as err:
                self._failed(str(err))
            except (OSError, ssl.SSLError, h11.ProtocolError) as err:
                self._failed(f"connection to Kinesis Video failed: {type(err).__name__}: {err}")
                if self._fixed_endpoint is None:
                    self._endpoint = None
            else:
                continue
            delay = backoff_delay(
                attempt,
                self.config.reconnect_min_seconds,
                self.config.reconnect_max_seconds,
                self._rng,
            )
            attempt += 1
            self._stopping.wait(delay)

    def _failed(self, message: str) -> None:
        log.warning("kvs %s: %s", self.stream, message)
        with self._cond:
            self._stats.failures += 1
            self._stats.last_error = message
            self._stats.connected = False

    def _data_endpoint(self, credentials: Credentials) -> str:
        if self._endpoint is not None:
            return self._endpoint
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        client = boto3.client(
            "kinesisvideo",
            region_name=self.config.region,
            endpoint_url=self.config.endpoint_url,
            verify=str(self.config.ca_file) if self.config.ca_file else None,
            aws_access_key_id=credentials.access_key,
            aws_secret_access_key=credentials.secret_key,
            aws_session_token=credentials.token,
        )
        try:
            answer = client.get_data_endpoint(StreamName=self.stream, APIName=PUT_MEDIA_API)
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            raise _SessionFailed(
                f"GetDataEndpoint for stream {self.stream} refused: {code}: "
                f"{err.response.get('Error', {}).get('Message', '')}"
                + (
                    " (create the stream, or run provisioning with the camera)"
                    if code == "ResourceNotFoundException"
                    else ""
                ),
                auth=code
                in (
                    "NotAuthorizedException",
                    "AccessDeniedException",
                    "UnrecognizedClientException",
                    "ExpiredTokenException",
                ),
            ) from err
        except BotoCoreError as err:
            raise _SessionFailed(f"GetDataEndpoint failed: {err}") from err
        self._endpoint = str(answer["DataEndpoint"])
        return self._endpoint

    def _connect(self, url: str) -> socket.socket:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        sock = socket.create_connection((host, port), timeout=IO_TIMEOUT_SECONDS)
        if parts.scheme == "https":
            context = ssl.create_default_context(
                cafile=str(self.config.ca_file) if self.config.ca_file else None
            )
            try:
                sock = context.wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
        sock.settimeout(IO_TIMEOUT_SECONDS)
        return sock

    def _run_session(self) -> None:
        credentials = self.credentials.get()
        endpoint = self._data_endpoint(credentials)
        url = endpoint.rstrip("/") + "/putMedia"
        with self._cond:
            header, start = self._header, self._producer_start
            self._session += 1
            session = self._session
        assert header is not None and start is not None
        headers = sign_put_media(url, self.stream, start, credentials, self.config.region)
        headers += [("transfer-encoding", "chunked"), ("user-agent", "aios-connector")]
        sock = self._connect(url)
        try:
            target = urllib.parse.urlsplit(url).path
            _Session(
                self, sock, session=session, target=target, headers=headers, mkv_header=header
            ).run()
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            with self._cond:
                self._stats.connected = False

    # called by _Session (lock not held)
    def _next_unsent(self, session: int, wait: float) -> _Pending | None:
        with self._cond:
            deadline = time.monotonic() + wait
            while True:
                for item in self._pending:
                    if item.session != session:
                        return item
                left = deadline - time.monotonic()
                if left <= 0 or self._stopping.is_set():
                    return None
                self._cond.wait(min(left, 0.05))

    def _mark_sent(self, item: _Pending, session: int) -> None:
        with self._cond:
            item.session = session
            self._stats.sent += 1

    def _acknowledge(self, ack: Ack) -> None:
        with self._cond:
            if ack.event == "PERSISTED":
                self._stats.persisted += 1
            if ack.event in RELEASE_EVENTS or ack.event == "ERROR":
                for item in list(self._pending):
                    if item.fragment.timecode_ms == ack.timecode_ms:
                        self._pending.remove(item)
                        if ack.event != "ERROR":
                            self._stats.acknowledged += 1
                        break
            if ack.event == "ERROR":
                self._stats.errors += 1
                self._stats.error_acks = [*self._stats.error_acks[-99:], ack]
                self._stats.last_error = f"fragment {ack.timecode_ms}: error {ack.error_id}" + (
                    f" {ack.error_code}" if ack.error_code else ""
                )
            self._cond.notify_all()
        if ack.event == "ERROR":
            log.error(
                "kvs %s: fragment %s refused by Kinesis Video: error %s%s",
                self.stream,
                ack.timecode_ms,
                ack.error_id,
                f" ({ack.error_code})" if ack.error_code else "",
            )
            if self.on_error is not None:
                self.on_error(ack)

    def _unacknowledged(self, session: int) -> int:
        with self._cond:
            return sum(1 for item in self._pending if item.session == session)

    def _finished(self) -> bool:
        with self._cond:
            return self._stopping.is_set() or (self._source_done and not self._pending)


class _Session:
    """One PutMedia request: the body is sent while the acknowledgements are read, on one
    thread (the socket — TLS included — is never used by two threads at once)."""

    def __init__(
        self,
        uploader: KvsUploader,
        sock: socket.socket,
        *,
        session: int,
        target: str,
        headers: list[tuple[str, str]],
        mkv_header: bytes,
    ) -> None:
        self.up = uploader
        self.target = target
        self.sock = sock
        self.session = session
        self.conn = h11.Connection(h11.CLIENT)
        self.headers = headers
        self.mkv_header = mkv_header
        self.status: int | None = None
        self.error_body = b""
        self.error_type = ""
        self.ack_text = ""
        self.ended = False

    def _send(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            self.sock.sendall(data)

    def run(self) -> None:
        self._send(h11.Request(method="POST", target=self.target, headers=self.headers))
        self._send(h11.Data(data=self.mkv_header))
        last_data = time.monotonic()
        finishing = False
        while True:
            self._receive(0.0)
            if self.status is not None and self.status != 200:
                self._drain_error()
            if self.ended:
                if finishing:
                    return
                raise _SessionFailed("Kinesis Video ended the PutMedia session", endpoint=True)
            if not finishing:
                item = self.up._next_unsent(self.session, 0.05)
                if item is not None:
                    self._send(h11.Data(data=item.fragment.data))
                    self.up._mark_sent(item, self.session)
                    last_data = time.monotonic()
                    continue
                idle = time.monotonic() - last_data > IDLE_END_SECONDS
                if self.up._finished() or idle:
                    self._send(h11.EndOfMessage())
                    finishing = True
                    # the last acknowledgements: briefly when stopping (what is not
                    # acknowledged stays buffered for a next session, if any)
                    wait = 2.0 if self.up._stopping.is_set() else IO_TIMEOUT_SECONDS
                    finish_deadline = time.monotonic() + wait
            else:
                if self.up._unacknowledged(self.session) == 0 or self.ended:
                    return
                if time.monotonic() > finish_deadline:
                    return  # the rest is resent by the next session
                self._receive(0.1)

    def _receive(self, wait: float) -> None:
        """Read what the server sent (waiting up to ``wait`` s) and handle its events."""
        pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0
        if not pending:
            readable, _, _ = select.select([self.sock], [], [], wait)
            if not readable:
                return
        try:
            data = self.sock.recv(65536)
        except (ssl.SSLWantReadError, BlockingIOError):
            return
        self.conn.receive_data(data)
        if not data and self.status is None:
            raise _SessionFailed("Kinesis Video closed the connection", endpoint=True)
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                break
            if isinstance(event, h11.Response):
                self.status = event.status_code
                for name, value in event.headers:
                    if name.lower() == b"x-amz-errortype":
                        self.error_type = value.decode("latin-1")[:200]
                if self.status == 200:
                    with self.up._cond:
                        self.up._stats.sessions += 1
                        self.up._stats.connected = True
            elif isinstance(event, h11.Data):
                if self.status == 200:
                    self._acks(bytes(event.data))
                else:
                    self.error_body = (self.error_body + bytes(event.data))[:2000]
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                self.ended = True
                break
        if not data:
            self.ended = True

    def _acks(self, data: bytes) -> None:
        self.ack_text += data.decode("utf-8", errors="replace")
        try:
            acks, self.ack_text = parse_acks(self.ack_text)
        except ValueError as err:
            raise _SessionFailed(f"unreadable acknowledgements: {err}") from err
        for ack in acks:
            self.up._acknowledge(ack)

    def _drain_error(self) -> None:
        deadline = time.monotonic() + 2.0
        while not self.ended and time.monotonic() < deadline:
            try:
                self._receive(0.1)
            except (_SessionFailed, OSError, h11.ProtocolError):
                break
        message = self.error_body.decode("utf-8", errors="replace").strip()[:300]
        raise _SessionFailed(
            f"PutMedia refused: HTTP {self.status} {self.error_type} {message}".strip(),
            auth=self.status in (401, 403),
            endpoint=self.status in (400, 404, 410),
        )


# --------------------------------------------------------------------------- daemon hook


def credentials_for(config: ConnectorConfig) -> CredentialSource:
    """The credential source of a configuration's ``kvs`` section.

    Raises:
        ValueError: there is no ``kvs`` section, or ``credentials: iot`` without the
            connector's certificate.
    """
    kvs = config.kvs
    if kvs is None:
        raise ValueError("the configuration has no kvs section")
    if kvs.credentials == "environment":
        return EnvironmentCredentials()
    tls = config.platform.tls
    if tls is None or kvs.credentials_endpoint is None or kvs.role_alias is None:
        raise ValueError("kvs.credentials iot needs platform.tls, credentials_endpoint, role_alias")
    return IotCredentials(
        kvs.credentials_endpoint,
        kvs.role_alias,
        config.platform.client_id or config.connector.id,
        tls,
        ca_file=kvs.ca_file,
    )


class CameraFrames(Protocol):
    """What :class:`KvsUploads` needs of a camera worker."""

    def subscribe(self, source_id: str | None = None) -> FrameSource: ...


class KvsUploads:
    """The uploads of a connector: one :class:`KvsUploader` per enabled camera with
    ``kvs_upload``, bound to its current capture worker.

    :meth:`sync` after the cameras started or changed; :meth:`stop_all` before they stop.
    """

    SOURCE_ID = "kvs"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._uploads: dict[str, tuple[KvsUploader, Any, CameraConfig, KvsConfig]] = {}
        self._credentials: CredentialSource | None = None
        self._credentials_key: tuple[Any, ...] | None = None

    def sync(self, config: ConnectorConfig, cameras: dict[str, Any]) -> None:
        """Start, restart or stop uploads so that each enabled ``kvs_upload`` camera of
        ``config`` running in ``cameras`` (id → worker) has one, on that worker."""
        wanted = {
            c.id: c
            for c in config.cameras
            if c.enabled and c.kvs_upload and config.kvs is not None and c.id in cameras
        }
        key = (config.kvs, config.platform.tls, config.platform.client_id, config.connector.id)
        with self._lock:
            if config.kvs is not None and key != self._credentials_key:
                self._credentials = credentials_for(config)
                self._credentials_key = key
            for cid, (uploader, worker, _cam, kvs) in list(self._uploads.items()):
                if cid not in wanted or cameras.get(cid) is not worker or kvs != config.kvs:
                    del self._uploads[cid]
                    uploader.stop(flush_timeout=2.0)
            for cid, cam in wanted.items():
                if cid in self._uploads:
                    continue
                assert config.kvs is not None and self._credentials is not None
                worker = cameras[cid]
                uploader = KvsUploader(
                    stream_name(config.kvs.name_prefix, config.kvs.stage, config.connector.id, cid),
                    worker.subscribe(self.SOURCE_ID),
                    config.kvs,
                    self._credentials,
                )
                uploader.start()
                self._uploads[cid] = (uploader, worker, cam, config.kvs)
                log.info("kvs: camera %s uploads to stream %s", cid, uploader.stream)

    def stop_all(self, flush_timeout: float = 5.0) -> None:
        """Stop every upload, sending what is buffered within ``flush_timeout`` s in all."""
        with self._lock:
            uploads = [entry[0] for entry in self._uploads.values()]
            self._uploads.clear()
        for uploader in uploads:
            uploader.source.stop()  # every camera's last fragment is cut now
        deadline = time.monotonic() + flush_timeout
        for uploader in uploads:
            uploader.stop(flush_timeout=max(0.0, deadline - time.monotonic()))

    def status(self) -> dict[str, dict[str, Any]]:
        """Per camera: stream, connected, fragments sent/acknowledged/errors, last error."""
        with self._lock:
            uploads = {cid: entry[0] for cid, entry in self._uploads.items()}
        out: dict[str, dict[str, Any]] = {}
        for cid, uploader in uploads.items():
            s = uploader.stats()
            out[cid] = {
                "stream": s.stream,
                "connected": s.connected,
                "fragments": s.fragments,
                "acknowledged": s.acknowledged,
                "errors": s.errors,
                "dropped": s.dropped,
                "buffered": s.buffered,
                "last_error": s.last_error,
            }
        return out
