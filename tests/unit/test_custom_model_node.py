"""The custom_model node: a small ONNX classifier built here, and the default YOLO detector."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from pydantic import ValidationError

from aios import assets
from aios.events.task import FolderBlobStore, PermanentError, TaskRequest, TaskServices
from aios.nodes.custom_model import NODE, CustomModelNode
from aios.vision.model_store import fetch_default_model

COLOURS = ["red", "green", "blue"]


def colour_classifier(
    path: Path,
    *,
    size: tuple[int, int] | None = (8, 8),
    names: list[str] | None = COLOURS,
    weights: np.ndarray | None = None,
) -> Path:
    """Write a classifier: global average pool per channel, then a fixed 3x3 MatMul.

    With the identity × 10 weights, an RGB input's channel means become logits in the
    order red, green, blue. ``size`` ``None`` makes the input height and width dynamic.
    """
    h, w = size if size is not None else ("height", "width")
    w_init = numpy_helper.from_array(
        (np.eye(3, dtype=np.float32) * 10.0) if weights is None else weights, name="W"
    )
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "W"], ["scores"]),
        ],
        "colours",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, h, w])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, w_init.dims[1]])],
        [w_init],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if names is not None:
        helper.set_model_props(model, {"names": repr(dict(enumerate(names)))})
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def snapshot(tmp_path: Path, image: np.ndarray, name: str = "snap.png") -> str:
    """Write a lossless snapshot file and return its path."""
    path = tmp_path / name
    assert cv2.imwrite(str(path), image)
    return str(path)


def solid(bgr: tuple[int, int, int], h: int = 48, w: int = 64) -> np.ndarray:
    """A one-colour BGR image."""
    image = np.zeros((h, w, 3), np.uint8)
    image[:] = bgr
    return image


def build(raw: dict[str, Any], tmp_path: Path) -> CustomModelNode:
    """Build the node with a blob store in ``tmp_path``."""
    services = TaskServices(blobs=FolderBlobStore(tmp_path))
    return NODE.implementation(NODE.parse_config(raw), services)  # type: ignore[no-any-return]


def run(node: CustomModelNode, ev: dict[str, Any]) -> dict[str, Any]:
    """Run the node and return its result at data.model."""
    out = node.run(TaskRequest(node_id="cm", event=ev, context={"pipeline": "p"}))
    result: dict[str, Any] = out["data"]["model"]
    return result


def test_classifier_labels_a_red_image_red_with_softmax_scores(tmp_path: Path) -> None:
    """Labels come from the model's metadata; logits become probabilities."""
    # GIVEN the colour classifier and a red snapshot
    model = colour_classifier(tmp_path / "colours.onnx")
    node = build({"model": str(model), "outputs_are_logits": True, "top_k": 2}, tmp_path)
    # WHEN it runs
    result = run(node, {"event_id": "e", "snapshot": snapshot(tmp_path, solid((0, 0, 255)))})
    # THEN red is first with softmax([10, 0, 0]) and only two labels are reported
    assert result["model"] == "colours.onnx" and result["kind"] == "classifier"
    assert [x["label"] for x in result["labels"]] == ["red", "green"]
    assert result["labels"][0]["score"] == pytest.approx(np.exp(10) / (np.exp(10) + 2), abs=1e-5)
    assert result["box"] is None


def test_classifier_crops_to_the_event_box_scaled_from_the_frame(tmp_path: Path) -> None:
    """Left half red, right half blue: the box over the right half is blue."""
    # GIVEN a 64x48 snapshot of a 128x96 frame, blue on the right
    image = solid((0, 0, 255))
    image[:, 32:] = (255, 0, 0)
    model = colour_classifier(tmp_path / "colours.onnx")
    node = build({"model": str(model), "region": "event_box", "box_margin": 0.0}, tmp_path)
    ev = {
        "event_id": "e",
        "snapshot": snapshot(tmp_path, image),
        "bbox": [70, 10, 120, 80],
        "frame_width": 128,
        "frame_height": 96,
    }
    # WHEN it runs on the event's box
    result = run(node, ev)
    # THEN the box is in snapshot pixels and the colour inside it wins
    assert result["box"] == [35, 5, 60, 40]
    assert result["labels"][0]["label"] == "blue"


def test_config_labels_override_the_metadata_and_must_match_the_outputs(tmp_path: Path) -> None:
    """labels in the config name the outputs; a wrong count is an error."""
    model = colour_classifier(tmp_path / "plain.onnx", names=None)
    ref = snapshot(tmp_path, solid((0, 255, 0)))
    unnamed = run(build({"model": str(model)}, tmp_path), {"snapshot": ref})
    named = run(
        build({"model": str(model), "labels": ["r", "g", "b"]}, tmp_path), {"snapshot": ref}
    )
    assert unnamed["labels"][0]["label"] == "class_1"
    assert named["labels"][0]["label"] == "g"
    with pytest.raises(PermanentError, match="gives 3 scores but 'labels' has 2 entries"):
        run(build({"model": str(model), "labels": ["r", "g"]}, tmp_path), {"snapshot": ref})


