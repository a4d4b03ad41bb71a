"""Camera snapshots for drawing zones and lines in the pipeline builder.

- ``GET /api/v1/devices/{device_id}/snapshot``: a fleet camera's newest frame. The API
  sends the camera's connector the ``snapshot`` command (recorded in the device's commands
  like any other) and waits for its answer up to ``timeout_seconds``; the connector answers
  a JPEG of at most :data:`aios.api.snapshots.MAX_SNAPSHOT_BYTES` in base64.
- ``POST /api/v1/cameras/snapshot``: one frame of a camera URL (``rtsp://``) or video file
  as a pipeline's camera node names it, read by this service (see
  :func:`aios.api.snapshots.grab_url`). The URL's password is never echoed (errors show
  ``rtsp://user:***@host/…``) and not recorded in the audit log (its entry names the host).

Both answer ``image/jpeg`` with ``X-Snapshot-Width``/``X-Snapshot-Height`` (pixels) and,
for a fleet camera, ``X-Snapshot-Time`` (the frame's UTC capture time). The API waits
while it fetches the frame (at most ``timeout_seconds``): keep it short.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from aios.api.errors import (
    BadGateway,
    GatewayTimeout,
    ServiceUnavailable,
    Unprocessable,
)
from aios.api.models import CameraSnapshotIn
from aios.api.permissions import API_PREFIX
from aios.api.routes._camera_commands import await_answer, camera_and_connector
from aios.api.routes.media import binary_response
from aios.api.snapshots import MAX_SNAPSHOT_BYTES, SnapshotError, grab_url
from aios.domain import CommandStatus
from aios.fleet.service import FleetService

if TYPE_CHECKING:
    from aios.api.app import ApiResolver

_JPEG_RESPONSE: dict[int, Any] = {
    200: {
        "description": "The JPEG.",
        "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def _jpeg(data: bytes, width: int, height: int, captured_at: str | None = None) -> Response[Any]:
    headers = {
        "Cache-Control": "no-store",
        "X-Snapshot-Width": str(width),
        "X-Snapshot-Height": str(height),
    }
    if captured_at:
        headers["X-Snapshot-Time"] = captured_at
    return Response(
        status_code=HTTPStatus.OK, content_type="image/jpeg", body=data, headers=headers
    )


def register(app: ApiResolver) -> None:
    """Add the snapshot routes."""
    store = app.services.store
    fleet = FleetService(app.services)

    @app.get(
        f"{API_PREFIX}/devices/<device_id>/snapshot",
        tags=["devices"],
        summary="A current JPEG of a camera (through its connector)",
        description=__doc__ or "",
        responses=_JPEG_RESPONSE,
    )
    @binary_response
    def device_snapshot(
        device_id: Annotated[str, Path(max_length=128, description="The camera's id.")],
        timeout_seconds: Annotated[
            float, Query(gt=0, le=30, description="How long to wait for the camera, s.")
        ] = 8.0,
    ) -> Response[Any]:
        _camera, connector = camera_and_connector(store, fleet, device_id, "snapshots")
        command = fleet.send_command(
            device_id,
            "snapshot",
            {"max_bytes": MAX_SNAPSHOT_BYTES, "wait_seconds": min(3.0, timeout_seconds)},
            actor=app.principal().username,
            timeout_seconds=timeout_seconds,
        )
        done = await_answer(store, command.request_id, timeout_seconds)
        if done is None:
            raise GatewayTimeout(
                f"camera '{device_id}' did not answer within {timeout_seconds:g} s: its "
                f"connector '{connector.id}' may be busy or the camera slow to start "
                f"(command {command.request_id})",
                code="camera_timeout",
            )
        if done.status is CommandStatus.TIMED_OUT:
            raise GatewayTimeout(
                f"camera '{device_id}' did not answer before the deadline", code="camera_timeout"
            )
        if done.status is not CommandStatus.SUCCEEDED:
            raise BadGateway(
                f"camera '{device_id}' could not take a snapshot: "
                f"{done.error or 'no reason given'}",
                code="snapshot_failed",
            )
        result = done.response or {}
        try:
            data = base64.b64decode(str(result.get("jpeg_base64", "")), validate=True)
        except (binascii.Error, ValueError):
            data = b""
        if not data.startswith(b"\xff\xd8"):
            raise BadGateway(
                f"the connector of camera '{device_id}' answered no JPEG",
                code="snapshot_failed",
            )
        return _jpeg(
            data,
            int(result.get("width") or 0),
            int(result.get("height") or 0),
            str(result.get("captured_at") or "") or None,
        )

    @app.post(
        f"{API_PREFIX}/cameras/snapshot",
        tags=["pipelines"],
        summary="A JPEG from a camera URL or video file (for the builder's camera nodes)",
        description=__doc__ or "",
        responses=_JPEG_RESPONSE,
    )
    @binary_response
    def url_snapshot(body: CameraSnapshotIn) -> Response[Any]:
        parts = urllib.parse.urlsplit(body.url)
        app.audit_target(parts.hostname or None, scheme=parts.scheme or "file")
        try:
            shot = grab_url(
                body.url,
                username=body.username,
                password=body.password,
                timeout_seconds=body.timeout_seconds,
            )
        except SnapshotError as err:
            if err.reason == "timeout":
                raise GatewayTimeout(err.message, code="camera_timeout") from None
            if err.reason == "unavailable":
                raise ServiceUnavailable(err.message, code="vision_unavailable") from None
            if err.reason in ("unsupported", "not_found"):
                raise Unprocessable.field("body.url", err.message) from None
            raise BadGateway(
                err.message,
                code="camera_auth_failed" if err.reason == "auth" else "camera_unreachable",
            ) from None
        return _jpeg(shot.jpeg, shot.width, shot.height)
