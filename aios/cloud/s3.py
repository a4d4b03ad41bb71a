"""Blobs and run media on Amazon S3 (the bucket ``MediaBucket``, ``AIOS_MEDIA_BUCKET``).

- :class:`S3BlobStore`: :class:`aios.events.task.BlobStore` of the pipeline task functions.
  A reference is the object's key in the bucket (``runs/<run_id>/media/snapshots/e1.jpg``),
  or ``s3://<bucket>/<key>``; :meth:`S3BlobStore.write` puts ``<prefix><name>`` and returns
  that key.
- :class:`S3MediaStore`: :class:`aios.runs.media.MediaStore` of the API (download and
  upload routes): the objects ``runs/<run_id>/media/<kind>/<name>``, the keys
  :func:`aios.runs.media.media_key` gives, so an event's ``data.snapshot`` names the object.

Objects are written with their Content-Type; the bucket's default encryption applies.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from aios.runs.media import (
    MEDIA_KINDS,
    RUN_ID,
    MediaNotFound,
    MediaTooLarge,
    media_key,
    valid_media_name,
)

log = logging.getLogger(__name__)

_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})

CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".mp4": "video/mp4",
    ".json": "application/json",
}
"""Content-Type of an object by the extension of its key (others: ``application/octet-stream``)."""


def _s3_client() -> Any:
    import boto3

    return boto3.client("s3")


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def content_type(key: str) -> str:
    """The Content-Type stored with ``key`` (:data:`CONTENT_TYPES`)."""
    dot = key.rfind(".")
    return (
        CONTENT_TYPES.get(key[dot:].lower(), "application/octet-stream")
        if dot >= 0
        else ("application/octet-stream")
    )


class _Bucket:
    """One bucket and an ``s3`` client made at first use (unless one is given)."""

    def __init__(self, bucket: str, client: Any | None, what: str) -> None:
        if not bucket:
            raise ValueError(f"the {what} bucket's name cannot be empty")
        self.bucket = bucket
        self._client = client

    @property
    def client(self) -> Any:
        """The S3 client."""
        if self._client is None:
            self._client = _s3_client()
        return self._client


class S3BlobStore(_Bucket):
    """:class:`aios.events.task.BlobStore` on one bucket.

    Args:
        bucket: the bucket's name.
        prefix: prepended to the names given to :meth:`write` (``runs/<run_id>/media/``).
        client: an ``s3`` client (default: built on first use).
    """

    def __init__(self, bucket: str, *, prefix: str = "", client: Any | None = None) -> None:
        super().__init__(bucket, client, "blob")
        self.prefix = prefix

    def _locate(self, ref: str) -> tuple[str, str]:
        if ref.startswith("s3://"):
            parts = urlsplit(ref)
            key = parts.path.lstrip("/")
            if not parts.netloc or not key:
                raise FileNotFoundError(f"not an S3 object reference: {ref}")
            return parts.netloc, key
        key = ref.lstrip("/")
        if not key:
            raise FileNotFoundError("an empty blob reference")
        return self.bucket, key

    def read(self, ref: str) -> bytes:
        """The object's bytes.

        Raises:
            FileNotFoundError: no such object.
            OSError: S3 refused or failed (the message has the error code).
        """
        bucket, key = self._locate(ref)
        try:
            response = self.client.get_object(Bucket=bucket, Key=key)
        except ClientError as err:
            if _code(err) in _MISSING:
                raise FileNotFoundError(f"s3://{bucket}/{key} does not exist") from None
            raise OSError(f"cannot read s3://{bucket}/{key}: {_code(err)}") from err
        data: bytes = response["Body"].read()
        return data

    def write(self, name: str, data: bytes) -> str:
        """Put ``data`` at ``<prefix><name>`` and return that key.

        Raises:
            OSError: S3 refused or failed.
        """
        key = f"{self.prefix}{name.lstrip('/')}"
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=content_type(key)
            )
        except ClientError as err:
            raise OSError(f"cannot write s3://{self.bucket}/{key}: {_code(err)}") from err
        return key


class S3MediaStore(_Bucket):
    """:class:`aios.runs.media.MediaStore` on a bucket: ``runs/<run_id>/media/<kind>/<name>``.

    Run ids, kinds and names are checked as :class:`aios.runs.media.FolderMediaStore`
    checks them, so a key outside a run's media can never be read or written.

    Args:
        bucket: the bucket's name (``AIOS_MEDIA_BUCKET``).
        client: an ``s3`` client (default: built on first use).
    """

    def __init__(self, bucket: str, *, client: Any | None = None) -> None:
        super().__init__(bucket, client, "media")

    def key(self, run_id: str, kind: str, name: str) -> str:
        """The object key of a run's media file.

        Raises:
            MediaNotFound: an unacceptable run id, kind or name.
        """
        if RUN_ID.fullmatch(run_id) is None or kind not in MEDIA_KINDS:
            raise MediaNotFound(f"no media {kind!r} of run {run_id!r}")
        if not valid_media_name(kind, name):
            raise MediaNotFound(f"no media file {name!r}")
        return media_key(run_id, kind, name)

    def read(self, run_id: str, kind: str, name: str, *, max_bytes: int) -> bytes:
        """See :meth:`aios.runs.media.MediaStore.read`. Other S3 failures raise
        ``botocore.exceptions.ClientError``."""
        key = self.key(run_id, kind, name)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as err:
            if _code(err) in _MISSING:
                raise MediaNotFound(f"no media file {name!r}") from None
            raise
        size = int(head.get("ContentLength", 0))
        if size > max_bytes:
            raise MediaTooLarge(size, max_bytes)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as err:
            if _code(err) in _MISSING:
                raise MediaNotFound(f"no media file {name!r}") from None
            raise
        data: bytes = response["Body"].read(max_bytes + 1)
        if len(data) > max_bytes:  # replaced by a larger object since the HEAD
            raise MediaTooLarge(len(data), max_bytes)
        return data

    def write(self, run_id: str, kind: str, name: str, data: bytes) -> bool:
        """See :meth:`aios.runs.media.MediaStore.write`: one PutObject (atomic in S3);
        ``False`` without writing when the object holds these bytes already (same size
        and SHA-256, kept in the object's metadata)."""
        key = self.key(run_id, kind, name)
        digest = hashlib.sha256(data).hexdigest()
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as err:
            if _code(err) not in _MISSING:
                raise
        else:
            same_size = int(head.get("ContentLength", -1)) == len(data)
            if same_size and head.get("Metadata", {}).get("sha256") == digest:
                return False
        self.client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType=MEDIA_KINDS[kind],
            Metadata={"sha256": digest},
        )
        log.debug("media %s written (%d bytes)", key, len(data))
        return True
