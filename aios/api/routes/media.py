"""``/api/v1/runs/{run_id}/media/{kind}/{name}``: download a run's snapshot or clip.

Stored events name their evidence by key and URL (``data.snapshot_url``, ``data.clip_url``;
see :mod:`aios.runs.media`); this route serves those files from the
:class:`~aios.runs.media.MediaStore` of the settings (on one machine the folder
``<data_dir>/runs/<run_id>/media/<kind>/``, strictly: no ``..``, no symbolic links).

The answer is the file's bytes, base64-encoded in the proxy response (``isBase64Encoded``:
API Gateway and ``aios up`` decode it), with ``Content-Type`` ``image/jpeg`` (snapshots)
or ``video/mp4`` (clips) and ``Cache-Control: private, max-age=3600``. A file over
:data:`~aios.runs.media.MAX_MEDIA_BYTES` is a 413 (``media_too_large``): a Lambda
response cannot carry it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path

from aios.api.errors import ApiError, NotFoundApi
from aios.api.permissions import API_PREFIX
from aios.runs.media import (
    MAX_MEDIA_BYTES,
    MEDIA_KINDS,
    MediaNotFound,
    MediaStore,
    MediaTooLarge,
    open_media_store,
    valid_media_name,
)

if TYPE_CHECKING:
    from aios.api.app import ApiResolver

MEDIA_CACHE_CONTROL = "private, max-age=3600"
"""Browsers may keep a downloaded file an hour; shared caches may not (it needs a token)."""


class PayloadTooLarge(ApiError):
    """413: the file is too large for one API response."""

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
    """Add the media download route (``media``: default, the store of the settings)."""
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
