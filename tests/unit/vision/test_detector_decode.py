"""Detector decoding on tiny synthetic ONNX models, and the Darknet converter against OpenCV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from aios.vision import darknet
from aios.vision.detector import PAD_VALUE, Detector, ModelError, letterbox
from aios.vision.model_store import opencv_darknet_output, resolve_model_path

NAMES = {0: "person", 1: "car", 2: "dog"}

# Boxes in network-input pixels (416x416): cx, cy, w, h, then scores for person, car, dog.
# A 640x360 image is letterboxed with scale 0.65 and 91 px of padding at the top, so
# original = ((x - 0) / 0.65, (y - 91) / 0.65).
BOXES = np.array(
    [
        [208.0, 208.0, 130.0, 65.0, 0.9, 0.0, 0.0],  # person, orig (220, 130, 420, 230)
        [210.0, 208.0, 130.0, 65.0, 0.8, 0.0, 0.0],  # person overlapping the first: suppressed
        [208.0, 208.0, 130.0, 65.0, 0.0, 0.7, 0.0],  # car on the person's box: kept
        [300.0, 300.0, 20.0, 20.0, 0.0, 0.0, 0.2],  # dog below 0.25
        [97.5, 123.5, 65.0, 65.0, 0.1, 0.0, 0.6],  # dog, orig (100, 0, 200, 100)
    ],
    dtype=np.float32,
)
PERSON_XYXY = [220.0, 130.0, 420.0, 230.0]
DOG_XYXY = [100.0, 0.0, 200.0, 100.0]


def _constant_model(
    path: Path,
    output: np.ndarray,
    names: dict[int, str] | None = NAMES,
    input_shape: list[int | str] | None = None,
    imgsz: str | None = None,
) -> Path:
    """Write an ONNX model whose output is ``output`` (plus 0 * mean(input))."""
    shape = input_shape or [1, 3, 416, 416]
    const = numpy_helper.from_array(output.astype(np.float32), "table")
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["table", "nothing"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "constant",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output.shape))],
        initializer=[const, numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    props = {}
    if names is not None:
        props["names"] = repr(names)
    if imgsz is not None:
        props["imgsz"] = imgsz
    helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _image() -> np.ndarray:
    return np.full((360, 640, 3), 50, dtype=np.uint8)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """The standard [1, 4 + C, N] constant model."""
    return _constant_model(tmp_path / "m.onnx", BOXES.T[None])


def test_boxes_are_mapped_back_through_the_letterbox(model: Path) -> None:
    """Boxes come back in original-image pixels, best first, with per-class NMS."""
    # GIVEN a model with known outputs and a 640x360 image
    detector = Detector(model)
    # WHEN detecting
    dets = detector.detect(_image())
    # THEN the overlapping person is suppressed, the car on the same box is kept
    assert [dets.class_name(i) for i in range(len(dets))] == ["person", "car", "dog"]
    np.testing.assert_allclose(dets.confidence, [0.9, 0.7, 0.6], atol=1e-6)
    # AND the boxes are mapped exactly through scale 0.65 and the 91 px top padding
    np.testing.assert_allclose(dets.xyxy, [PERSON_XYXY, PERSON_XYXY, DOG_XYXY], atol=1e-3)
    assert dets.class_names == ("person", "car", "dog")
    assert dets.xyxy.dtype == np.float32 and dets.class_id.dtype == np.int32


def test_transposed_output_layout_decodes_the_same(tmp_path: Path) -> None:
    """A [1, N, 4 + C] output gives the same detections as [1, 4 + C, N]."""
    # GIVEN the same table laid out as [1, N, 4 + C]
    detector = Detector(_constant_model(tmp_path / "t.onnx", BOXES[None]))
    # WHEN detecting
    dets = detector.detect(_image())
    # THEN the result is the same
    assert list(dets.class_id) == [0, 1, 2]
    np.testing.assert_allclose(dets.xyxy, [PERSON_XYXY, PERSON_XYXY, DOG_XYXY], atol=1e-3)


def test_class_filter_min_confidence_and_max_detections(model: Path) -> None:
    """Class names filter, the confidence floor and the detection cap apply."""
    # GIVEN detectors with a class filter, a low floor, and a cap of one
    only_dogs = Detector(model, classes={"dog"})
    low = Detector(model, min_confidence=0.1)
    one = Detector(model, max_detections=1)
    # WHEN detecting
    dogs, everything, best = (d.detect(_image()) for d in (only_dogs, low, one))
    # THEN only dogs; the 0.2 dog appears with a 0.1 floor; one box is the best one
    assert [dogs.class_name(i) for i in range(len(dogs))] == ["dog"]
    np.testing.assert_allclose(sorted(everything.confidence), [0.2, 0.6, 0.7, 0.9], atol=1e-6)
    assert len(best) == 1 and best.class_name(0) == "person"


def test_unknown_class_in_filter_is_an_error(model: Path) -> None:
    """Filtering on a class the model does not know raises ModelError naming it."""
    # GIVEN / WHEN / THEN a filter with a class the model lacks is refused
    with pytest.raises(ModelError, match="giraffe"):
        Detector(model, classes={"giraffe"})


def test_missing_model_is_an_error(tmp_path: Path) -> None:
    """A missing model file raises ModelError."""
    # GIVEN / WHEN / THEN
    with pytest.raises(ModelError, match="does not exist"):
        Detector(tmp_path / "nope.onnx")


def test_names_fallback_and_input_size_from_metadata(tmp_path: Path) -> None:
    """Without names, labels are class_<id>; a dynamic input takes imgsz from metadata."""
    # GIVEN a model with no names (so N > 4 + C tells the layout: pad N with empty boxes)
    # AND a dynamic input with metadata imgsz [416, 416]
    table = np.concatenate([BOXES, np.zeros((20, 7), dtype=np.float32)]).T[None]
    path = _constant_model(
        tmp_path / "n.onnx", table, names=None, input_shape=[1, 3, "h", "w"], imgsz="[416, 416]"
    )
    # WHEN detecting
    detector = Detector(path)
    dets = detector.detect(_image())
    # THEN the input size is 416 and labels are generic
    assert detector.input_hw == (416, 416)
    assert dets.class_name(0) == "class_0"
    np.testing.assert_allclose(dets.xyxy[0], PERSON_XYXY, atol=1e-3)


def test_conflicting_input_size_is_an_error(model: Path) -> None:
    """A static 416 model refuses input_size=640."""
    # GIVEN / WHEN / THEN
    with pytest.raises(ModelError, match="fixed input"):
        Detector(model, input_size=640)


def test_letterbox_pads_centred_with_gray() -> None:
    """640x360 -> 416x416: scale 0.65, 91 rows of gray 114 above and below."""
    # GIVEN a white 640x360 image
    image = np.full((360, 640, 3), 255, dtype=np.uint8)
    # WHEN letterboxing it
    blob, box = letterbox(image, (416, 416))
    # THEN the geometry and padding follow Ultralytics
    assert blob.shape == (1, 3, 416, 416) and blob.dtype == np.float32
    assert (box.scale, box.pad_x, box.pad_y) == (0.65, 0, 91)
    np.testing.assert_allclose(blob[0, :, :91], PAD_VALUE / 255, atol=1e-6)
    np.testing.assert_allclose(blob[0, :, 325:], PAD_VALUE / 255, atol=1e-6)
    np.testing.assert_allclose(blob[0, :, 91:325], 1.0, atol=1e-6)


TINY_CFG = """
[net]
width=96
height=64
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[maxpool]
size=2
stride=1

