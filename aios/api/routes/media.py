"""``/api/v1/runs/{run_id}/media/{kind}/{name}``: download (GET) or upload (PUT) a run's
snapshot or clip.

Stored events name their evidence by key and URL (``data.snapshot_url``, ``data.clip_url``;
see :mod:`aios.runs.media`); this route serves those files from the
:class:`~aios.runs.media.MediaStore` of the settings (on one machine the folder
``<data_dir>/runs/<run_id>/media/<kind>/``, strictly: no ``..``, no symbolic links; in
the cloud the bucket ``AIOS_MEDIA_BUCKET``, same keys).

The answer is the file's bytes, base64-encoded in the proxy response (``isBase64Encoded``:
API Gateway and ``aios up`` decode it), with ``Content-Type`` ``image/jpeg`` (snapshots)
or ``video/mp4`` (clips) and ``Cache-Control: private, max-age=3600``. A file over
:data:`~aios.runs.media.MAX_MEDIA_BYTES` is a 413 (``media_too_large``): a Lambda
response cannot carry it.

The PUT is how a connector running a run's stream tier at the edge (:mod:`aios.runs.edge`)
hands over the snapshots and clips of the events it published. It is not for users: it
takes no access token but the run's *upload grant* (``Authorization: Bearer <grant>``,
:func:`aios.api.auth.issue_upload_grant`, given to the connector in its stream plan), and
only for that run (403 otherwise), only while the run is active (409), a body of at most
:data:`~aios.runs.media.MAX_UPLOAD_BYTES` (413) that is a file of the kind named (JPEG,
MP4; 415 otherwise). The file is written atomically; 201 when written, 200 when the same
bytes were there already (a retried upload).
"""

from __future__ import annotations

import base64
import binascii
import inspect
import json
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path

from aios.api.auth import AuthFailed
from aios.api.errors import (
    ApiError,
    ConflictApi,
    Forbidden,
    NotFoundApi,
    Unauthorized,
    Unprocessable,
    UnsupportedMediaType,
)
from aios.api.permissions import API_PREFIX
from aios.runs.media import (
    MAX_MEDIA_BYTES,
    MAX_UPLOAD_BYTES,
    MEDIA_KINDS,
    MediaNotFound,
    MediaStore,
    MediaTooLarge,
    MediaWriteRefused,
    media_content_ok,
    open_media_store,
    valid_media_name,
)

if TYPE_CHECKING:
    from aios.api.app import ApiResolver

log = logging.getLogger(__name__)

MEDIA_CACHE_CONTROL = "private, max-age=3600"
"""Browsers may keep a downloaded file an hour; shared caches may not (it needs a token)."""


