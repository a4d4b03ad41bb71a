"""Still images of cameras for the console (drawing zones and lines on what a camera sees).

- :func:`bounded_jpeg`: a frame as a JPEG of at most a given size (the connector's
  ``snapshot`` command answers one inside an MQTT message, whose payload is at most
  128 KiB: :data:`MAX_SNAPSHOT_BYTES` leaves room for base64 and the envelope).
- :func:`grab_url`: one frame from a camera URL or a video/image file, as a pipeline's
  camera node would open it (``rtsp://``/``rtsps://`` through
  :class:`aios.vision.sources.RtspSource`; a file through
  :class:`aios.vision.sources.FileSource`, ``asset:NAME`` being a bundled sample), within a
  time limit. Errors never contain the URL's password (:func:`aios.vision.sources.redact_url`).

OpenCV and PyAV (the ``vision`` extra) are imported when used.
"""

from __future__ import annotations

import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_SNAPSHOT_BYTES = 90_000
"""Largest JPEG a snapshot is (base64: 120,000 bytes, within one 128 KiB MQTT message)."""

MAX_SNAPSHOT_WIDTH = 1280
"""Snapshots are scaled down to at most this width (pixels): enough to draw zones on."""

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


class SnapshotError(Exception):
    """A frame could not be had. ``reason``: ``unsupported`` (not a URL or file this
    reads), ``not_found`` (no such file), ``auth`` (the camera refused the credentials),
    ``unreachable`` (cannot connect or decode), ``timeout`` (no frame in time),
    ``unavailable`` (the vision libraries are not installed). The message never holds a
    password."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Snapshot:
    """A JPEG and its size in pixels."""

    jpeg: bytes
    width: int
    height: int


def bounded_jpeg(
    image: Any, *, max_bytes: int = MAX_SNAPSHOT_BYTES, max_width: int = MAX_SNAPSHOT_WIDTH
) -> Snapshot:
    """Encode a BGR image (``(H, W, 3)`` uint8) as a JPEG of at most ``max_bytes``: scaled
    to at most ``max_width`` pixels wide, then lower qualities (80 down to 35), then
    smaller sizes, until it fits.

    Raises:
        ValueError: it does not fit even at 160 pixels wide, or cannot be encoded.
    """
    import cv2

    height, width = int(image.shape[0]), int(image.shape[1])
    target = min(width, max_width)
    while target >= 160:
        scaled = image
        if target < width:
            new_height = max(1, round(height * target / width))
            scaled = cv2.resize(image, (target, new_height), interpolation=cv2.INTER_AREA)
        for quality in (80, 65, 50, 35):
            ok, buf = cv2.imencode(".jpg", scaled, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise ValueError("JPEG encoding failed")
            data = bytes(buf.tobytes())
            if len(data) <= max_bytes:
                return Snapshot(data, int(scaled.shape[1]), int(scaled.shape[0]))
        target = int(target * 0.7)
    raise ValueError(f"the image does not fit in {max_bytes} bytes as a JPEG")


def _file_path(url: str) -> Path | None:
    if url.startswith("asset:"):
        from aios.nodes.file_input import resolve_path

        return resolve_path(url)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        return Path(urllib.parse.unquote(parts.path))
    if parts.scheme == "" or (len(parts.scheme) == 1 and url[1:3] in (":\\", ":/")):
        return Path(url).expanduser()
    return None


def _first_frame(frames: Any, stop: Any, timeout: float, what: str) -> Any:
    """The first frame the iterator gives, from a worker thread, within ``timeout``."""
    box: dict[str, Any] = {}

    def read() -> None:
        try:
            box["frame"] = next(iter(frames()))
        except StopIteration:
            box["error"] = SnapshotError("unreachable", f"{what} gave no frame")
        except Exception as err:  # reported below, without the URL's secrets
            box["error"] = err

    worker = threading.Thread(target=read, name="snapshot", daemon=True)
    worker.start()
    worker.join(timeout)
    stop()
    if worker.is_alive():
        raise SnapshotError("timeout", f"{what} gave no frame within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["frame"].image


def grab_url(
    url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    timeout_seconds: float = 8.0,
) -> Snapshot:
    """One frame of ``url`` as a bounded JPEG (see the module doc).

    Raises:
        SnapshotError: see its ``reason``s.
    """
    try:
        import cv2

        from aios.vision.sources import FileSource, RtspAuthError, RtspSource, redact_url
    except ImportError:
        raise SnapshotError(
            "unavailable", "this service cannot read video (install the 'vision' extra)"
        ) from None
    lowered = url.lower()
    if lowered.startswith(("rtsp://", "rtsps://")):
        try:
            source = RtspSource(
                url,
                username=username or None,
                password=password or None if username else None,
                open_timeout_seconds=timeout_seconds,
                read_timeout_seconds=timeout_seconds,
                stall_timeout_seconds=timeout_seconds,
                max_reconnect_attempts=0,
                source_id="snapshot",
            )
        except ValueError as err:
            raise SnapshotError("unsupported", redact_url(str(err))) from None
        shown = source.redacted_url
        try:
            image = _first_frame(source.frames, source.stop, timeout_seconds, f"camera {shown}")
        except RtspAuthError:
            raise SnapshotError(
                "auth", f"camera {shown} refused the username or password"
            ) from None
        except SnapshotError:
            raise
        except Exception as err:
            message = str(err).replace(url, shown)
            if password:
                message = message.replace(password, "***")
            raise SnapshotError("unreachable", f"camera {shown}: {message}") from None
    else:
        path = _file_path(url)
        if path is None:
            scheme = urllib.parse.urlsplit(url).scheme
            raise SnapshotError(
                "unsupported",
                f"'{scheme}:' URLs are not read here; give rtsp://, rtsps://, file://, a "
                "file path or asset:NAME",
            )
        if not path.is_file():
            raise SnapshotError("not_found", f"no file at {path}")
        if path.suffix.lower() in IMAGE_SUFFIXES:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise SnapshotError("unreachable", f"{path.name} is not an image this reads")
        else:
            try:
                video = FileSource(path, source_id="snapshot")
            except Exception as err:
                raise SnapshotError("unreachable", str(err)) from None
            image = _first_frame(video.frames, video.stop, timeout_seconds, f"file {path.name}")
    try:
        return bounded_jpeg(image)
    except ValueError as err:
        raise SnapshotError("unreachable", str(err)) from None