@pytest.mark.parametrize("order", ["rgb", "bgr"])
def test_imagenet_normalization_in_the_models_channel_order(tmp_path: Path, order: str) -> None:
    """With identity weights the scores are the normalized channel means."""
    # GIVEN a classifier that outputs its input's channel means, and a uniform colour
    model = colour_classifier(tmp_path / "means.onnx", weights=np.eye(3, dtype=np.float32))
    b, g, r = 30, 140, 220
    node = build(
        {"model": str(model), "imagenet_normalization": True, "color_order": order}, tmp_path
    )
    # WHEN it runs
    result = run(node, {"snapshot": snapshot(tmp_path, solid((b, g, r)))})
    scores = {x["label"]: x["score"] for x in result["labels"]}
    # THEN each channel is (value / 255 - mean) / std with the mean and std of that channel
    mean = {"r": 0.485, "g": 0.456, "b": 0.406}
    std = {"r": 0.229, "g": 0.224, "b": 0.225}
    channels = ["r", "g", "b"] if order == "rgb" else ["b", "g", "r"]
    value = {"r": r, "g": g, "b": b}
    for slot, ch in zip(COLOURS, channels, strict=True):
        assert scores[slot] == pytest.approx((value[ch] / 255 - mean[ch]) / std[ch], abs=1e-4)


def test_dynamic_input_needs_input_size(tmp_path: Path) -> None:
    """A model with dynamic height/width runs only once input_size is set."""
    model = colour_classifier(tmp_path / "dyn.onnx", size=None)
    ref = snapshot(tmp_path, solid((255, 0, 0)))
    with pytest.raises(PermanentError, match=r"dynamic input size .* set input_size"):
        run(build({"model": str(model)}, tmp_path), {"snapshot": ref})
    result = run(build({"model": str(model), "input_size": 32}, tmp_path), {"snapshot": ref})
    assert result["labels"][0]["label"] == "blue"
    fixed = colour_classifier(tmp_path / "fixed.onnx")
    with pytest.raises(PermanentError, match="fixed input of 8x8 pixels; remove input_size=32"):
        run(build({"model": str(fixed), "input_size": 32}, tmp_path), {"snapshot": ref})