[convolutional]
filters=21
size=1
stride=1
pad=1
activation=linear

[yolo]
mask = 3,4,5
anchors = 4,6, 8,10, 12,9, 20,24, 30,28, 40,50
classes=2
num=6

[route]
layers = -3

[convolutional]
batch_normalize=1
filters=8
size=1
stride=1
pad=1
activation=leaky

[upsample]
stride=2

[route]
layers = -1, 2

[convolutional]
filters=21
size=1
stride=1
pad=1
activation=linear

[yolo]
mask = 0,1,2
anchors = 4,6, 8,10, 12,9, 20,24, 30,28, 40,50
classes=2
num=6
"""

# (input channels, filters, size, batch_normalize) of TINY_CFG's convolutions, in order.
TINY_CONVS = [
    (3, 8, 3, True),
    (8, 16, 3, True),
    (16, 21, 1, False),
    (16, 8, 1, True),
    (24, 21, 1, False),
]


def _tiny_weights(rng: np.random.Generator) -> bytes:
    """Random Darknet weights for TINY_CFG (header 0.2.0, int64 'seen')."""
    parts = [np.array([0, 2, 0], dtype="<i4").tobytes(), np.array([7], dtype="<i8").tobytes()]
    for c, n, k, bn in TINY_CONVS:
        values = [rng.normal(0, 0.5, n)]
        if bn:
            values += [rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n), rng.uniform(0.5, 2, n)]
        values.append(rng.normal(0, 0.3, n * c * k * k))
        parts.append(np.concatenate(values).astype("<f4").tobytes())
    return b"".join(parts)


def test_darknet_conversion_matches_opencv_reader(tmp_path: Path) -> None:
    """A tiny non-square Darknet net with every supported layer decodes like OpenCV's."""
    # GIVEN a tiny cfg (stride-1 maxpool, route, concat, upsample, two heads), random weights
    cfg, weights = tmp_path / "tiny.cfg", tmp_path / "tiny.weights"
    cfg.write_text(TINY_CFG)
    weights.write_bytes(_tiny_weights(np.random.default_rng(0)))
    result = darknet.convert(TINY_CFG, weights.read_bytes(), ["a", "b"])
    blob = np.random.default_rng(1).uniform(0, 1, (1, 3, 64, 96)).astype(np.float32)
    # WHEN running our ONNX graph and OpenCV's Darknet reader on the same input
    session = ort.InferenceSession(
        result.model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    ours = session.run(None, {"images": blob})[0]
    ref = opencv_darknet_output(cfg, weights, blob)
    # THEN shapes, metadata, boxes and (non-zeroed) scores agree
    assert ours.shape == ref.shape == (1, 6, 3 * 16 * 24 + 3 * 32 * 48)
    meta = {p.key: p.value for p in result.model.metadata_props}
    assert meta["names"] == "{0: 'a', 1: 'b'}" and meta["imgsz"] == "[64, 96]"
    np.testing.assert_allclose(ours[0, :4], ref[0, :4], rtol=1e-4, atol=1e-3)
    shown = ref[0, 4:] > 0
    assert shown.any()
    np.testing.assert_allclose(ours[0, 4:][shown], ref[0, 4:][shown], atol=1e-4)


def test_weights_that_do_not_match_the_cfg_are_an_error() -> None:
    """Truncated weights raise DarknetError saying the cfg and weights do not match."""
    # GIVEN weights cut short
    data = _tiny_weights(np.random.default_rng(0))[:-400]
    # WHEN / THEN
    with pytest.raises(darknet.DarknetError, match=r"does the \.cfg match"):
        darknet.convert(TINY_CFG, data, ["a", "b"])


def test_resolve_model_path_prefers_config_then_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node's path wins over YOLO_MODEL_PATH; a missing one names where it came from."""
    # GIVEN an existing model file named by the environment
    from_env = tmp_path / "env.onnx"
    from_env.write_bytes(b"x")
    monkeypatch.setenv("YOLO_MODEL_PATH", str(from_env))
    # WHEN / THEN no configured path -> the environment's
    assert resolve_model_path(None) == from_env
    # AND a configured path that does not exist is an error naming it and its origin
    with pytest.raises(ModelError, match=r"missing\.onnx.*node configuration"):
        resolve_model_path(str(tmp_path / "missing.onnx"))
    # AND so is a missing environment path
    monkeypatch.setenv("YOLO_MODEL_PATH", str(tmp_path / "gone.onnx"))
    with pytest.raises(ModelError, match=r"gone\.onnx.*YOLO_MODEL_PATH"):
        resolve_model_path(None)


def test_a_model_that_is_not_a_detector_is_refused(tmp_path: Path) -> None:
    """An ONNX model whose output is not [1, 4 + C, N] is refused with what AIOS expects."""
    # GIVEN an identity model (image in, image out)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["out"])],
        "identity",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 64, 64])],
    )
    path = tmp_path / "identity.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    # WHEN it is loaded as a detector / THEN the error says what is expected
    with pytest.raises(ModelError, match=r"does not look like a YOLO detection model"):
        Detector(path)
