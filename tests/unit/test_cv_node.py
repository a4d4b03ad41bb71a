"""The cv node: crop, resize, blur and annotate an event's snapshot, with frame scaling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from aios.events.task import FolderBlobStore, PermanentError, TaskRequest, TaskServices
from aios.nodes.cv import NODE, CvNode

FRAME_W, FRAME_H = 640, 480
SNAP_W, SNAP_H = 320, 240  # snapshots at half the frame size: boxes must be scaled
BLUE, RED = (255, 0, 0), (0, 0, 255)


def checkerboard(cell: int = 4) -> np.ndarray:
    """A black and white checkerboard snapshot (high local variance everywhere)."""
    ys, xs = np.mgrid[0:SNAP_H, 0:SNAP_W]
    board = (((xs // cell) + (ys // cell)) % 2 * 255).astype(np.uint8)
    return np.repeat(board[:, :, None], 3, axis=2)


def red_box_on_blue() -> np.ndarray:
    """Blue snapshot with a red rectangle at snapshot pixels x 100..150, y 50..150."""
    image = np.zeros((SNAP_H, SNAP_W, 3), np.uint8)
    image[:] = BLUE
    image[50:150, 100:150] = RED
    return image


def px(image: np.ndarray, y: int, x: int) -> tuple[int, ...]:
    """The BGR pixel at row ``y``, column ``x`` as plain ints."""
    return tuple(int(v) for v in image[y, x])


def save(tmp_path: Path, image: np.ndarray, name: str = "snap.jpg") -> str:
    """Write a snapshot JPEG (quality 100) and return its path."""
    path = tmp_path / "media" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert ok
    path.write_bytes(buf.tobytes())
    return str(path)


def event(snapshot: str | None, **fields: Any) -> dict[str, Any]:
    """A zone event with a frame-pixel bbox x 200..300, y 100..300 (snapshot: 100..150, 50..150)."""
    base: dict[str, Any] = {
        "event_id": "evt-1",
        "event_type": "zone.enter",
        "time": "2026-01-05T09:00:00Z",
        "source_id": "cam-1",
        "class_name": "person",
        "confidence": 0.87,
        "bbox": [200.0, 100.0, 300.0, 300.0],
        "frame_width": FRAME_W,
        "frame_height": FRAME_H,
        "data": {},
    }
    if snapshot is not None:
        base["snapshot"] = snapshot
    base.update(fields)
    return base


def run(
    tmp_path: Path,
    operations: list[dict[str, Any]],
    ev: dict[str, Any],
    node_id: str = "cv",
    **config: Any,
) -> tuple[dict[str, Any], np.ndarray]:
    """Run a cv node; return the new event and the decoded new snapshot."""
    services = TaskServices(blobs=FolderBlobStore(tmp_path / "blobs"))
    node: CvNode = NODE.implementation(
        NODE.parse_config({"operations": operations, "jpeg_quality": 100, **config}), services
    )
    out = node.run(TaskRequest(node_id=node_id, event=ev, context={"pipeline": "p"}))
    image = cv2.imread(out["snapshot"])
    assert image is not None
    return out, image


def test_crop_to_the_box_scaled_from_the_frame_with_margin(tmp_path: Path) -> None:
    """The frame box maps to snapshot pixels; the margin grows it on each side."""
    # GIVEN a snapshot at half the frame size with the object in red
    ref = save(tmp_path, red_box_on_blue())
    # WHEN cropping with a 10 % margin
    out, image = run(tmp_path, [{"op": "crop", "margin": 0.1}], event(ref))
    # THEN the crop is the 50x100 box plus 5 px and 10 px on each side
    assert image.shape[:2] == (120, 60)
    assert px(image, 60, 30) == pytest.approx(RED, abs=40)
    assert px(image, 2, 2) == pytest.approx(BLUE, abs=40)
    # AND the event points at the new file and keeps the original
    assert out["snapshot"] != ref and out["snapshot_original"] == ref
    assert Path(out["snapshot"]).name == "evt-1.cv.jpg"
    assert out["data"]["cv"] == {"size": [60, 120], "applied": ["crop"], "skipped": []}


def test_crop_is_clamped_to_the_image(tmp_path: Path) -> None:
    """A box at the corner with a large margin stops at the image edges."""
    ref = save(tmp_path, red_box_on_blue())
    ev = event(ref, bbox=[600, 400, 640, 480])  # snapshot 300..320, 200..240
    _, image = run(tmp_path, [{"op": "crop", "margin": 0.5}], ev)
    assert image.shape[:2] == (60, 30)  # 180..240 by 290..320


def test_without_frame_size_boxes_are_snapshot_pixels(tmp_path: Path) -> None:
    """No frame_width/height: the bbox is read as snapshot pixels."""
    ref = save(tmp_path, red_box_on_blue())
    ev = event(ref, bbox=[100, 50, 150, 150])
    del ev["frame_width"], ev["frame_height"]
    _, image = run(tmp_path, [{"op": "crop", "margin": 0}], ev)
    assert image.shape[:2] == (100, 50)


def test_resize_keeps_the_aspect_and_enlarges_only_when_asked(tmp_path: Path) -> None:
    """320x240 fits 160x160 as 160x120; it is enlarged only with upscale."""
    ref = save(tmp_path, red_box_on_blue())
    _, small = run(tmp_path, [{"op": "resize", "max_width": 160, "max_height": 160}], event(ref))
    _, same = run(tmp_path, [{"op": "resize", "max_width": 1000, "max_height": 1000}], event(ref))
    _, big = run(
        tmp_path,
        [{"op": "resize", "max_width": 640, "max_height": 640, "upscale": True}],
        event(ref),
    )
    assert small.shape[:2] == (120, 160)
    assert same.shape[:2] == (240, 320)
    assert big.shape[:2] == (480, 640)


def test_gaussian_blur_of_the_event_box_only(tmp_path: Path) -> None:
    """Inside the box the checkerboard is smoothed; outside it is untouched."""
    # GIVEN a checkerboard snapshot
    ref = save(tmp_path, checkerboard())
    # WHEN blurring the event's box
    _, image = run(tmp_path, [{"op": "blur", "method": "gaussian", "strength": 0.5}], event(ref))
    gray = image[:, :, 0].astype(float)
    # THEN the box (snapshot x 100..150, y 50..150) is nearly flat and the rest is not
    assert gray[60:140, 105:145].std() < 20
    assert gray[60:140, 200:250].std() > 100


def test_pixelate_fixed_normalized_rectangles(tmp_path: Path) -> None:
    """A rectangle in frame fractions becomes a mosaic of uniform blocks."""
    ref = save(tmp_path, checkerboard())
    op = {
        "op": "blur",
        "region": "rects",
        "rects": [[0, 0, 0.5, 0.5]],
        "method": "pixelate",
        "cells": 4,
    }
    _, image = run(tmp_path, [op], event(ref))
    gray = image[:, :, 0].astype(float)
    # the top-left quarter (160x120) in 4 cells across: 40 px blocks, each uniform
    assert gray[5:35, 5:35].std() < 5 and gray[45:75, 85:115].std() < 5
    assert gray[130:230, 170:310].std() > 100


def test_blur_listed_boxes_follows_a_crop(tmp_path: Path) -> None:
    """Boxes in frame pixels are mapped through the crop before blurring."""
    # GIVEN an event box x 200..400, y 100..300 (snapshot 100..200, 50..150) and a face box
    # in the top-left quarter of it (frame 200..300, 100..200)
    ref = save(tmp_path, checkerboard())
    ev = event(
        ref,
        bbox=[200, 100, 400, 300],
        data={"boxes": [{"bbox": [200, 100, 300, 200], "label": "face"}]},
    )
    # WHEN cropping to the box, then blurring the listed boxes
    out, image = run(tmp_path, [{"op": "crop", "margin": 0}, {"op": "blur", "region": "boxes"}], ev)
    gray = image[:, :, 0].astype(float)
    # THEN the crop is 100x100 and only its top-left 50x50 is blurred
    assert image.shape[:2] == (100, 100)
    assert gray[5:45, 5:45].std() < 20
    assert gray[55:95, 55:95].std() > 100
    assert out["data"]["cv"]["applied"] == ["crop", "blur"]


def test_annotate_draws_the_box_and_label_in_the_colour(tmp_path: Path) -> None:
    """The border is drawn at the scaled box and the label above it."""
    # GIVEN a black snapshot
    ref = save(tmp_path, np.zeros((SNAP_H, SNAP_W, 3), np.uint8))
    op = {
        "op": "annotate",
        "label": "{{ event.class_name }} {{ event.confidence }}",
        "color": "#00ff00",
        "thickness": 2,
    }
    # WHEN annotating the event's box
    _, image = run(tmp_path, [op], event(ref))
    # THEN the border at snapshot (100..150, 50..150) is green, its inside black, and the
    # label's background sits above the box
    assert px(image, 100, 100) == pytest.approx((0, 255, 0), abs=40)
    assert px(image, 50, 125) == pytest.approx((0, 255, 0), abs=40)
    assert image[70:130, 110:140].max() < 40
    assert image[35:48, 102:140].mean() > 60


def test_annotate_listed_boxes_with_their_labels(tmp_path: Path) -> None:
    """Each listed box is drawn; a malformed item is an error naming its index."""
    ref = save(tmp_path, np.zeros((SNAP_H, SNAP_W, 3), np.uint8))
    boxes = [
        [20, 20, 100, 100],
        {"bbox": [400, 200, 600, 400], "class_name": "car", "confidence": 0.5},
    ]
    _, image = run(
        tmp_path,
        [{"op": "annotate", "boxes": "boxes", "color": "#ffffff"}],
        event(ref, data={"boxes": boxes}),
    )
    assert image[10, 10:50].max() > 200  # first box's top edge at snapshot y = 10
    assert image[100, 200:300].max() > 200  # second box's top edge at snapshot y = 100
    with pytest.raises(PermanentError, match=r"data\.boxes\[1\] is not a box"):
        run(
            tmp_path,
            [{"op": "annotate", "boxes": "boxes"}],
            event(ref, data={"boxes": [[1, 1, 5, 5], [5, 5, 1, 1]]}),
        )


def test_operations_needing_a_box_are_skipped_without_one(tmp_path: Path) -> None:
    """An event without bbox keeps the full image; the summary says what was skipped."""
    ref = save(tmp_path, red_box_on_blue())
    ev = event(ref)
    del ev["bbox"]
    out, image = run(
        tmp_path, [{"op": "crop"}, {"op": "blur"}, {"op": "resize", "max_width": 160}], ev
    )
    assert image.shape[:2] == (120, 160)
    assert out["data"]["cv"]["applied"] == ["resize"]
    assert out["data"]["cv"]["skipped"] == [
        "crop: the event has no bbox",
        "blur: the event has no bbox",
    ]


def test_a_second_cv_node_keeps_the_first_original(tmp_path: Path) -> None:
    """snapshot_original is the very first snapshot through a chain of cv nodes."""
    ref = save(tmp_path, red_box_on_blue())
    first, _ = run(tmp_path, [{"op": "crop"}], event(ref), node_id="crop")
    second, _ = run(tmp_path, [{"op": "resize", "max_width": 32}], first, node_id="small")
    assert second["snapshot_original"] == ref
    assert second["snapshot"] != first["snapshot"]


def test_missing_or_bad_snapshots_are_permanent_errors(tmp_path: Path) -> None:
    """No snapshot says to turn on evidence snapshots; others name the file."""
    with pytest.raises(PermanentError, match=r"must save snapshots.*evidence\.snapshot = true"):
        run(tmp_path, [{"op": "crop"}], event(None))
    with pytest.raises(PermanentError, match="does not exist"):
        run(tmp_path, [{"op": "crop"}], event(str(tmp_path / "nope.jpg")))
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not a jpeg")
    with pytest.raises(PermanentError, match="not a decodable image"):
        run(tmp_path, [{"op": "crop"}], event(str(junk)))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"operations": []}, r"operations\n.*at least 1 item"),
        (
            {"operations": [{"op": "rotate"}]},
            r"operations\.0\n.*does not match any of the expected tags",
        ),
        ({"operations": [{"op": "blur", "region": "rects"}]}, "needs at least one rectangle"),
        (
            {"operations": [{"op": "blur", "rects": [[0, 0, 1, 1]]}]},
            "only used with region 'rects'",
        ),
        (
            {"operations": [{"op": "blur", "region": "rects", "rects": [[0.5, 0, 0.2, 1]]}]},
            r"needs x1 < x2",
        ),
        (
            {"operations": [{"op": "blur", "region": "rects", "rects": [[0, 0, 1.5, 1]]}]},
            r"operations\.0\.blur\.rects\.0\.2\n.*less than or equal to 1",
        ),
        (
            {"operations": [{"op": "annotate", "color": "red"}]},
            r"operations\.0\.annotate\.color\n.*pattern",
        ),
        (
            {"operations": [{"op": "crop", "margin": 3}]},
            r"operations\.0\.crop\.margin\n.*less than or equal to 2",
        ),
        ({"operations": [{"op": "crop", "pad": 3}]}, r"operations\.0\.crop\.pad\n.*Extra inputs"),
        ({"operations": [{"op": "crop"}], "jpeg_quality": 0}, r"jpeg_quality\n.*greater than"),
    ],
)
def test_bad_configs_are_rejected_naming_the_field(raw: dict[str, Any], message: str) -> None:
    """Unknown operations, missing rectangles, bad colours and bounds fail validation."""
    with pytest.raises(ValidationError, match=message):
        NODE.parse_config(raw)
