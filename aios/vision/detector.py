"""Object detector: an ONNX model in the Ultralytics YOLOv8 output layout, run by onnxruntime.

Models: the default YOLOv3-tiny converted by :mod:`aios.vision.darknet`, or any Ultralytics
YOLOv8/YOLO11 detection export (``yolo export format=onnx``). Both take ``images``
``[1, 3, H, W]`` float32 RGB in ``[0, 1]`` and give ``[1, 4 + C, N]``: box centre and size
``cx, cy, w, h`` in input pixels, then ``C`` class scores. Class names come from the ONNX
metadata key ``names`` (a Python dict literal, as Ultralytics writes it).

Pre- and post-processing follow Ultralytics (``ultralytics/data/augment.py: LetterBox``,
``ultralytics/utils/ops.py: scale_boxes, non_max_suppression``): letterbox with gray 114
padding centred, per-class non-maximum suppression, boxes mapped back to the original image.
"""

from __future__ import annotations

import ast
import copy
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from aios.vision.types import BGRImage, Detections

logger = logging.getLogger(__name__)

PAD_VALUE = 114
"""Letterbox padding gray level (Ultralytics ``LetterBox``)."""

DEFAULT_INPUT_SIZE = 640
"""Input size used when neither the model's input shape nor its metadata tells it."""


PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
"""onnxruntime execution providers in order of preference: the GPU where the installed
onnxruntime has CUDA (the detector image's ``onnxruntime-gpu``), else the CPU."""


def execution_providers() -> list[str]:
    """The providers of :data:`PREFERRED_PROVIDERS` this onnxruntime build offers, in order
    (``["CPUExecutionProvider"]`` with the CPU-only package)."""
    available = set(ort.get_available_providers())
    return [p for p in PREFERRED_PROVIDERS if p in available] or ["CPUExecutionProvider"]


class ModelError(RuntimeError):
    """A model cannot be found, fetched, converted, loaded or used.

    The message says what to change. :mod:`aios.vision.model_store` re-exports this type.
    """


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How an image was fitted into the network input.

    ``input_xy = original_xy * scale + (pad_x, pad_y)``; all values in pixels.
    """

    scale: float
    pad_x: int
    pad_y: int


def letterbox(image: BGRImage, size: tuple[int, int]) -> tuple[NDArray[np.float32], Letterbox]:
    """Resize ``image`` keeping its aspect ratio and pad it to ``size``, as a network input.

    Args:
        image: ``(h, w, 3)`` uint8 BGR.
        size: network input ``(height, width)`` in pixels.

    Returns:
        ``([1, 3, height, width]`` float32 RGB in ``[0, 1]``, the :class:`Letterbox` used).
        Scaling is ``min(height / h, width / w)`` (up or down), bilinear; the padding of
        gray 114 is split evenly with Ultralytics' rounding (``round(d - 0.1)`` top/left,
        ``round(d + 0.1)`` bottom/right).

    Raises:
        ValueError: ``image`` is not a non-empty ``(h, w, 3)`` array.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected a (h, w, 3) BGR image, got shape {image.shape}")
    in_h, in_w = size
    h, w = image.shape[:2]
    scale = min(in_h / h, in_w / w)
    new_w, new_h = round(w * scale), round(h * scale)
    dw, dh = (in_w - new_w) / 2, (in_h - new_h) / 2
    resized = (
        cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        if (new_w, new_h) != (w, h)
        else image
    )
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    padded = cv2.copyMakeBorder(
        resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3
    )
    blob = cv2.dnn.blobFromImage(padded, scalefactor=1 / 255.0, swapRB=True)
    return blob.astype(np.float32, copy=False), Letterbox(scale, left, top)


