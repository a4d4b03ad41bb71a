"""The media of runs (event snapshots and clips): their keys, their API URLs, where they are read.

A run's evidence files are named by *key*, a path relative to the data folder::

    runs/<run_id>/media/snapshots/<event_id>.jpg      (JPEG)
    runs/<run_id>/media/clips/<event_id>.mp4          (MP4)

Stored events carry the key (``data.snapshot``, ``data.clip``) and the URL the API serves
it at (``data.snapshot_url``, ``data.clip_url``: ``/api/v1/runs/<run_id>/media/<kind>/<name>``),
never a path of the machine that recorded them. :class:`MediaStore` reads and writes a file
by run, kind and name; :class:`FolderMediaStore` is the one of a single machine (files under
``settings.data_dir``); in the cloud, :class:`aios.cloud.s3.S3MediaStore` keeps them in the
bucket ``AIOS_MEDIA_BUCKET`` under the same keys (:func:`open_media_store` chooses).
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from pathlib import Path
from typing import Protocol

from aios.config import Settings

MEDIA_KINDS: dict[str, str] = {"snapshots": "image/jpeg", "clips": "video/mp4"}
"""Kind of media (the folder under ``media/``) → the Content-Type of its files."""

MEDIA_EXTENSIONS: dict[str, str] = {"snapshots": ".jpg", "clips": ".mp4"}
"""Kind of media → the file extension its files have."""

MEDIA_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}\.(jpg|mp4)$")
"""A media file's name: 1–128 letters, digits, ``_ . -``, then ``.jpg`` or ``.mp4``."""

RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
"""A run id as it may appear in a media key (the service's ids: letters, digits, ``_ -``)."""

MEDIA_URL_PREFIX = "/api/v1/runs"

MAX_MEDIA_BYTES = 4 * 1024 * 1024
"""Largest media file served in one API response, 4 MiB. The body goes base64-encoded
(4/3 larger: 5.6 MB) in a Lambda proxy response, whose payload is limited to 6 MB (AWS
Lambda quotas; API Gateway REST's own limit, 10 MB, is higher)."""


MAX_UPLOAD_BYTES = 10 * 1024 * 1024
"""Largest media file accepted by the upload route, 10 MiB: API Gateway REST's payload
quota (10 MB), which ``aios up``'s HTTP adapter applies too."""

MEDIA_SIGNATURES: dict[str, tuple[int, bytes]] = {
    "snapshots": (0, b"\xff\xd8\xff"),
    "clips": (4, b"ftyp"),
}
"""Kind of media → (offset, bytes) every file of that kind has: a JPEG starts with the SOI
marker and a marker (ITU-T T.81 B.1.1.2), an MP4 with an ``ftyp`` box (ISO/IEC 14496-12
§4.3)."""


def media_content_ok(kind: str, data: bytes) -> bool:
    """Whether ``data`` looks like a file of ``kind`` (:data:`MEDIA_SIGNATURES`)."""
    offset, magic = MEDIA_SIGNATURES[kind]
    return data[offset : offset + len(magic)] == magic


class MediaNotFound(Exception):
    """No such media file (or its name or location is not acceptable)."""


class MediaTooLarge(Exception):
    """The media file is larger than the caller's limit.

    Attributes:
        size: the file's size, bytes.
        limit: the limit it exceeds, bytes.
    """

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the file is {size} bytes, over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


def valid_media_name(kind: str, name: str) -> bool:
    """Whether ``name`` is a media file name of ``kind`` (``snapshots``: ``.jpg``,
    ``clips``: ``.mp4``; see :data:`MEDIA_NAME`)."""
    extension = MEDIA_EXTENSIONS.get(kind)
    return (
        extension is not None
        and MEDIA_NAME.fullmatch(name) is not None
        and name.endswith(extension)
        and name not in {".jpg", ".mp4"}
    )


def media_key(run_id: str, kind: str, name: str) -> str:
    """The key of a run's media file: ``runs/<run_id>/media/<kind>/<name>``."""
    return f"runs/{run_id}/media/{kind}/{name}"


def media_url(run_id: str, kind: str, name: str) -> str:
    """The API path a run's media file is downloaded from:
    ``/api/v1/runs/<run_id>/media/<kind>/<name>``."""
    return f"{MEDIA_URL_PREFIX}/{run_id}/media/{kind}/{name}"


class MediaStore(Protocol):
    """Where the media of runs are kept (a folder on one machine; S3 in the cloud)."""

    def read(self, run_id: str, kind: str, name: str, *, max_bytes: int) -> bytes:
        """Return the bytes of media file ``name`` of ``kind`` of run ``run_id``.

        Raises:
            MediaNotFound: no such file (or an unacceptable run id, kind or name).
            MediaTooLarge: the file is larger than ``max_bytes``.
        """
        ...

    def write(self, run_id: str, kind: str, name: str, data: bytes) -> bool:
        """Store media file ``name`` of ``kind`` of run ``run_id`` (whole or not at all).

        Returns:
            ``True`` when written, ``False`` when it held these bytes already.

        Raises:
            MediaNotFound: an unacceptable run id, kind or name.
            MediaWriteRefused: the file cannot be written there.
        """
        ...


