"""Upload of event media (snapshots, clips) from the connector to the platform's blob store.

The evidence service writes each event's snapshot (JPEG) and clip (MP4) under the
connector's media folder; :class:`MediaUploader` then sends each file with an HTTP ``PUT``
to the presigned URL its stream plan gives (``media.upload_url``, with ``{kind}`` and
``{name}`` placeholders — an S3 presigned PUT in the cloud, the local API on one machine),
retrying with exponential backoff (tenacity). A file stays on disk until it is uploaded;
after an upload fails it is tried again later. With a media folder, each queued upload is
also recorded there (``.uploads/<kind>-<name>.json``, readable by the owner only: it holds
the presigned URL), so uploads left when the connector stopped resume when it starts again.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import os
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from aios.runs.media import MEDIA_KINDS

log = logging.getLogger(__name__)

MediaKind = Literal["snapshots", "clips"]


class MediaTarget(BaseModel):
    """Where a stream plan's media go: one presigned URL template per plan.

    ``upload_url`` holds ``{name}`` (the file name, e.g. ``<event_id>.jpg``) and may hold
    ``{kind}`` (``snapshots`` or ``clips``); both are replaced, percent-encoded, before
    the ``PUT``. ``headers`` are sent with every upload (e.g. ``x-amz-*`` headers the
    signature covers, or an ``Authorization`` for the local API); they are never logged.
    """

    model_config = ConfigDict(extra="forbid")

    upload_url: str = Field(
        max_length=4096,
        description="http(s) URL with a {name} placeholder (and optionally {kind}).",
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Sent with each PUT.")

    @field_validator("upload_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("upload_url must be an http:// or https:// URL")
        if "{name}" not in value:
            raise ValueError("upload_url needs a {name} placeholder for the file name")
        return value

    def url_for(self, kind: str, name: str) -> str:
        """Return the URL to ``PUT`` file ``name`` of ``kind`` to."""
        return self.upload_url.replace("{kind}", urllib.parse.quote(kind, safe="")).replace(
            "{name}", urllib.parse.quote(name, safe="")
        )


def _redacted(url: str) -> str:
    """The URL without its query (a presigned URL's signature lives there)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class UploadError(RuntimeError):
    """An upload was refused for good (a 4xx other than 408/429): the file is kept."""


class _Retryable(RuntimeError):
    """A transient failure (5xx, 408, 429): tried again."""


@dataclass(order=True)
class _Item:
    due: float
    seq: int
    path: Path = field(compare=False)
    kind: str = field(compare=False)
    target: MediaTarget = field(compare=False)
    wait_until: float = field(compare=False)
    rounds: int = field(default=0, compare=False)


class MediaUploader:
    """Uploads media files in a background thread; files are kept until uploaded.

    Args:
        media_dir: where queued uploads are recorded so they survive a restart (``None``:
            in memory only). The thread starts with :meth:`start` or the first
            :meth:`enqueue`.
        client: the HTTP client (default: a new ``httpx.Client`` with ``timeout``).
        attempts: tries per round (tenacity), with exponential backoff from
            ``backoff_seconds`` doubling up to 30 s.
        retry_interval_seconds: after a round fails, the next round starts this much later.
        file_wait_seconds: how long a file that does not exist yet (a clip still being
            recorded) is waited for before it is given up.
        delete_uploaded: remove the local file once the platform accepted it.
        timeout: seconds per HTTP request.
    """

    def __init__(
        self,
        media_dir: Path | None = None,
        *,
        client: httpx.Client | None = None,
        attempts: int = 4,
        backoff_seconds: float = 0.5,
        retry_interval_seconds: float = 60.0,
        file_wait_seconds: float = 120.0,
        delete_uploaded: bool = True,
        timeout: float = 30.0,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.media_dir = None if media_dir is None else Path(media_dir)
        # A 307 to a per-object presigned URL keeps the PUT and its body; httpx drops
        # Authorization when the redirect leaves the origin.
        self._client = client or httpx.Client(timeout=timeout, follow_redirects=True)
        self._own_client = client is None
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.retry_interval_seconds = retry_interval_seconds
        self.file_wait_seconds = file_wait_seconds
        self.delete_uploaded = delete_uploaded
        self._heap: list[_Item] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._busy = 0
        self.uploaded = 0
        self.failures = 0

    def start(self) -> None:
        """Start the upload thread and resume recorded uploads (idempotent)."""
        with self._cond:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="media-upload", daemon=True)
        self._resume()
        self._thread.start()

    def _record_path(self, kind: str, name: str) -> Path | None:
        if self.media_dir is None:
            return None
        return self.media_dir / ".uploads" / f"{kind}-{name}.json"

    def _record(self, item: _Item) -> None:
        record = self._record_path(item.kind, item.path.name)
        if record is None:
            return
        record.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(
            {"path": str(item.path), "kind": item.kind, "target": item.target.model_dump()}
        )
        tmp = record.with_name(record.name + ".part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        tmp.replace(record)

    def _forget(self, item: _Item) -> None:
        record = self._record_path(item.kind, item.path.name)
        if record is not None:
            record.unlink(missing_ok=True)

    def _resume(self) -> None:
        folder = None if self.media_dir is None else self.media_dir / ".uploads"
        if folder is None or not folder.is_dir():
            return
        resumed = 0
        for record in sorted(folder.glob("*.json")):
            try:
                raw = json.loads(record.read_text(encoding="utf-8"))
                path, kind = Path(raw["path"]), str(raw["kind"])
                target = MediaTarget.model_validate(raw["target"])
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("unreadable upload record %s removed", record.name)
                record.unlink(missing_ok=True)
                continue
            self._push(path, kind, target, 0.0)
            resumed += 1
        if resumed:
            log.info("%d media uploads resumed", resumed)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current upload; files not uploaded stay on disk (and, with a
        media folder, are resumed by the next uploader on it)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._own_client:
            self._client.close()

    def enqueue(
        self, path: Path, kind: str, target: MediaTarget, *, not_before: float = 0.0
    ) -> None:
        """Queue ``path`` for upload as ``kind`` (``snapshots`` or ``clips``).

        ``not_before`` is a ``time.monotonic()`` time before which the file is not sent
        (a clip is complete a few seconds after its event).

        Raises:
            ValueError: an unknown kind.
        """
        if kind not in MEDIA_KINDS:
            raise ValueError(f"media kind must be one of {sorted(MEDIA_KINDS)}, not {kind!r}")
        self.start()  # first: resuming recorded uploads must not see this one's record
        item = self._push(Path(path), kind, target, not_before)
        try:
            self._record(item)
        except OSError as err:
            log.warning("upload of %s not recorded on disk: %s", item.path.name, err.strerror)

    def _push(self, path: Path, kind: str, target: MediaTarget, not_before: float) -> _Item:
        now = time.monotonic()
        item = _Item(
            due=max(now, not_before),
            seq=next(self._seq),
            path=path,
            kind=kind,
            target=target,
            wait_until=max(now, not_before) + self.file_wait_seconds,
        )
        with self._cond:
            heapq.heappush(self._heap, item)
            self._cond.notify_all()
        return item

    def pending(self) -> int:
        """Files queued or being uploaded."""
        with self._cond:
            return len(self._heap) + self._busy

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is pending; return whether that happened within ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.pending():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def upload(self, path: Path, kind: str, target: MediaTarget) -> None:
        """Upload one file now (in the caller's thread), with retries.

        Raises:
            FileNotFoundError: no such file.
            UploadError: the platform refused it, or every attempt failed.
        """
        data = path.read_bytes()
        url = target.url_for(kind, path.name)
        headers = {"Content-Type": MEDIA_KINDS[kind], **target.headers}

        def put() -> None:
            try:
                response = self._client.put(url, content=data, headers=headers)
            except httpx.TransportError as err:
                raise _Retryable(f"{type(err).__name__}") from None
            if response.status_code in (408, 429) or response.status_code >= 500:
                raise _Retryable(f"HTTP {response.status_code}")
            if response.status_code >= 400:
                raise UploadError(
                    f"upload of {path.name} to {_redacted(url)} refused: HTTP "
                    f"{response.status_code}"
                )

        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff_seconds, max=30.0),
            retry=retry_if_exception_type(_Retryable),
            reraise=False,
        )
        try:
            retrying(put)
        except RetryError as err:
            cause = err.last_attempt.exception()
            raise UploadError(
                f"upload of {path.name} to {_redacted(url)} failed {self.attempts} times: {cause}"
            ) from None

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                if not self._heap:
                    self._cond.wait(0.5)
                    continue
                delay = self._heap[0].due - time.monotonic()
                if delay > 0:
                    self._cond.wait(min(delay, 0.5))
                    continue
                item = heapq.heappop(self._heap)
                self._busy += 1
            try:
                self._process(item)
            finally:
                with self._cond:
                    self._busy -= 1

    def _requeue(self, item: _Item, after: float) -> None:
        item.due = time.monotonic() + after
        item.seq = next(self._seq)
        with self._cond:
            heapq.heappush(self._heap, item)

    def _process(self, item: _Item) -> None:
        if not item.path.is_file():
            if time.monotonic() < item.wait_until:
                self._requeue(item, 1.0)
            else:
                log.warning("media %s never appeared; not uploaded", item.path.name)
                self._forget(item)
            return
        try:
            self.upload(item.path, item.kind, item.target)
        except UploadError as err:
            self.failures += 1
            item.rounds += 1
            log.warning("%s; kept on disk, retrying in %.0f s", err, self.retry_interval_seconds)
            self._requeue(item, self.retry_interval_seconds)
            return
        except OSError as err:
            log.warning("media %s cannot be read: %s", item.path.name, err.strerror)
            self._requeue(item, self.retry_interval_seconds)
            return
        self.uploaded += 1
        log.debug("media %s/%s uploaded", item.kind, item.path.name)
        self._forget(item)
        if self.delete_uploaded:
            item.path.unlink(missing_ok=True)