def parse_names(raw: str | None) -> dict[int, str]:
    """Parse the ``names`` metadata (``"{0: 'person', ...}"``); ``{}`` when absent or bad."""
    if not raw:
        return {}
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        logger.warning("model metadata 'names' is not a Python literal; using class_<id>")
        return {}
    if isinstance(value, dict):
        return {int(k): str(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return {i: str(v) for i, v in enumerate(value)}
    return {}


def _parse_imgsz(raw: str | None) -> tuple[int, int] | None:
    if not raw:
        return None
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, int):
        return value, value
    if isinstance(value, list | tuple) and len(value) == 2:
        return int(value[0]), int(value[1])
    return None


class Detector:
    """Run a YOLO-layout ONNX detection model on BGR images.

    Args:
        model_path: the ``.onnx`` file.
        input_size: square network input in pixels; ``None`` takes the model's static input
            shape, else its metadata ``imgsz``, else 640. A model with a static input shape
            only accepts that size.
        min_confidence: drop boxes whose best class score is below this (``[0, 1]``).
        iou_threshold: per-class NMS suppresses a box overlapping a better one of the same
            class by more than this intersection-over-union.
        classes: keep only these class *names* (``None``: all).
        max_detections: keep at most this many boxes per image, best first.
        num_threads: onnxruntime intra-op threads (``None``: onnxruntime's default).

    Raises:
        ModelError: the file is missing or not a model onnxruntime can run, the input
            size conflicts with the model's, or ``classes`` names a class the model lacks.
    """

    def __init__(
        self,
        model_path: str | Path,
        input_size: int | None = None,
        *,
        min_confidence: float = 0.25,
        iou_threshold: float = 0.45,
        classes: set[str] | None = None,
        max_detections: int = 300,
        num_threads: int | None = None,
    ) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.inter_op_num_threads = 1
        if num_threads is not None:
            options.intra_op_num_threads = int(num_threads)
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=options, providers=execution_providers()
            )
        except Exception as err:  # onnxruntime raises its own, unexported error types
            raise ModelError(
                f"onnxruntime cannot load {path}: {err}; give an ONNX object detection model "
                "(a YOLOv8/YOLO11 export, or leave the path unset for the default model)"
            ) from err
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{path}: expected a model with one input, got {len(inputs)}")
        self._input_name: str = inputs[0].name
        self._check_output_shape(path)
        meta = self._session.get_modelmeta().custom_metadata_map
        self.names: dict[int, str] = parse_names(meta.get("names"))
        self.input_hw = self._input_size(path, inputs[0].shape, meta.get("imgsz"), input_size)
        self.min_confidence = float(min_confidence)
        self.iou_threshold = float(iou_threshold)
        self.max_detections = int(max_detections)
        self.model_path = path
        self._class_filter: set[int] | None = self._filter_for(classes)

    def sharing(
        self,
        *,
        min_confidence: float | None = None,
        iou_threshold: float | None = None,
        classes: set[str] | None = None,
        max_detections: int | None = None,
    ) -> Detector:
        """Return a detector that runs on this one's onnxruntime session (no second load).

        Pre- and post-processing options are the new detector's own (``None``: keep this
        detector's value; ``classes=None`` keeps no filter). onnxruntime allows concurrent
        ``run`` calls on one session, so the two may be used from different threads.

        Raises:
            ModelError: ``classes`` names a class the model lacks.
        """
        other = copy.copy(self)
        if min_confidence is not None:
            other.min_confidence = float(min_confidence)
        if iou_threshold is not None:
            other.iou_threshold = float(iou_threshold)
        if max_detections is not None:
            other.max_detections = int(max_detections)
        other._class_filter = self._filter_for(classes)
        return other

    def use_session_of(self, other: Detector) -> None:
        """Run on ``other``'s onnxruntime session from now on, releasing this one's.

        Both must load the same model file at the same input size (one session per model
        then serves several cameras; onnxruntime allows concurrent ``run`` calls).

        Raises:
            ValueError: the other detector runs a different model or input size.
        """
        if (other.model_path.resolve(), other.input_hw) != (
            self.model_path.resolve(),
            self.input_hw,
        ):
            raise ValueError(
                f"cannot share the session of {other.model_path.name} at {other.input_hw} with "
                f"{self.model_path.name} at {self.input_hw}: the model or input size differs"
            )
        self._session = other._session
        self._input_name = other._input_name

    def _filter_for(self, classes: set[str] | None) -> set[int] | None:
        if classes is None:
            return None
        path = self.model_path
        by_name = {name: cid for cid, name in self.names.items()}
        unknown = sorted(c for c in classes if c not in by_name)
        if unknown and not self.names:
            raise ModelError(
                f"model {path.name} has no class names in its metadata (Ultralytics "
                "exports keep them as 'names'), so classes cannot be chosen by name; "
                "remove the class filter or export the model with its names"
            )
        if unknown:
            known = ", ".join(self.names[i] for i in sorted(self.names))
            raise ModelError(f"classes {unknown} are not in model {path.name} (it knows: {known})")
        return {by_name[c] for c in classes}

    def _check_output_shape(self, path: Path) -> None:
        """Refuse models whose first output cannot be a ``[1, 4 + C, N]`` detection tensor."""
        outputs = self._session.get_outputs()
        shape = list(outputs[0].shape) if outputs else []
        fixed = [d for d in shape[1:] if isinstance(d, int)]
        if len(shape) != 3 or (len(fixed) == 2 and max(fixed) < 5):
            raise ModelError(
                f"{path.name} does not look like a YOLO detection model: its output has "
                f"shape {shape}; AIOS reads detection exports whose output is "
                "[1, 4 + classes, boxes] (YOLOv8/YOLO11) or the default YOLOv3-tiny"
            )

    @staticmethod
    def _input_size(
        path: Path, shape: list[object], imgsz: str | None, wanted: int | None
    ) -> tuple[int, int]:
        dims = [d for d in shape[2:] if isinstance(d, int)]
        static = (dims[0], dims[1]) if len(shape) == 4 and len(dims) == 2 else None
        if wanted is not None:
            if static is not None and static != (wanted, wanted):
                raise ModelError(
                    f"{path.name} has a fixed input of {static[1]}x{static[0]} pixels; "
                    f"remove input_size={wanted} or export the model at that size"
                )
            return wanted, wanted
        return static or _parse_imgsz(imgsz) or (DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE)

    @property
    def class_names(self) -> tuple[str, ...]:
        """Labels by class id for the classes named in the model metadata."""
        count = max(self.names) + 1 if self.names else 0
        return tuple(self.names.get(i, f"class_{i}") for i in range(count))

    def preprocess(self, image: BGRImage) -> tuple[NDArray[np.float32], Letterbox]:
        """Letterbox ``image`` to the input size (see :func:`letterbox`)."""
        return letterbox(image, self.input_hw)

    def run(self, blob: NDArray[np.float32]) -> NDArray[np.float32]:
        """Run the model on a ``[1, 3, H, W]`` blob; return its first output as is."""
        out = self._session.run(None, {self._input_name: blob})[0]
        return np.asarray(out, dtype=np.float32)

    def infer_raw(self, image: BGRImage) -> NDArray[np.float32]:
        """Letterbox ``image`` and run the model: the raw ``[1, 4 + C, N]`` output."""
        return self.run(self.preprocess(image)[0])

    def warmup(self, runs: int = 2) -> None:
        """Run the model ``runs`` times on a gray input so the first real frame is not slow."""
        blob = np.full((1, 3, *self.input_hw), PAD_VALUE / 255.0, dtype=np.float32)
        for _ in range(runs):
            self.run(blob)

    def detect(self, image: BGRImage) -> Detections:
        """Find objects in ``image`` (``(h, w, 3)`` uint8 BGR).

        Returns:
            Boxes in pixels of ``image`` (not clipped), best first; see :meth:`postprocess`.
        """
        blob, box = self.preprocess(image)
        return self.postprocess(self.run(blob), box)

    def postprocess(self, raw: NDArray[np.float32], box: Letterbox) -> Detections:
        """Turn a raw model output into :class:`Detections` in original-image pixels.

        Args:
            raw: ``[1, 4 + C, N]`` (Ultralytics layout) or ``[1, N, 4 + C]``; rows/columns
                0..3 are ``cx, cy, w, h`` in input pixels, the rest class scores.
            box: the letterbox the input was made with.

        Each box takes its best class; boxes below ``min_confidence`` or of filtered-out
        classes are dropped; per-class NMS at ``iou_threshold`` (OpenCV
        ``NMSBoxesBatched``); then ``xy = (xy_input - pad) / scale``.

        Raises:
            ModelError: the output does not have one of the two layouts.
        """
        pred = self._as_channels_first(raw)
        num_classes = pred.shape[0] - 4
        scores = pred[4:]
        class_id = scores.argmax(axis=0).astype(np.int32)
        confidence = scores[class_id, np.arange(pred.shape[1])]
        keep = confidence >= self.min_confidence
        if self._class_filter is not None:
            keep &= np.isin(class_id, list(self._class_filter))
        cx, cy, w, h = pred[:4, keep]
        confidence, class_id = confidence[keep], class_id[keep]
        xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        names = tuple(self.names.get(i, f"class_{i}") for i in range(num_classes))
        if len(xyxy):
            idx = cv2.dnn.NMSBoxesBatched(
                np.stack([xyxy[:, 0], xyxy[:, 1], w, h], axis=1).astype(np.float64).tolist(),
                confidence.astype(np.float64).tolist(),
                class_id.tolist(),
                self.min_confidence,
                self.iou_threshold,
            )
            order = np.asarray(idx, dtype=np.int64).reshape(-1)
            order = order[np.argsort(-confidence[order], kind="stable")][: self.max_detections]
            xyxy, confidence, class_id = xyxy[order], confidence[order], class_id[order]
        xyxy = (xyxy - np.array([box.pad_x, box.pad_y] * 2, dtype=np.float32)) / box.scale
        return Detections(
            xyxy=xyxy.astype(np.float32).reshape(-1, 4),
            confidence=confidence.astype(np.float32),
            class_id=class_id.astype(np.int32),
            class_names=names,
        )

    def _as_channels_first(self, raw: NDArray[np.float32]) -> NDArray[np.float32]:
        if raw.ndim != 3 or raw.shape[0] != 1 or min(raw.shape[1:]) < 5:
            raise ModelError(f"model output shape {raw.shape} is not [1, 4 + C, N]")
        rows, cols = raw.shape[1], raw.shape[2]
        table: NDArray[np.float32] = raw[0]
        if self.names:
            count = max(self.names) + 1
            if rows == 4 + count:
                return table
            if cols == 4 + count:
                return table.T
        # Without names: the class rows are the short side (N is in the thousands).
        return table if rows <= cols else table.T
