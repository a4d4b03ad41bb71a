"""Live view: a camera's video with detection boxes drawn, sent to a browser over WebRTC.

The platform forwards a browser's SDP offer to the connector of the camera as the command
``live.offer`` (``device_id`` = the camera; params ``{"sdp": ..., "type": "offer"}``). The
connector answers with ``{"sdp": ..., "type": "answer", "session_id": ..., ...}`` once its
ICE candidates are gathered (no trickle: the answer holds every candidate), and the video
then flows from the connector to the browser directly (SRTP over UDP). ``live.stop``
(params ``{"session_id": ...}``) ends a session; a session also ends when the browser closes
or loses the connection, when it does not connect within :data:`CONNECT_TIMEOUT_SECONDS`,
and when the connector stops.

What a viewer sees: the camera's newest frame at most ``live.max_fps`` times per second,
scaled down to fit ``live.max_width`` × ``live.max_height``, with

* the boxes of a stream plan running on that camera (class, confidence and track id) and
  its zones and lines, when the plan manager offers them (:class:`PlanFrames`);
* otherwise the boxes of the default detector (class and confidence) run on the shared
  detector at most ``live.detect_fps`` times per second (the newest boxes are drawn on the
  frames in between).

One annotation thread per watched camera serves all its viewers; each viewer has its own
encoder, which is why ``live.max_viewers_per_camera`` bounds them (a further offer is
refused with the code ``viewer_limit``).

ICE host candidates: aioice offers every non-loopback address of the machine (the live view
falls back to ``127.0.0.1`` when there is none). The setting
``live.host_addresses`` (else the environment variable ``AIOS_WEBRTC_HOST_ADDRESSES``,
comma-separated) replaces that list — ``127.0.0.1`` for a browser on the same machine, the
site LAN address on a connector with several interfaces. The browser's own host
candidates are usually hidden behind mDNS names (``<uuid>.local``); they are not resolved
(that would multicast on the LAN and wait for answers): the browser's connectivity checks
reveal its address (a peer-reflexive candidate, RFC 8445 §7.3.1.3), which is also how a
browser on another network reaches the connector.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from aios.vision.types import BGRImage, Detections, DetectionsFrame, Frame
from connector.cameras import CameraWorker
from connector.config import LiveConfig

log = logging.getLogger(__name__)

LIVE_COMMANDS = ("live.offer", "live.stop")
"""The commands :meth:`LiveManager.execute` answers (``device_id`` = a camera)."""

HOST_ADDRESSES_ENV = "AIOS_WEBRTC_HOST_ADDRESSES"
"""Comma-separated ICE host addresses, used when ``live.host_addresses`` is unset."""

CONNECT_TIMEOUT_SECONDS = 20.0
"""A session whose browser has not connected by then is closed."""

DISCONNECTED_GRACE_SECONDS = 8.0
"""A session whose connection stays ``disconnected`` this long is closed."""

ANSWER_TIMEOUT_SECONDS = 10.0
"""Longest time to build an answer (candidates gathered)."""

PLAN_DETECTIONS_MAX_AGE_SECONDS = 2.0
"""Detections a stream plan reported longer ago than this are stale: the live view runs
its own detector instead."""

MAX_SDP_CHARS = 60_000
"""An offer longer than this is refused."""

PLACEHOLDER_SIZE = (640, 360)
"""Width, height of the frames sent while the camera has not delivered one yet."""

_CLOCK_RATE = 90_000


class LiveError(Exception):
    """A live command refused; ``code`` is stable (``viewer_limit``, ``not_a_camera``,
    ``invalid_offer``, ``disabled``, ``unknown_session``, ``failed``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


FrameListener = Callable[[Frame, Mapping[tuple[str, str], Any], Sequence[Any]], None]
"""Called by a stream plan after each processed frame: the frame, the port values of that
frame (detections among them) and the plan's overlays (nodes with ``draw(image)``)."""


@runtime_checkable
class PlanFrames(Protocol):
    """What the live view needs of the stream plans (optional): a way to watch the frames
    a plan processes on a camera."""

    def add_frame_listener(self, camera_id: str, listener: FrameListener) -> Callable[[], None]:
        """Call ``listener`` after each frame a plan processes on ``camera_id``; return the
        function that removes it."""
        ...


# --------------------------------------------------------------------------- ICE addresses

_HOST_ADDRESSES: dict[asyncio.AbstractEventLoop, list[str]] = {}
_PATCH_LOCK = threading.Lock()


def host_addresses(config: LiveConfig) -> list[str] | None:
    """The ICE host addresses to offer: ``live.host_addresses``, else
    :data:`HOST_ADDRESSES_ENV`, else ``None``: every non-loopback address (aioice's choice),
    or ``127.0.0.1`` on a machine that has none (a laptop offline, browser beside it).

    Raises:
        ValueError: the environment variable holds something that is not an IP address.
    """
    if config.host_addresses is not None:
        return list(config.host_addresses)
    raw = os.environ.get(HOST_ADDRESSES_ENV, "").strip()
    if not raw:
        return None
    import ipaddress

    out: list[str] = []
    for item in raw.split(","):
        part = item.strip()
        if not part:
            continue
        try:
            out.append(str(ipaddress.ip_address(part)))
        except ValueError:
            raise ValueError(
                f"{HOST_ADDRESSES_ENV}: {part!r} is not an IP address (comma-separated list, "
                "e.g. 127.0.0.1,192.168.1.10)"
            ) from None
    return out or None


def _install_address_hook() -> None:
    """Let each live event loop choose aioice's host addresses (others keep the default)."""
    import aioice.ice

    with _PATCH_LOCK:
        original = aioice.ice.get_host_addresses
        if getattr(original, "aios_live_hook", False):
            return

        def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
            try:
                loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is None or loop not in _HOST_ADDRESSES:
                return original(use_ipv4, use_ipv6)
            chosen = _HOST_ADDRESSES[loop]
            if not chosen:  # the default: every non-loopback address, else loopback
                found = original(use_ipv4, use_ipv6)
                return found or (["127.0.0.1"] if use_ipv4 else [])
            return [a for a in chosen if (use_ipv6 if ":" in a else use_ipv4)]

        get_host_addresses.aios_live_hook = True  # type: ignore[attr-defined]
        aioice.ice.get_host_addresses = get_host_addresses


def strip_mdns_candidates(sdp: str) -> str:
    """Remove the ``a=candidate`` lines whose address is an mDNS name (``*.local``)."""
    lines = sdp.splitlines()
    kept = [
        line
        for line in lines
        if not (
            line.startswith("a=candidate:")
            and len(parts := line.split()) > 4
            and parts[4].lower().endswith(".local")
        )
    ]
    return "\r\n".join(kept) + "\r\n"


# --------------------------------------------------------------------------- drawing


def fit_size(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """The size ``width`` × ``height`` scaled down (never up) to fit the bounds, keeping
    the aspect ratio, rounded down to even numbers (what video encoders need)."""
    scale = min(1.0, max_width / max(1, width), max_height / max(1, height))
    w = max(2, int(width * scale))
    h = max(2, int(height * scale))
    return w - w % 2, h - h % 2


def best_detections(values: Mapping[tuple[str, str], Any]) -> Detections | None:
    """The detections to draw among a frame's port values: the largest unfiltered set
    (the detector's or tracker's output, not a zone's subset); ``None`` if none."""
    best: DetectionsFrame | None = None
    for value in values.values():
        if isinstance(value, DetectionsFrame) and not value.regions:
            if best is None or len(value.detections) > len(best.detections):
                best = value
            elif (
                len(value.detections) == len(best.detections)
                and value.detections.tracker_id is not None
                and best.detections.tracker_id is None
            ):
                best = value  # the tracked copy: its labels carry track ids
    return None if best is None else best.detections


def annotate(
    image: BGRImage,
    detections: Detections | None,
    overlays: Sequence[Any] = (),
    *,
    size: tuple[int, int] | None = None,
) -> BGRImage:
    """Draw overlays (zones, lines) and boxes on a copy of ``image``, then resize it.

    Args:
        image: BGR ``(H, W, 3)`` ``uint8``; the boxes are in its pixels.
        detections: boxes to draw (labels: ``#track class confidence``), or ``None``.
        overlays: objects with ``draw(image)`` drawing in place (plan zones and lines).
        size: output ``(width, height)``; ``None`` keeps the size.

    Returns:
        The annotated image, ``(height, width, 3)`` ``uint8``.
    """
    from aios.vision.annotate import draw_detections

    out = image.copy()
    for overlay in overlays:
        try:
            overlay.draw(out)
        except Exception:  # a node's drawing bug must not end the live view
            log.debug("overlay %r failed to draw", overlay, exc_info=True)
    if detections is not None and len(detections):
        draw_detections(out, detections, copy=False)
    if size is not None and (out.shape[1], out.shape[0]) != size:
        out = np.asarray(cv2.resize(out, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    return out


def placeholder(text: str, size: tuple[int, int] = PLACEHOLDER_SIZE) -> BGRImage:
    """A dark grey frame with ``text`` in the middle (sent until the camera delivers)."""
    width, height = size
    image = np.full((height, width, 3), 32, dtype=np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), _ = cv2.getTextSize(text, font, 0.6, 1)
    cv2.putText(
        image,
        text,
        (max(0, (width - tw) // 2), (height + th) // 2),
        font,
        0.6,
        (220, 220, 220),
        1,
        cv2.LINE_AA,
    )
    return image


# --------------------------------------------------------------------------- one camera


class _SharedDetector:
    """The default detection model for every watched camera, loaded in the background on
    first use (no boxes until it is ready, so the video starts at once)."""

    def __init__(self, min_confidence: float) -> None:
        self.min_confidence = min_confidence
        self._lock = threading.Lock()
        self._detector: Any = None
        self._loading = False
        self._failed: str | None = None

    def _load(self) -> None:
        try:
            from aios.vision.detector import Detector
            from aios.vision.model_store import resolve_model_path

            detector = Detector(resolve_model_path(None), min_confidence=self.min_confidence)
        except Exception as err:
            with self._lock:
                self._failed = str(err)
            log.warning("live view: no detection model, boxes not drawn: %s", err)
            return
        with self._lock:
            self._detector = detector

    def detect(self, image: BGRImage) -> Detections | None:
        """Boxes found in ``image``; ``None`` while the model loads or if it cannot."""
        with self._lock:
            detector = self._detector
            if detector is None and not self._loading and self._failed is None:
                self._loading = True
                threading.Thread(target=self._load, name="live-model", daemon=True).start()
        if detector is None:
            return None
        result: Detections = detector.detect(image)
        return result


@dataclass
class _Annotated:
    image: BGRImage
    index: int
    stamp: float


class _CameraFeed:
    """Annotates one camera's newest frames for its viewers, in its own thread."""

    def __init__(self, manager: LiveManager, camera_id: str) -> None:
        self.manager = manager
        self.camera_id = camera_id
        self.config = manager.config
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._latest: _Annotated | None = None
        self._plan: tuple[Frame, Detections | None, list[Any], float] | None = None
        self._own: tuple[Detections | None, float] = (None, 0.0)
        self._remove_listener: Callable[[], None] | None = None
        self.frames = 0
        self.boxes_from = "none"
        self._thread = threading.Thread(target=self._run, name=f"live-{camera_id}", daemon=True)

    def start(self) -> None:
        plans = self.manager.plans
        if plans is not None:
            try:
                self._remove_listener = plans.add_frame_listener(self.camera_id, self._on_plan)
            except Exception:
                log.exception("live view of %s: cannot watch the stream plans", self.camera_id)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        if self._thread is not threading.current_thread():
            self._thread.join(5.0)

    def latest(self) -> _Annotated | None:
        with self._lock:
            return self._latest

    def size_hint(self) -> tuple[int, int]:
        """The size the frames will have (the camera's, fitted), else :data:`PLACEHOLDER_SIZE`."""
        worker = self.manager.cameras(self.camera_id)
        frame = None if worker is None else worker.snapshot(0.0)
        if frame is None:
            return PLACEHOLDER_SIZE
        return fit_size(frame.width, frame.height, self.config.max_width, self.config.max_height)

    def _on_plan(
        self, frame: Frame, values: Mapping[tuple[str, str], Any], overlays: Sequence[Any]
    ) -> None:
        detections = best_detections(values)
        with self._lock:
            self._plan = (frame, detections, list(overlays), time.monotonic())

    def _boxes(self, frame: Frame) -> tuple[Detections | None, list[Any]]:
        now = time.monotonic()
        with self._lock:
            plan = self._plan
        if plan is not None and now - plan[3] <= PLAN_DETECTIONS_MAX_AGE_SECONDS:
            self.boxes_from = "plan"
            return plan[1], plan[2]
        if self.config.detect_fps <= 0:
            self.boxes_from = "none"
            return None, []
        detections, at = self._own
        if now - at >= 1.0 / self.config.detect_fps:
            detections = self.manager.detector.detect(frame.image)
            self._own = (detections, time.monotonic())
        self.boxes_from = "detector" if detections is not None else "none"
        return detections, []

    def _run(self) -> None:
        period = 1.0 / self.config.max_fps
        last_index = -1
        last_worker: CameraWorker | None = None
        while not self._stop.is_set():
            started = time.monotonic()
            worker = self.manager.cameras(self.camera_id)
            if worker is not last_worker:
                last_index, last_worker = -1, worker
            frame = None if worker is None or worker.stopped else worker.snapshot(0.0)
            if frame is None or frame.index == last_index:
                self._stop.wait(min(period, 0.05))
                continue
            last_index = frame.index
            try:
                detections, overlays = self._boxes(frame)
                size = fit_size(
                    frame.width, frame.height, self.config.max_width, self.config.max_height
                )
                image = annotate(frame.image, detections, overlays, size=size)
            except Exception:
                log.exception("live view of %s: annotating a frame failed", self.camera_id)
                self._stop.wait(1.0)
                continue
            with self._lock:
                self._latest = _Annotated(image, frame.index, time.monotonic())
            self.frames += 1
            self._stop.wait(max(0.0, period - (time.monotonic() - started)))


# --------------------------------------------------------------------------- sessions


@dataclass
class LiveSession:
    """One browser watching one camera."""

    session_id: str
    camera_id: str
    created: float
    pc: Any = None
    state: str = "new"
    frames_sent: int = 0
    closed: bool = False
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


def _video_track_class() -> Any:
    from aiortc import VideoStreamTrack
    from av import VideoFrame

    class LiveTrack(VideoStreamTrack):
        """Sends the feed's newest annotated frame at most ``fps`` times per second."""

        def __init__(self, feed: _CameraFeed, session: LiveSession, fps: float) -> None:
            super().__init__()
            self.feed = feed
            self.session = session
            self.period = 1.0 / fps
            self._t0: float | None = None
            self._next = 0.0
            self._wait_image: BGRImage | None = None

        async def recv(self) -> Any:
            now = time.monotonic()
            if self._t0 is None:
                self._t0 = self._next = now
            else:
                self._next += self.period
                wait = self._next - now
                if wait > 0:
                    await asyncio.sleep(wait)
                elif wait < -1.0:  # fell far behind (a stall): do not burst to catch up
                    self._next = now
            latest = self.feed.latest()
            if latest is not None:
                image = latest.image
            else:
                if self._wait_image is None:
                    self._wait_image = placeholder(
                        f"waiting for camera {self.feed.camera_id}", self.feed.size_hint()
                    )
                image = self._wait_image
            frame = VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = int((self._next - self._t0) * _CLOCK_RATE)
            frame.time_base = Fraction(1, _CLOCK_RATE)
            self.session.frames_sent += 1
            return frame

    return LiveTrack


class LiveManager:
    """The live sessions of one connector.

    Args:
        config: the ``live`` section (replace it with :meth:`configure`).
        cameras: looks a camera worker up by id (``None``: no such enabled camera).
        plans: the stream plans, if they offer their frames (:class:`PlanFrames`).

    Sessions run on one asyncio loop in a thread of their own, started with the first
    offer. :meth:`execute` is called from the daemon's command threads.
    """

    def __init__(
        self,
        config: LiveConfig,
        cameras: Callable[[str], CameraWorker | None],
        plans: PlanFrames | None = None,
    ) -> None:
        self.config = config
        self.cameras = cameras
        self.plans = plans
        self.detector = _SharedDetector(config.min_confidence)
        self._lock = threading.Lock()
        self._sessions: dict[str, LiveSession] = {}
        self._feeds: dict[str, _CameraFeed] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def configure(self, config: LiveConfig) -> None:
        """Use a new ``live`` section for new sessions (running ones keep theirs)."""
        with self._lock:
            if config.min_confidence != self.config.min_confidence:
                self.detector = _SharedDetector(config.min_confidence)
            self.config = config

    # -- commands ---------------------------------------------------------------------

    def execute(
        self, device_id: str, name: str, params: Mapping[str, Any]
    ) -> tuple[bool, dict[str, Any] | None, str | None]:
        """Run a live command; return ``(ok, result, error)`` for the command response.

        ``live.offer`` → ``{"type": "answer", "sdp", "session_id", "camera_id", "max_fps"}``;
        ``live.stop`` → ``{"session_id", "stopped": bool}``. A refusal is ``ok=False`` with
        ``result={"code": ...}`` (see :class:`LiveError`) and a message saying what to do.
        """
        try:
            if name == "live.offer":
                return True, self.offer(device_id, params), None
            if name == "live.stop":
                session_id = params.get("session_id")
                if not isinstance(session_id, str):
                    raise LiveError("invalid_offer", "live.stop needs params.session_id")
                return True, {"session_id": session_id, "stopped": self.stop(session_id)}, None
            raise LiveError("failed", f"unknown live command {name!r}")
        except LiveError as err:
            return False, {"code": err.code}, err.message

    def offer(self, camera_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Answer a browser's offer to watch ``camera_id``.

        Raises:
            LiveError: live view disabled, not a camera of this connector, too many
                viewers, an invalid offer, or the answer could not be built in time.
        """
        config = self.config
        if not config.enabled:
            raise LiveError("disabled", "live view is disabled on this connector (live.enabled)")
        sdp = params.get("sdp")
        if params.get("type", "offer") != "offer" or not isinstance(sdp, str) or not sdp:
            raise LiveError("invalid_offer", 'params must be {"type": "offer", "sdp": "<SDP>"}')
        if len(sdp) > MAX_SDP_CHARS:
            raise LiveError("invalid_offer", f"the offer is longer than {MAX_SDP_CHARS} chars")
        if "m=video" not in sdp:
            raise LiveError("invalid_offer", "the offer has no video section (m=video)")
        if self.cameras(camera_id) is None:
            raise LiveError(
                "not_a_camera", f"{camera_id!r} is not an enabled camera of this connector"
            )
        try:
            addresses = host_addresses(config)
        except ValueError as err:
            raise LiveError("failed", str(err)) from None
        session = LiveSession(uuid.uuid4().hex, camera_id, time.monotonic())
        with self._lock:
            if self._closed:
                raise LiveError("failed", "the connector is stopping")
            viewers = sum(1 for s in self._sessions.values() if s.camera_id == camera_id)
            if viewers >= config.max_viewers_per_camera:
                raise LiveError(
                    "viewer_limit",
                    f"camera {camera_id!r} already has {viewers} live viewer(s), the most "
                    f"allowed (live.max_viewers_per_camera = {config.max_viewers_per_camera}); "
                    "close another live view first",
                )
            self._sessions[session.session_id] = session
            feed = self._feeds.get(camera_id)
            if feed is None:
                feed = self._feeds[camera_id] = _CameraFeed(self, camera_id)
                feed.start()
            loop = self._ensure_loop(addresses)
        future = asyncio.run_coroutine_threadsafe(self._answer(session, sdp, feed), loop)
        try:
            answer_sdp = future.result(ANSWER_TIMEOUT_SECONDS)
        except LiveError:
            self.stop(session.session_id)
            raise
        except TimeoutError:
            future.cancel()
            self.stop(session.session_id)
            raise LiveError(
                "failed", f"no answer within {ANSWER_TIMEOUT_SECONDS:g} s (ICE gathering)"
            ) from None
        except Exception as err:
            self.stop(session.session_id)
            log.warning("live view of %s: offer failed: %s", camera_id, err)
            raise LiveError("invalid_offer", f"the offer could not be answered: {err}") from None
        log.info(
            "live view %s of camera %s: answered (%d viewer(s) now)",
            session.session_id,
            camera_id,
            self.viewers(camera_id),
        )
        return {
            "type": "answer",
            "sdp": answer_sdp,
            "session_id": session.session_id,
            "camera_id": camera_id,
            "max_fps": config.max_fps,
        }

    def stop(self, session_id: str) -> bool:
        """End a session; ``False`` if it was not running."""
        with self._lock:
            session = self._sessions.get(session_id)
            loop = self._loop
        if session is None:
            return False
        if loop is not None and loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._close(session, "stopped"), loop)
            try:
                future.result(5.0)
            except Exception:
                log.exception("live view %s: closing failed", session_id)
                self._forget(session_id)
        else:
            self._forget(session_id)
        return True

    # -- status -----------------------------------------------------------------------

    def viewers(self, camera_id: str | None = None) -> int:
        """Open sessions (of one camera, or all)."""
        with self._lock:
            return sum(
                1 for s in self._sessions.values() if camera_id is None or s.camera_id == camera_id
            )

    def status(self) -> list[dict[str, Any]]:
        """One entry per session: id, camera, connection state, frames sent, age (s)."""
        now = time.monotonic()
        with self._lock:
            sessions = list(self._sessions.values())
            feeds = dict(self._feeds)
        return [
            {
                "session_id": s.session_id,
                "camera_id": s.camera_id,
                "state": s.state,
                "frames_sent": s.frames_sent,
                "boxes_from": feeds[s.camera_id].boxes_from if s.camera_id in feeds else "none",
                "age_seconds": round(now - s.created, 1),
            }
            for s in sessions
        ]

    def close_all(self, timeout: float = 5.0) -> None:
        """Close every session, stop the feeds and the event loop (the connector stops)."""
        with self._lock:
            self._closed = True
            sessions = list(self._sessions.values())
            loop, thread = self._loop, self._thread
        if loop is not None and loop.is_running():
            if sessions:
                future = asyncio.run_coroutine_threadsafe(
                    asyncio.wait_for(
                        asyncio.gather(
                            *(self._close(s, "connector stopping") for s in sessions),
                            return_exceptions=True,
                        ),
                        timeout,
                    ),
                    loop,
                )
                try:
                    future.result(timeout + 1.0)
                except Exception:
                    log.warning("live view: closing the sessions took too long")
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout)
        with self._lock:
            feeds = list(self._feeds.values())
            self._feeds.clear()
            self._sessions.clear()
            if loop is not None:
                _HOST_ADDRESSES.pop(loop, None)
        for feed in feeds:
            feed.stop()
        if loop is not None and not loop.is_running():
            loop.close()

    # -- event loop side --------------------------------------------------------------

    def _ensure_loop(self, addresses: list[str] | None) -> asyncio.AbstractEventLoop:
        """The sessions' loop (started on first use); caller holds ``self._lock``."""
        _install_address_hook()
        if self._loop is None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._thread = threading.Thread(
                target=self._run_loop, args=(loop,), name="live-webrtc", daemon=True
            )
            self._thread.start()
        _HOST_ADDRESSES[self._loop] = addresses or []  # []: the default choice
        return self._loop

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()

    async def _answer(self, session: LiveSession, sdp: str, feed: _CameraFeed) -> str:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN: nothing leaves
        session.pc = pc

        @pc.on("connectionstatechange")
        async def _on_state() -> None:
            session.state = pc.connectionState
            log.info("live view %s: %s", session.session_id, pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                await self._close(session, pc.connectionState)
            elif pc.connectionState == "disconnected":
                session.tasks.append(asyncio.ensure_future(self._close_if_still(session)))

        await pc.setRemoteDescription(
            RTCSessionDescription(sdp=strip_mdns_candidates(sdp), type="offer")
        )
        video = [t for t in pc.getTransceivers() if t.kind == "video"]
        if not video:
            raise LiveError("invalid_offer", "the offer has no video section (m=video)")
        track = _video_track_class()(feed, session, self.config.max_fps)
        video[0].sender.replaceTrack(track)
        video[0].direction = "sendonly"
        for extra in pc.getTransceivers():
            if extra is not video[0]:
                extra.direction = "inactive"
        await pc.setLocalDescription(await pc.createAnswer())
        session.tasks.append(asyncio.ensure_future(self._close_unless_connected(session)))
        answer: str = pc.localDescription.sdp
        return answer

    async def _close_unless_connected(self, session: LiveSession) -> None:
        await asyncio.sleep(CONNECT_TIMEOUT_SECONDS)
        if session.state != "connected" and not session.closed:
            log.info("live view %s: the browser did not connect; closed", session.session_id)
            await self._close(session, "not connected")

    async def _close_if_still(self, session: LiveSession) -> None:
        await asyncio.sleep(DISCONNECTED_GRACE_SECONDS)
        if session.state == "disconnected" and not session.closed:
            await self._close(session, "disconnected")

    async def _close(self, session: LiveSession, why: str) -> None:
        if session.closed:
            return
        session.closed = True
        current = asyncio.current_task()
        for task in session.tasks:
            if task is not current:
                task.cancel()
        if session.pc is not None:
            try:
                await session.pc.close()
            except Exception:
                log.debug("live view %s: close failed", session.session_id, exc_info=True)
        self._forget(session.session_id)
        log.info(
            "live view %s of camera %s ended (%s) after %d frame(s)",
            session.session_id,
            session.camera_id,
            why,
            session.frames_sent,
        )

    def _forget(self, session_id: str) -> None:
        """Drop a session; stop its camera's feed when it was the last viewer."""
        with self._lock:
            session = self._sessions.pop(session_id, None)
            if session is None:
                return
            camera_id = session.camera_id
            left = any(s.camera_id == camera_id for s in self._sessions.values())
            feed = None if left else self._feeds.pop(camera_id, None)
        if feed is not None:
            threading.Thread(target=feed.stop, name="live-feed-stop", daemon=True).start()