class FolderMediaStore:
    """Media files under ``<data_dir>/runs/<run_id>/media/<kind>/<name>``, strictly.

    The run id, kind and name must be acceptable (:data:`RUN_ID`, :data:`MEDIA_KINDS`,
    :func:`valid_media_name`); the file must be a regular file directly in that folder,
    reached without a symbolic link anywhere below ``data_dir`` (the resolved path is
    checked, and the file itself is opened with ``O_NOFOLLOW``).
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)

    def folder(self, run_id: str, kind: str) -> Path:
        """``<data_dir>/runs/<run_id>/media/<kind>`` (data_dir resolved). Raises
        :class:`MediaNotFound` for an unacceptable run id or kind."""
        if RUN_ID.fullmatch(run_id) is None or kind not in MEDIA_KINDS:
            raise MediaNotFound(f"no media {kind!r} of run {run_id!r}")
        return self.data_dir.resolve() / "runs" / run_id / "media" / kind

    def read(self, run_id: str, kind: str, name: str, *, max_bytes: int) -> bytes:
        """See :meth:`MediaStore.read`."""
        folder = self.folder(run_id, kind)
        if not valid_media_name(kind, name):
            raise MediaNotFound(f"no media file {name!r}")
        path = folder / name
        try:
            resolved = path.resolve(strict=True)
        except (OSError, RuntimeError):
            raise MediaNotFound(f"no media file {name!r}") from None
        if resolved != path or resolved.parent != folder:
            # a symbolic link somewhere below data_dir: refused, wherever it points
            raise MediaNotFound(f"no media file {name!r}")
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(path, flags)
        except OSError as err:
            if err.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.EISDIR):
                raise MediaNotFound(f"no media file {name!r}") from None
            raise
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise MediaNotFound(f"no media file {name!r}")
            if info.st_size > max_bytes:
                raise MediaTooLarge(info.st_size, max_bytes)
            data = file.read(max_bytes + 1)
        if len(data) > max_bytes:  # grew since fstat
            raise MediaTooLarge(len(data), max_bytes)
        return data

    def write(self, run_id: str, kind: str, name: str, data: bytes) -> bool:
        """See :meth:`MediaStore.write` and :func:`write_media`."""
        return write_media(self.data_dir, run_id, kind, name, data)


class MediaWriteRefused(Exception):
    """The file cannot be written where it was asked for (a symbolic link on the way, a
    folder in the file's place)."""


def write_media(data_dir: Path, run_id: str, kind: str, name: str, data: bytes) -> bool:
    """Write media file ``name`` of ``kind`` of run ``run_id`` under ``data_dir``, atomically.

    The bytes go to a temporary file in the same folder, flushed to disk, then renamed over
    ``<data_dir>/runs/<run_id>/media/<kind>/<name>``: a reader sees the old file or the
    whole new one. The same bytes again change nothing.

    Returns:
        ``True`` when the file was written, ``False`` when it held these bytes already.

    Raises:
        MediaNotFound: an unacceptable run id, kind or name.
        MediaWriteRefused: a symbolic link below ``data_dir`` on the way, or not a regular
            file in the file's place.
    """
    store = FolderMediaStore(data_dir)
    folder = store.folder(run_id, kind)
    if not valid_media_name(kind, name):
        raise MediaNotFound(f"no media file {name!r}")
    folder.mkdir(parents=True, exist_ok=True)
    if folder.resolve(strict=True) != folder:
        raise MediaWriteRefused(f"the media folder of run {run_id!r} is a symbolic link")
    path = folder / name
    try:
        current = store.read(run_id, kind, name, max_bytes=len(data))
    except MediaNotFound:
        current = None
    except MediaTooLarge:
        current = None
    if current == data:
        return False
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise MediaWriteRefused(f"{kind}/{name} of run {run_id!r} is not a regular file")
    temporary = folder / f".{name}.{secrets.token_hex(8)}.part"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_BINARY", 0)
    fd = os.open(temporary, flags, 0o640)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return True


def open_media_store(settings: Settings) -> MediaStore:
    """The media store of the process: the S3 bucket named by ``AIOS_MEDIA_BUCKET`` when
    that is set (the cloud functions; :class:`aios.cloud.s3.S3MediaStore`), else the
    folder ``settings.data_dir``."""
    from aios.cloud.env import MEDIA_BUCKET

    bucket = os.environ.get(MEDIA_BUCKET)
    if bucket:
        from aios.cloud.s3 import S3MediaStore

        return S3MediaStore(bucket)
    return FolderMediaStore(settings.data_dir)