def test_models_prefix_reads_the_aios_model_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """models:NAME finds NAME(.onnx) under $AIOS_HOME/models."""
    monkeypatch.setenv("AIOS_HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "models").mkdir(parents=True)
    colour_classifier(tmp_path / "home" / "models" / "colours.onnx")
    node = build({"model": "models:colours"}, tmp_path)
    result = run(node, {"snapshot": snapshot(tmp_path, solid((0, 255, 0)))})
    assert result["model"] == "colours.onnx" and result["labels"][0]["label"] == "green"
    with pytest.raises(ValueError, match=r"nothing.onnx is not in the model folder .*home"):
        build({"model": "models:nothing"}, tmp_path)


def test_a_missing_model_file_is_refused_when_the_node_is_built(tmp_path: Path) -> None:
    """The error names the path and what to give instead."""
    with pytest.raises(ValueError, match=r"model file '.*absent.onnx' does not exist; give"):
        build({"model": str(tmp_path / "absent.onnx")}, tmp_path)


def test_a_file_that_is_not_a_model_or_not_a_classifier_is_a_permanent_error(
    tmp_path: Path,
) -> None:
    """Garbage fails to load; a detector run as a classifier is told to set kind."""
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not onnx")
    ref = snapshot(tmp_path, solid((0, 0, 0)))
    with pytest.raises(PermanentError, match=r"onnxruntime cannot load junk.onnx"):
        run(build({"model": str(junk)}, tmp_path), {"snapshot": ref})
    yolo = build({"model": str(fetch_default_model())}, tmp_path)
    with pytest.raises(PermanentError, match="set kind: detector"):
        run(yolo, {"snapshot": ref})


def test_no_snapshot_says_to_save_snapshots_upstream(tmp_path: Path) -> None:
    """An event without a snapshot is a permanent error pointing at evidence.snapshot."""
    model = colour_classifier(tmp_path / "colours.onnx")
    with pytest.raises(PermanentError, match=r"evidence\.snapshot = true"):
        run(build({"model": str(model)}, tmp_path), {"event_id": "e"})


def test_the_model_is_loaded_once_when_first_runs_race(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight threads running the first event at once load one session."""
    # GIVEN a node and a count of onnxruntime sessions created
    model = colour_classifier(tmp_path / "colours.onnx")
    node = build({"model": str(model)}, tmp_path)
    created: list[int] = []
    real = ort.InferenceSession

    def counting(*args: Any, **kwargs: Any) -> Any:
        created.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", counting)
    ref = snapshot(tmp_path, solid((0, 0, 255)))
    results: list[str] = []
    start = threading.Barrier(8)

    def work() -> None:
        start.wait(timeout=10)
        results.append(run(node, {"snapshot": ref})["labels"][0]["label"])

    # WHEN eight threads run at once
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    # THEN all answer red and one session was created
    assert results == ["red"] * 8
    assert len(created) == 1


@pytest.fixture(scope="module")
def yolo_model() -> Path:
    """The default YOLOv3-tiny COCO model (fetched, converted and verified if not cached)."""
    return fetch_default_model()


def test_detector_finds_the_person_and_the_dog_in_person_jpg(
    tmp_path: Path, yolo_model: Path
) -> None:
    """Detections in snapshot pixels, filtered by class."""
    # GIVEN Debian darknet's person.jpg (640x424) as the snapshot
    photo = str(assets.path("person.jpg"))
    node = build(
        {"model": str(yolo_model), "kind": "detector", "classes": ["person", "dog"]}, tmp_path
    )
    # WHEN it runs on the whole image
    result = run(node, {"event_id": "e", "snapshot": photo})
    # THEN the person (hand-outlined at 190,100-275,375) and the dog are found, no horse
    names = [d["class_name"] for d in result["detections"]]
    assert set(names) == {"person", "dog"}
    person = result["detections"][names.index("person")]
    x1, y1, x2, y2 = person["bbox"]
    assert abs(x1 - 190) < 25 and abs(y1 - 100) < 25 and abs(x2 - 275) < 25 and abs(y2 - 375) < 25
    assert person["confidence"] >= 0.25
    assert result["image_size"] == [640, 424] and result["kind"] == "detector"


def test_detector_on_the_event_box_reports_snapshot_pixels(
    tmp_path: Path, yolo_model: Path
) -> None:
    """Cropped to the person's box, the detections are mapped back to the whole image."""
    # GIVEN the person's box (hand-outlined at 190,100-275,375) as the event's bbox
    photo = str(assets.path("person.jpg"))
    node = build(
        {"model": str(yolo_model), "kind": "detector", "region": "event_box", "box_margin": 0.2},
        tmp_path,
    )
    ev = {
        "event_id": "e",
        "snapshot": photo,
        "bbox": [190, 100, 275, 375],
        "frame_width": 640,
        "frame_height": 424,
    }
    # WHEN it runs
    result = run(node, ev)
    # THEN the crop is the box grown by 20 % (clamped at the bottom) and the person is
    # found at its place in the full image, not in the crop's coordinates
    assert result["box"] == [173, 45, 292, 424]
    people = [d for d in result["detections"] if d["class_name"] == "person"]
    assert people, result["detections"]
    x1, y1, x2, y2 = people[0]["bbox"]
    assert abs(x1 - 190) < 25 and abs(y1 - 100) < 25 and abs(x2 - 275) < 25 and abs(y2 - 375) < 25


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, r"model\n.*Field required"),
        ({"model": "m.onnx", "kind": "segmenter"}, r"kind\n.*'classifier' or 'detector'"),
        ({"model": "models:../x.onnx"}, r"model\n.*write models:NAME with a file name"),
        (
            {"model": "m.onnx", "imagenet_normalization": True, "mean": [0, 0, 0]},
            "imagenet_normalization sets mean and std",
        ),
        ({"model": "m.onnx", "std": [1, 0, 1]}, r"std\.1\n.*greater than 0"),
        ({"model": "m.onnx", "classes": ["person"]}, "'classes' filters a detector's boxes"),
        ({"model": "m.onnx", "kind": "detector", "labels": ["a"]}, "'labels' names a classifier"),
        ({"model": "m.onnx", "top_k": 0}, r"top_k\n.*greater than or equal to 1"),
        ({"model": "m.onnx", "input_size": 8}, r"input_size\n.*greater than or equal to 16"),
        ({"model": "m.onnx", "threshold": 0.5}, r"threshold\n.*Extra inputs"),
    ],
)
def test_bad_configs_are_rejected_naming_the_field(raw: dict[str, Any], message: str) -> None:
    """Missing model, bad kinds, conflicting normalization and typos fail validation."""
    with pytest.raises(ValidationError, match=message):
        NODE.parse_config(raw)
