"""``aios/cv@1`` — OpenCV operations on an event's snapshot: crop, resize, blur, annotate.

The node reads the JPEG at the event's ``snapshot`` (a blob reference, written by the
stream node's evidence when ``evidence.snapshot`` is on), applies ``operations`` in order,
writes the result as a new JPEG (``snapshots/<event id>.<node id>.jpg`` in the blob store)
and returns the event with ``snapshot`` pointing at it. The first original is kept in
``snapshot_original`` (a second cv node downstream does not overwrite it). A summary goes
to ``data.cv``: ``{"size": [width, height], "applied": [...], "skipped": [...]}``.

Coordinates. ``bbox`` and the boxes listed at ``boxes_field`` are ``[x1, y1, x2, y2]``
pixels of the frame (``frame_width`` × ``frame_height``); a snapshot of another size is
handled by scaling (without a frame size, boxes are taken as snapshot pixels). Normalized
``rects`` are fractions of the frame. All of them follow earlier crops and resizes. A box
item at ``boxes_field`` is a list ``[x1, y1, x2, y2]`` or an object with ``bbox`` and
optionally ``label`` or ``class_name`` and ``confidence``.

Operations (``op``):

* ``crop`` — to the event's box grown by ``margin`` × the box's width/height on each side,
  clamped to the image;
* ``resize`` — to fit within ``max_width`` × ``max_height`` keeping the aspect ratio
  (``cv2.INTER_AREA`` down, ``cv2.INTER_LINEAR`` up; up only with ``upscale``);
* ``blur`` — Gaussian (kernel side ``strength`` × the region's longer side, made odd, at
  least 3; sigma derived by OpenCV from the kernel size) or pixelate (``cells`` blocks
  across the region's longer side) on the event's box, every box at ``boxes_field``, or
  fixed normalized ``rects`` (e.g. a window or a screen in view);
* ``annotate`` — draw the event's box and/or the listed boxes with labels (the event's
  label is a template, e.g. ``{{ event.class_name }} {{ event.track_id }}``).

An operation that needs a box the event does not have is skipped and listed in
``data.cv.skipped``.

Errors: no ``snapshot`` → :class:`PermanentError` (the upstream node must save snapshots:
``evidence.snapshot = true``); a missing or undecodable snapshot → ``PermanentError``; a
blob store that fails to read or write → :class:`TransientError`.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from aios.catalog.base import (
    Category,
    EventRole,
    NodeConfig,
    NodeManifest,
    NodeType,
    PortKind,
    PortSpec,
    Tier,
)
from aios.events.actions import Template, render
from aios.events.task import (
    Event,
    PermanentError,
    TaskRequest,
    TaskServices,
    TransientError,
)
from aios.nodes.transform import FieldPath, get_field, set_field
from aios.vision.types import BGRImage

Box = tuple[float, float, float, float]
"""``(x1, y1, x2, y2)`` in pixels."""

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
NormalizedRect = Annotated[
    tuple[Fraction, Fraction, Fraction, Fraction],
    Field(description="[x1, y1, x2, y2] as fractions of the frame width and height (0–1)."),
]
HexColor = Annotated[
    str,
    Field(
        pattern=r"^#[0-9a-fA-F]{6}$",
        description="Colour as #rrggbb, e.g. '#ff0000' for red.",
    ),
]

NO_SNAPSHOT = (
    "the event has no snapshot: the node that produced it must save snapshots "
    "(set evidence.snapshot = true on the zone, line or loitering node)"
)


# --- snapshot helpers (shared with aios/custom_model) ------------------------------------


def read_snapshot(event: Event, services: TaskServices) -> tuple[str, BGRImage]:
    """Read and decode the event's snapshot.

    Returns:
        ``(reference, image)``; image ``(H, W, 3)`` uint8 BGR.

    Raises:
        PermanentError: no ``snapshot`` field, the blob does not exist, or it is not an
            image.
        TransientError: the blob store failed to read.
    """
    from aios.vision.clips import decode_jpeg

    ref = event.get("snapshot")
    if not isinstance(ref, str) or not ref:
        raise PermanentError(NO_SNAPSHOT)
    try:
        data = services.blobs.read(ref)
    except FileNotFoundError as err:
        raise PermanentError(f"snapshot {ref} does not exist in the blob store") from err
    except OSError as err:
        raise TransientError(f"cannot read snapshot {ref}: {err}") from err
    try:
        return ref, decode_jpeg(data)
    except ValueError as err:
        raise PermanentError(f"snapshot {ref} is not a decodable image") from err


def frame_size(event: Event, image: BGRImage) -> tuple[float, float]:
    """The frame size the event's coordinates refer to (the image's own when unknown)."""
    h, w = image.shape[:2]
    fw, fh = event.get("frame_width"), event.get("frame_height")
    if isinstance(fw, int | float) and isinstance(fh, int | float) and fw > 0 and fh > 0:
        return float(fw), float(fh)
    return float(w), float(h)


def parse_box(value: Any) -> Box | None:
    """Return ``value`` as a box if it is four finite numbers with ``x1 < x2``, ``y1 < y2``."""
    if not isinstance(value, list | tuple) or len(value) != 4:
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        return None
    x1, y1, x2, y2 = (float(v) for v in value)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
        return None
    return x1, y1, x2, y2


def event_box_in_image(event: Event, image: BGRImage) -> Box | None:
    """The event's ``bbox`` in pixels of ``image`` (scaled from the frame), or ``None``."""
    box = parse_box(event.get("bbox"))
    if box is None:
        return None
    fw, fh = frame_size(event, image)
    sx, sy = image.shape[1] / fw, image.shape[0] / fh
    return box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy


def grow_and_clamp(box: Box, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """Grow ``box`` by ``margin`` × its width/height on each side, clamp it to the image and
    round outwards to whole pixels; an empty result has ``x2 <= x1`` or ``y2 <= y1``."""
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    return (
        max(0, math.floor(x1 - dx)),
        max(0, math.floor(y1 - dy)),
        min(width, math.ceil(x2 + dx)),
        min(height, math.ceil(y2 + dy)),
    )


# --- configuration -----------------------------------------------------------------------


class _Op(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CropOp(_Op):
    """Crop to the event's box."""

    op: Literal["crop"] = Field(title="Operation", description="Crop to the event's box.")
    margin: float = Field(
        default=0.1,
        ge=0.0,
        le=2.0,
        title="Margin",
        description="Extra space on each side, as a fraction of the box's width and height.",
    )


class ResizeOp(_Op):
    """Fit the image within a maximum size."""

    op: Literal["resize"] = Field(title="Operation", description="Resize, keeping the aspect.")
    max_width: int = Field(
        default=640,
        ge=16,
        le=8192,
        title="Max width (px)",
        description="Largest width in pixels.",
    )
    max_height: int = Field(
        default=640,
        ge=16,
        le=8192,
        title="Max height (px)",
        description="Largest height in pixels.",
    )
    upscale: bool = Field(
        default=False,
        title="Enlarge small images",
        description="Also enlarge images smaller than the maximum (off: only shrink).",
    )


class BlurOp(_Op):
    """Blur regions (faces, plates, screens)."""

    op: Literal["blur"] = Field(title="Operation", description="Blur regions.")
    region: Literal["event_box", "boxes", "rects"] = Field(
        default="event_box",
        title="Regions",
        description="'event_box': the event's box; 'boxes': every box at the node's "
        "boxes_field; 'rects': the fixed rectangles below.",
    )
    rects: list[NormalizedRect] = Field(
        default_factory=list,
        max_length=50,
        title="Rectangles",
        description="For region 'rects': [x1, y1, x2, y2] as fractions of the frame.",
    )
    method: Literal["gaussian", "pixelate"] = Field(
        default="gaussian",
        title="Method",
        description="'gaussian' blur or 'pixelate' (mosaic).",
    )
    strength: float = Field(
        default=0.5,
        ge=0.05,
        le=1.0,
        title="Strength",
        description="Gaussian: kernel size as a fraction (0.05–1) of the region's longer side.",
    )
    cells: int = Field(
        default=8,
        ge=2,
        le=64,
        title="Mosaic cells",
        description="Pixelate: blocks across the region's longer side (fewer: coarser).",
    )

    @model_validator(mode="after")
    def _rects_for_rects(self) -> BlurOp:
        if self.region == "rects" and not self.rects:
            raise ValueError("blur with region 'rects' needs at least one rectangle in 'rects'")
        if self.region != "rects" and self.rects:
            raise ValueError(f"'rects' is only used with region 'rects', not '{self.region}'")
        for rect in self.rects:
            if rect[2] <= rect[0] or rect[3] <= rect[1]:
                raise ValueError(f"rectangle {list(rect)} needs x1 < x2 and y1 < y2")
        return self


class AnnotateOp(_Op):
    """Draw boxes and labels."""

    op: Literal["annotate"] = Field(title="Operation", description="Draw boxes and labels.")
    boxes: Literal["event_box", "boxes", "both"] = Field(
        default="event_box",
        title="Boxes",
        description="'event_box': the event's box; 'boxes': those at boxes_field; 'both'.",
    )
    label: Template = Field(
        default="{{ event.class_name or '' }}",
        max_length=500,
        title="Label",
        description="Text on the event's box (a template: '{{ event.class_name }} "
        "#{{ event.track_id }}'); listed boxes show their own label or class_name.",
    )
    color: HexColor = Field(default="#ff0000", title="Colour")
    thickness: int = Field(
        default=2, ge=1, le=20, title="Line width (px)", description="Box border in pixels."
    )


Operation = Annotated[CropOp | ResizeOp | BlurOp | AnnotateOp, Field(discriminator="op")]


class CvConfig(NodeConfig):
    """Operations applied to the event's snapshot, in order."""

    operations: list[Operation] = Field(
        min_length=1,
        max_length=20,
        title="Operations",
        description="Applied in order: crop, resize, blur, annotate (each may repeat).",
    )
    boxes_field: FieldPath = Field(
        default="data.boxes",
        title="Boxes field",
        description="Event field with a list of boxes (frame pixels) for 'blur' and "
        "'annotate' with boxes: [x1, y1, x2, y2] or {bbox, label}.",
    )
    jpeg_quality: int = Field(
        default=90,
        ge=1,
        le=100,
        title="JPEG quality",
        description="Quality of the written JPEG (1–100).",
    )


MANIFEST = NodeManifest(
    type="aios/cv@1",
    category=Category.PROCESSING,
    tier=Tier.EVENT,
    title="Computer Vision",
    description="Crops the event's snapshot to the object, resizes it, blurs faces or "
    "regions and draws boxes and labels, before it is sent on.",
    icon="crop",
    inputs=(
        PortSpec(
            name="events",
            kind=PortKind.EVENT,
            title="Events",
            description="Events with a snapshot.",
            multiple=True,
        ),
    ),
    outputs=(
        PortSpec(
            name="events",
            kind=PortKind.EVENT,
            title="Events",
            description="The events with 'snapshot' replaced by the processed image.",
        ),
    ),
)


# --- implementation ----------------------------------------------------------------------


@dataclass
class _View:
    """Maps frame pixels to pixels of the current (cropped, resized) image:
    ``x_image = x_frame * ax + bx`` and ``y_image = y_frame * ay + by``."""

    ax: float
    bx: float
    ay: float
    by: float
    frame_w: float
    frame_h: float

    def box(self, box: Box) -> Box:
        x1, y1, x2, y2 = box
        return (
            x1 * self.ax + self.bx,
            y1 * self.ay + self.by,
            x2 * self.ax + self.bx,
            y2 * self.ay + self.by,
        )

    def rect(self, rect: tuple[float, float, float, float]) -> Box:
        x1, y1, x2, y2 = rect
        return self.box(
            (x1 * self.frame_w, y1 * self.frame_h, x2 * self.frame_w, y2 * self.frame_h)
        )


@dataclass(frozen=True)
class _Labelled:
    box: Box
    label: str


def _color_bgr(hex_color: str) -> tuple[int, int, int]:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return b, g, r


def _listed_boxes(event: Event, field: str) -> list[_Labelled]:
    raw = get_field(event, field)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise PermanentError(f"the event's '{field}' (boxes_field) is not a list of boxes")
    out: list[_Labelled] = []
    for i, item in enumerate(raw):
        label = ""
        value = item
        if isinstance(item, dict):
            value = item.get("bbox")
            name = item.get("label") or item.get("class_name") or ""
            score = item.get("confidence", item.get("score"))
            label = str(name) + (f" {score:.2f}" if isinstance(score, int | float) else "")
        box = parse_box(value)
        if box is None:
            raise PermanentError(
                f"{field}[{i}] is not a box: give [x1, y1, x2, y2] in frame pixels (x1 < x2, "
                "y1 < y2) or an object with 'bbox'"
            )
        out.append(_Labelled(box, label.strip()))
    return out


def _region(box: Box, image: BGRImage) -> tuple[int, int, int, int] | None:
    h, w = image.shape[:2]
    x1, y1, x2, y2 = grow_and_clamp(box, 0.0, w, h)
    return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None


def _blur(image: BGRImage, region: tuple[int, int, int, int], op: BlurOp) -> None:
    import cv2

    x1, y1, x2, y2 = region
    roi = image[y1:y2, x1:x2]
    rw, rh = x2 - x1, y2 - y1
    if op.method == "gaussian":
        k = max(3, round(op.strength * max(rw, rh)) // 2 * 2 + 1)
        image[y1:y2, x1:x2] = cv2.GaussianBlur(roi, (k, k), 0)
        return
    longer = max(rw, rh)
    small_w = max(1, round(rw * op.cells / longer))
    small_h = max(1, round(rh * op.cells / longer))
    small = cv2.resize(roi, (small_w, small_h), interpolation=cv2.INTER_AREA)
    image[y1:y2, x1:x2] = cv2.resize(small, (rw, rh), interpolation=cv2.INTER_NEAREST)


def _draw(image: BGRImage, box: Box, label: str, color: tuple[int, int, int], thick: int) -> bool:
    import cv2

    h, w = image.shape[:2]
    x1, y1, x2, y2 = (round(v) for v in box)
    if x2 < 0 or y2 < 0 or x1 >= w or y1 >= h:
        return False
    p1 = (int(np.clip(x1, 0, w - 1)), int(np.clip(y1, 0, h - 1)))
    p2 = (int(np.clip(x2, 0, w - 1)), int(np.clip(y2, 0, h - 1)))
    cv2.rectangle(image, p1, p2, color, thick)
    if label:
        font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.4, min(w, h) / 1000.0)
        (tw, th), base = cv2.getTextSize(label, font, scale, 1)
        top = p1[1] - th - base - 2
        top = p1[1] if top < 0 else top
        cv2.rectangle(image, (p1[0], top), (p1[0] + tw + 2, top + th + base + 2), color, -1)
        luminance = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]
        ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
        cv2.putText(image, label, (p1[0] + 1, top + th + 1), font, scale, ink, 1, cv2.LINE_AA)
    return True


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "event"


class CvNode:
    """Applies the configured operations to each event's snapshot."""

    def __init__(self, config: CvConfig, services: TaskServices) -> None:
        self.config = config
        self.services = services

    def run(self, request: TaskRequest) -> Event:
        """Return the event with ``snapshot`` replaced by the processed JPEG.

        Raises:
            PermanentError: no snapshot, a missing or undecodable one, or a malformed box
                list at ``boxes_field``.
            TransientError: the blob store failed.
        """
        import cv2

        from aios.vision.clips import encode_jpeg

        event_in = request.event
        ref, image = read_snapshot(event_in, self.services)
        image = np.ascontiguousarray(image)
        fw, fh = frame_size(event_in, image)
        view = _View(image.shape[1] / fw, 0.0, image.shape[0] / fh, 0.0, fw, fh)
        event_box = parse_box(event_in.get("bbox"))
        applied: list[str] = []
        skipped: list[str] = []

        for op in self.config.operations:
            if isinstance(op, CropOp):
                if event_box is None:
                    skipped.append("crop: the event has no bbox")
                    continue
                h, w = image.shape[:2]
                x1, y1, x2, y2 = grow_and_clamp(view.box(event_box), op.margin, w, h)
                if x2 <= x1 or y2 <= y1:
                    skipped.append("crop: the event's bbox is outside the image")
                    continue
                image = np.ascontiguousarray(image[y1:y2, x1:x2])
                view.bx -= x1
                view.by -= y1
            elif isinstance(op, ResizeOp):
                h, w = image.shape[:2]
                scale = min(op.max_width / w, op.max_height / h)
                scale = scale if op.upscale else min(scale, 1.0)
                new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
                if (new_w, new_h) != (w, h):
                    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
                    image = np.asarray(
                        cv2.resize(image, (new_w, new_h), interpolation=interp), dtype=np.uint8
                    )
                    fx, fy = new_w / w, new_h / h
                    view.ax, view.bx, view.ay, view.by = (
                        view.ax * fx,
                        view.bx * fx,
                        view.ay * fy,
                        view.by * fy,
                    )
            elif isinstance(op, BlurOp):
                if op.region == "event_box":
                    if event_box is None:
                        skipped.append("blur: the event has no bbox")
                        continue
                    regions = [view.box(event_box)]
                elif op.region == "boxes":
                    regions = [
                        view.box(b.box) for b in _listed_boxes(event_in, self.config.boxes_field)
                    ]
                else:
                    regions = [view.rect(r) for r in op.rects]
                for r in regions:
                    pixels = _region(r, image)
                    if pixels is not None:
                        _blur(image, pixels, op)
            else:
                targets: list[_Labelled] = []
                if op.boxes in ("event_box", "both"):
                    if event_box is None:
                        skipped.append("annotate: the event has no bbox")
                    else:
                        targets.append(_Labelled(event_box, render(op.label, request).strip()))
                if op.boxes in ("boxes", "both"):
                    targets += _listed_boxes(event_in, self.config.boxes_field)
                color = _color_bgr(op.color)
                for t in targets:
                    _draw(image, view.box(t.box), t.label, color, op.thickness)
                if not targets:
                    continue
            applied.append(op.op)

        try:
            data = encode_jpeg(image, self.config.jpeg_quality)
        except ValueError as err:
            raise PermanentError(f"cannot encode the processed snapshot: {err}") from err
        name = (
            f"snapshots/{_safe_name(str(event_in.get('event_id') or 'event'))}."
            f"{_safe_name(request.node_id)}.jpg"
        )
        try:
            new_ref = self.services.blobs.write(name, data)
        except OSError as err:
            raise TransientError(f"cannot write the processed snapshot {name}: {err}") from err
        event = copy.deepcopy(event_in)
        if not event.get("snapshot_original"):
            event["snapshot_original"] = ref
        event["snapshot"] = new_ref
        set_field(
            event,
            "data.cv",
            {
                "size": [int(image.shape[1]), int(image.shape[0])],
                "applied": applied,
                "skipped": skipped,
            },
        )
        return event


NODE = NodeType(
    manifest=MANIFEST,
    config_model=CvConfig,
    implementation=CvNode,
    event_role=EventRole.PROCESSOR,
)
