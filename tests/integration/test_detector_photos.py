"""The default YOLOv3-tiny model on Debian darknet's sample photos, and against OpenCV."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from aios import assets
from aios.vision.detector import Detector
from aios.vision.model_store import (
    DEFAULT_INPUT_SIZE,
    SOURCE_DIRNAME,
    compare_outputs,
    corrected_source,
    fetch_darknet_source,
    fetch_default_model,
    opencv_darknet_output,
)

# Objects outlined by hand on the photos (x1, y1, x2, y2 in original pixels).
EXPECTED = {
    "person.jpg": {
        "person": (190, 100, 275, 375),
        "dog": (64, 263, 200, 345),
        "horse": (405, 138, 600, 345),
    },
    "dog.jpg": {
        "dog": (132, 222, 310, 540),
        "bicycle": (127, 137, 566, 420),
        "car|truck": (466, 75, 700, 170),
    },
}


def _iou(a: np.ndarray, b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union)


@pytest.fixture(scope="module")
def detector() -> Detector:
    """The default model, fetched, converted and verified if not cached yet."""
    return Detector(fetch_default_model())


@pytest.mark.parametrize("photo", sorted(EXPECTED))
def test_finds_the_objects_in_the_photo(detector: Detector, photo: str) -> None:
    """Each hand-outlined object is found with IoU > 0.5."""
    # GIVEN a real photo
    image = cv2.imread(str(assets.path(photo)))
    # WHEN detecting at the default thresholds
    dets = detector.detect(image)
    # THEN every expected object has a detection of its class overlapping it well
    names = [dets.class_name(i) for i in range(len(dets))]
    for label, box in EXPECTED[photo].items():
        ious = [_iou(dets.xyxy[i], box) for i, n in enumerate(names) if n in label.split("|")]
        assert ious and max(ious) > 0.5, f"{photo}: {label} not found ({names}, {ious})"


@pytest.mark.parametrize("photo", sorted(EXPECTED))
def test_converted_model_agrees_with_opencv_darknet_reader(detector: Detector, photo: str) -> None:
    """On the same letterboxed input, outputs and final detections match OpenCV's."""
    # GIVEN the Darknet source files and a real photo
    src = corrected_source(fetch_darknet_source(), DEFAULT_INPUT_SIZE)
    assert src.weights.parent.name == SOURCE_DIRNAME
    image = cv2.imread(str(assets.path(photo)))
    blob, box = detector.preprocess(image)
    # WHEN running the ONNX model and OpenCV's Darknet reader
    ours = detector.run(blob)
    ref = opencv_darknet_output(src.cfg, src.weights, blob)
    # THEN raw decoded outputs agree where scores matter
    diff = compare_outputs(ours, ref)
    assert diff["compared_boxes"] > 0
    assert diff["max_box_diff_px"] < 0.5 and diff["max_score_diff"] < 1e-3, diff
    # AND so do the final detections
    a, b = detector.postprocess(ours, box), detector.postprocess(ref, box)
    assert list(a.class_id) == list(b.class_id)
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1.0)
    np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-3)


def test_cached_model_is_reused(detector: Detector) -> None:
    """A second fetch returns the cached, manifest-checked file."""
    # GIVEN the model built by the fixture
    first = detector.model_path
    # WHEN fetching again
    again: Path = fetch_default_model()
    # THEN it is the same file, and its manifest is beside it
    assert again == first
    assert again.with_suffix(".json").is_file()


def test_small_people_get_full_height_boxes(detector: Detector) -> None:
    """Small objects (fine grid) get boxes of their real size: the corrected anchor mask."""
    # GIVEN frame 81 of vtest.avi, where a man walks at about x=568..600, y=188..282
    cap = cv2.VideoCapture(str(assets.path("vtest.avi")))
    for _ in range(82):
        ok, image = cap.read()
        assert ok
    cap.release()
    # WHEN detecting people
    dets = detector.detect(image)
    # THEN his box covers him from head to feet (the uncorrected cfg gave ~60 % height)
    ious = [_iou(box, (568.0, 188.0, 600.0, 282.0)) for box in dets.xyxy]
    assert max(ious) > 0.7, ious


def test_no_duplicate_box_for_the_dog(detector: Detector) -> None:
    """The corrected anchors do not split the dog of person.jpg into two boxes."""
    dets = detector.detect(cv2.imread(str(assets.path("person.jpg"))))
    assert [dets.class_name(i) for i in range(len(dets))].count("dog") == 1
