"""A Kinesis Video Streams media endpoint on 127.0.0.1 for tests: ``GetDataEndpoint`` and
``GetMedia`` with the HTTP shape of the service (POST with a JSON body, the media as a
chunked ``video/webm`` body), serving MKV fragments made with PyAV from real video frames —
what ``PutMedia`` stored and ``GetMedia`` gives back.

Each fragment is a complete MKV segment (EBML header, tracks, the producer-timestamp tag,
clusters) whose block timecodes are absolute producer times in milliseconds.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import av
import numpy as np


@dataclass(frozen=True)
class Fragment:
    """One MKV fragment: its bytes and the producer times (ms) of its frames."""

    data: bytes
    times_ms: tuple[int, ...]

    @property
    def start_ms(self) -> int:
        return self.times_ms[0]


def read_frames(path: str, count: int) -> list[np.ndarray]:
    """The first ``count`` frames of a video file (BGR)."""
    out = []
    with av.open(path) as container:
        for frame in container.decode(video=0):
            out.append(frame.to_ndarray(format="bgr24"))
            if len(out) >= count:
                break
    return out


def make_fragment(images: list[np.ndarray], start_ms: int, step_ms: int) -> Fragment:
    """Encode ``images`` (H.264, one key frame first) as one MKV fragment whose frame ``k``
    has producer time ``start_ms + k * step_ms``."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="matroska", options={"live": "1"}) as out:
        stream = out.add_stream("libx264", rate=round(1000 / step_ms))
        stream.width, stream.height = images[0].shape[1], images[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, 1000)
        stream.codec_context.gop_size = len(images) + 1
        out.metadata["AWS_KINESISVIDEO_PRODUCER_TIMESTAMP"] = f"{start_ms / 1000:.3f}"
        times = []
        for k, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = start_ms + k * step_ms
            frame.time_base = stream.time_base
            times.append(frame.pts)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return Fragment(buffer.getvalue(), tuple(times))


@dataclass
class MediaRequest:
    """One ``GetMedia`` request the server answered."""

    stream_name: str
    selector: dict[str, Any]
    signed: bool


@dataclass
class GetMediaServer:
    """Serves ``fragments`` of ``stream_name``.

    ``cut_after_bytes``: the first ``GetMedia`` response is cut after this many bytes of
    media: the socket shut down (``cut="close"``), or held open without sending anything more
    until the server stops (``cut="stall"``). ``chunk_bytes``: bytes per HTTP chunk.
    ``chunk_delay``: seconds between chunks.
    """

    stream_name: str
    fragments: list[Fragment]
    cut_after_bytes: int | None = None
    cut: str = "close"
    chunk_bytes: int = 16 * 1024
    chunk_delay: float = 0.0
    requests: list[MediaRequest] = field(default_factory=list)
    endpoint_calls: int = 0

    def __post_init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> GetMediaServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                return

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status >= 400:
                    self.send_header("x-amzn-ErrorType", body["__type"])
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                signed = self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256")
                if self.path == "/getDataEndpoint":
                    with owner._lock:
                        owner.endpoint_calls += 1
                    if body.get("APIName") != "GET_MEDIA":
                        self._json(400, {"__type": "InvalidArgumentException", "Message": "x"})
                        return
                    self._json(200, {"DataEndpoint": owner.url})
                    return
                if self.path != "/getMedia":
                    self._json(404, {"__type": "NotFound", "Message": self.path})
                    return
                name = body.get("StreamName")
                if name != owner.stream_name:
                    self._json(404, {"__type": "ResourceNotFoundException", "Message": "no stream"})
                    return
                selector = body.get("StartSelector") or {}
                with owner._lock:
                    owner.requests.append(MediaRequest(name, selector, signed))
                    first = len(owner.requests) == 1
                data = owner.media_for(selector)
                with contextlib.suppress(ConnectionError):  # the reader went away
                    self._stream(data, first)

            def _stream(self, data: bytes, first: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "video/webm")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                limit = owner.cut_after_bytes if first else None
                sent = 0
                for start in range(0, len(data), owner.chunk_bytes):
                    chunk = data[start : start + owner.chunk_bytes]
                    if limit is not None and sent + len(chunk) > limit:
                        chunk = chunk[: limit - sent]
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        self.wfile.flush()
                        if owner.cut == "stall":
                            owner._stopped.wait(30)
                        with contextlib.suppress(OSError):
                            self.connection.shutdown(socket.SHUT_RDWR)
                        self.close_connection = True
                        return
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    self.wfile.flush()
                    sent += len(chunk)
                    if owner.chunk_delay:
                        threading.Event().wait(owner.chunk_delay)
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def media_for(self, selector: dict[str, Any]) -> bytes:
        """The fragments from the one the selector starts at: ``NOW`` → the first (the test
        stream's "now"); ``PRODUCER_TIMESTAMP`` → the fragment holding that time."""
        fragments = self.fragments
        if selector.get("StartSelectorType") == "PRODUCER_TIMESTAMP":
            at = selector["StartTimestamp"]
            at_ms = round(
                (datetime.fromisoformat(at).timestamp() if isinstance(at, str) else float(at))
                * 1000
            )
            index = max([i for i, f in enumerate(fragments) if f.start_ms <= at_ms], default=0)
            fragments = fragments[index:]
        return b"".join(f.data for f in fragments)

    def stop(self) -> None:
        self._stopped.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