class PayloadTooLarge(ApiError):
    """413: the file is too large for one API response (or one upload)."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    code = "media_too_large"


RunId = Annotated[str, Path(max_length=128, description="The run's id.")]
Kind = Annotated[
    str,
    Path(
        pattern=r"^(snapshots|clips)$",
        description="`snapshots` (JPEG images) or `clips` (MP4 videos).",
    ),
]
Name = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9_.-]{1,128}\.(jpg|mp4)$",
        description="The file's name, as in the event's `snapshot_url` / `clip_url` "
        "(`<event_id>.jpg` for snapshots, `<event_id>.mp4` for clips).",
    ),
]


_F = TypeVar("_F", bound=Callable[..., Any])


def binary_response(route: _F) -> _F:
    """Hide ``route``'s return annotation from Powertools: with one, its response
    validation serialises the body as JSON-able data (bytes decoded as UTF-8, which a JPEG
    is not); without, a non-JSON :class:`Response` is passed through as is."""
    signature = inspect.signature(route)
    route.__signature__ = signature.replace(  # type: ignore[attr-defined]
        return_annotation=inspect.Signature.empty
    )
    return route


def register(app: ApiResolver, *, media: MediaStore | None = None) -> None:
    """Add the media download and upload routes (``media``: where downloads are read;
    default, the store of the settings)."""
    store = app.services.store
    files = media if media is not None else open_media_store(app.services.settings)

    @app.get(
        f"{API_PREFIX}/runs/<run_id>/media/<kind>/<name>",
        tags=["pipelines"],
        summary="Download a snapshot (JPEG) or clip (MP4) of a run's event",
        description="Serves the file an event's `data.snapshot_url` or `data.clip_url` "
        "names. The body is the file (image/jpeg or video/mp4); "
        f"files over {MAX_MEDIA_BYTES} bytes are refused (413).",
        responses={
            200: {
                "description": "The file.",
                "content": {
                    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                    "video/mp4": {"schema": {"type": "string", "format": "binary"}},
                },
            }
        },
    )
    @binary_response
    def read_media(run_id: RunId, kind: Kind, name: Name) -> Response[Any]:
        if store.runs.get(run_id) is None:
            raise NotFoundApi(f"run '{run_id}' does not exist")
        if not valid_media_name(kind, name):
            raise NotFoundApi(
                f"'{name}' is not a {kind[:-1]} name: {kind} are named "
                f"<event_id>{'.jpg' if kind == 'snapshots' else '.mp4'}"
            )
        try:
            body = files.read(run_id, kind, name, max_bytes=MAX_MEDIA_BYTES)
        except MediaNotFound:
            raise NotFoundApi(f"run '{run_id}' has no {kind[:-1]} '{name}'") from None
        except MediaTooLarge as err:
            raise PayloadTooLarge(
                f"the {kind[:-1]} '{name}' is {err.size} bytes; the API serves files of "
                f"at most {err.limit} bytes (a Lambda response is limited to 6 MB). "
                "Get it from the machine's data folder instead.",
            ) from None
        return Response(
            status_code=HTTPStatus.OK,
            content_type=MEDIA_KINDS[kind],
            body=body,
            headers={"Cache-Control": MEDIA_CACHE_CONTROL},
        )

    register_upload(app, files)


def _request_bytes(raw: dict[str, Any]) -> bytes:
    """The request body as sent (API Gateway passes a body that is not UTF-8 base64-encoded).

    Raises:
        Unprocessable: ``isBase64Encoded`` with a body that is not base64.
    """
    body = raw.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise Unprocessable.field("body", "the body could not be read", type_="body_invalid")
    if raw.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise Unprocessable.field(
                "body", "the body is marked base64 but is not", type_="body_invalid"
            ) from None
    return body.encode("utf-8")


def register_upload(app: ApiResolver, files: MediaStore | None = None) -> None:
    """Add the media upload route (connectors, with a run's upload grant); ``files``: where
    uploads are written (default, the store of the settings)."""
    store = app.services.store
    media = files if files is not None else open_media_store(app.services.settings)

    @app.put(
        f"{API_PREFIX}/runs/<run_id>/media/<kind>/<name>",
        tags=["pipelines"],
        summary="Upload a snapshot (JPEG) or clip (MP4) of a run's event (connectors only)",
        description="For connectors running a run's stream tier at the edge: the body is the "
        "file itself (image/jpeg or video/mp4, at most "
        f"{MAX_UPLOAD_BYTES} bytes), sent with 'Authorization: Bearer <upload grant>', the "
        "grant the run's stream plan gives (an access token is refused). Accepted only "
        "for the grant's run while it is active. 201: written; 200: the same file was "
        "there already.",
        status_code=201,
        responses={
            201: {
                "description": "The file was written (200: it was there already).",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    )
    @binary_response
    def upload_media(run_id: RunId, kind: Kind, name: Name) -> Response[Any]:
        event = app.current_event
        token = app.bearer_token(
            "send the run's upload grant: 'Authorization: Bearer <grant>' (it is in the "
            "run's stream plan)"
        )
        try:
            grant = app.auth.upload_grant(token)
        except AuthFailed as err:
            if err.reason == "expired":
                raise Unauthorized("the upload grant expired", code="token_expired") from None
            raise Unauthorized(
                "not a valid upload grant (an access token is not one)", code="invalid_token"
            ) from None
        if grant.run_id != run_id:
            raise Forbidden(f"this upload grant is for another run, not run '{run_id}'")
        run = store.runs.get(run_id)
        if run is None:
            raise NotFoundApi(f"run '{run_id}' does not exist")
        if not run.status.active:
            raise ConflictApi(
                f"run '{run_id}' is {run.status.value}; media are accepted only while it runs"
            )
        if not valid_media_name(kind, name):
            raise Unprocessable.field(
                "path.name",
                f"'{name}' is not a {kind[:-1]} name: {kind} are named "
                f"<event_id>{'.jpg' if kind == 'snapshots' else '.mp4'}",
                type_="string_pattern_mismatch",
            )
        data = _request_bytes(event.raw_event)
        if len(data) > MAX_UPLOAD_BYTES:
            raise PayloadTooLarge(
                f"the file is {len(data)} bytes; uploads are at most {MAX_UPLOAD_BYTES} bytes"
            )
        if not data:
            raise Unprocessable.field("body", "the body is empty: send the file", type_="missing")
        if not media_content_ok(kind, data):
            raise UnsupportedMediaType(
                f"the body is not a {'JPEG image' if kind == 'snapshots' else 'MP4 video'}; "
                f"{kind} are {MEDIA_KINDS[kind]}"
            )
        try:
            written = media.write(run_id, kind, name, data)
        except (MediaNotFound, MediaWriteRefused) as err:
            log.error("upload of %s/%s of run %s refused: %s", kind, name, run_id, err)
            raise ConflictApi(f"the {kind[:-1]} '{name}' cannot be written here") from None
        log.debug(
            "run %s: %s %s uploaded by connector %s (%d bytes%s)",
            run_id,
            kind[:-1],
            name,
            grant.connector_id,
            len(data),
            "" if written else ", unchanged",
        )
        return Response(
            status_code=HTTPStatus.CREATED if written else HTTPStatus.OK,
            content_type="application/json",
            body=json.dumps({"run_id": run_id, "kind": kind, "name": name, "bytes": len(data)}),
        )
