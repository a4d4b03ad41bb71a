"""``/api/v1/devices/{device_id}/live``: a camera's live video over WebRTC.

The browser makes an SDP offer (a receive-only video transceiver, ICE candidates gathered:
no trickle) and posts it here. The API forwards it to the connector of the camera as the
command ``live.offer`` (:mod:`connector.live`) over the usual command path
(``cmd/aios/{connector_id}/req``), waits for the connector's answer (at most
:data:`ANSWER_WAIT_SECONDS`) and returns it; the video then flows from the connector to the
browser directly. ``DELETE …/live/{session_id}`` ends a session early (closing the browser's
peer connection ends it too).

Errors: 404 unknown device; 409 ``not_a_camera`` (the device is not a camera),
``no_connector`` (a camera not behind a connector), ``viewer_limit`` (the camera has as many
viewers as its connector allows), ``live_disabled``; 422 an invalid offer; 502
``live_failed`` (the connector could not answer the offer: the message says why); 503
``device_unreachable`` (the camera's connector is offline, or this process has no link to
the devices); 504 ``live_timeout`` (no answer in time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path
from pydantic import BaseModel, Field

from aios.api.errors import (
    BadGateway,
    ConflictApi,
    GatewayTimeout,
    Unprocessable,
)
from aios.api.models import RequestModel
from aios.api.permissions import API_PREFIX
from aios.api.routes._camera_commands import await_answer, camera_and_connector
from aios.domain import CommandStatus
from aios.fleet.service import FleetService

if TYPE_CHECKING:
    from aios.api.app import ApiResolver

ANSWER_WAIT_SECONDS = 15.0
"""Longest wait for the connector's answer to an offer (it gathers its ICE candidates
first, usually well under a second)."""

STOP_WAIT_SECONDS = 5.0
"""Longest wait for the connector to confirm a session ended."""


MAX_SDP_CHARS = 60_000

DeviceId = Annotated[str, Path(max_length=128, description="The camera's id.")]
SessionId = Annotated[
    str, Path(max_length=64, pattern=r"^[0-9a-f]{8,64}$", description="The session's id.")
]

_REFUSALS: dict[str, tuple[type[Exception], str]] = {
    "viewer_limit": (ConflictApi, "viewer_limit"),
    "disabled": (ConflictApi, "live_disabled"),
    "not_a_camera": (ConflictApi, "not_a_camera"),
    "invalid_offer": (Unprocessable, "invalid_offer"),
}


class LiveOffer(RequestModel):
    """The browser's offer (``RTCPeerConnection.localDescription`` after ICE gathering)."""

    type: Literal["offer"] = Field(description="Always 'offer'.")
    sdp: str = Field(
        min_length=1, max_length=MAX_SDP_CHARS, description="The offer's SDP, candidates in it."
    )


class LiveAnswer(BaseModel):
    """The connector's answer: give it to ``setRemoteDescription``."""

    type: Literal["answer"]
    sdp: str = Field(description="The answer's SDP, with the connector's ICE candidates.")
    session_id: str = Field(description="Pass to DELETE …/live/{session_id} to end it.")
    device_id: str = Field(description="The camera.")
    connector_id: str = Field(description="The connector streaming it.")
    max_fps: float | None = Field(default=None, description="Frames per second, at most.")


def register(app: ApiResolver) -> None:
    """Add the live view routes."""
    store = app.services.store
    fleet = FleetService(app.services)

    @app.post(
        f"{API_PREFIX}/devices/<device_id>/live",
        tags=["live"],
        summary="Start a camera's live view (WebRTC): post the offer, get the answer",
        status_code=200,
    )
    def start_live(device_id: DeviceId, body: LiveOffer) -> LiveAnswer:
        camera, connector = camera_and_connector(store, fleet, device_id, "a live view")
        command = fleet.send_command(
            camera.id,
            "live.offer",
            {"type": "offer", "sdp": body.sdp},
            actor=app.principal().username,
            timeout_seconds=ANSWER_WAIT_SECONDS,
        )
        done = await_answer(store, command.request_id, ANSWER_WAIT_SECONDS)
        if done is None or done.status is CommandStatus.TIMED_OUT:
            raise GatewayTimeout(
                f"connector '{connector.id}' did not answer the live view offer within "
                f"{ANSWER_WAIT_SECONDS:g} s; check that it is running and try again",
                code="live_timeout",
            )
        response = done.response or {}
        if done.status is not CommandStatus.SUCCEEDED:
            message = done.error or "the connector refused the live view"
            refusal = _REFUSALS.get(str(response.get("code", "")))
            if refusal is not None:
                error_type, code = refusal
                if error_type is Unprocessable:
                    raise Unprocessable.field("body.sdp", message)
                raise ConflictApi(message, code=code)
            raise BadGateway(
                f"connector '{connector.id}' could not start the live view: {message}",
                code="live_failed",
            )
        try:
            return LiveAnswer(
                type="answer",
                sdp=str(response["sdp"]),
                session_id=str(response["session_id"]),
                device_id=camera.id,
                connector_id=connector.id,
                max_fps=response.get("max_fps"),
            )
        except (KeyError, ValueError) as err:
            raise BadGateway(
                f"connector '{connector.id}' answered the live view offer without {err}",
                code="live_failed",
            ) from None

    @app.delete(
        f"{API_PREFIX}/devices/<device_id>/live/<session_id>",
        tags=["live"],
        summary="End a live view session",
        status_code=204,
    )
    def stop_live(device_id: DeviceId, session_id: SessionId) -> Response[None]:
        camera, connector = camera_and_connector(store, fleet, device_id, "a live view")
        command = fleet.send_command(
            camera.id,
            "live.stop",
            {"session_id": session_id},
            actor=app.principal().username,
            timeout_seconds=STOP_WAIT_SECONDS,
        )
        done = await_answer(store, command.request_id, STOP_WAIT_SECONDS)
        if done is None or done.status is CommandStatus.TIMED_OUT:
            raise GatewayTimeout(
                f"connector '{connector.id}' did not confirm the end of the live view within "
                f"{STOP_WAIT_SECONDS:g} s (the session ends anyway once the browser leaves)",
                code="live_timeout",
            )
        if done.status is not CommandStatus.SUCCEEDED:
            raise BadGateway(
                f"connector '{connector.id}' could not end the live view: {done.error}",
                code="live_failed",
            )
        return Response(status_code=204, body=None)
