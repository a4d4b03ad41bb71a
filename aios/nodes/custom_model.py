"""``aios/custom_model@1`` — a user's ONNX classifier or detector run on the event's snapshot.

The model is a file path, or ``models:NAME`` for ``NAME`` (``.onnx`` added when it has no
suffix) in the AIOS model folder (:func:`aios.paths.models_dir`, ``$AIOS_HOME/models``). A
missing file is refused when the node is built (:class:`ValueError`); the model itself is
loaded once per node, on the first event, by onnxruntime on the CPU (thread-safe).

The image is the whole snapshot (``region: image``) or the event's ``bbox`` grown by
``box_margin`` (``region: event_box``; the box is scaled from the frame to the snapshot
like :mod:`aios.nodes.cv` does; an event without a box uses the whole snapshot, and
``box`` in the result is then ``null``).

``kind: classifier`` — one input ``[N, C, H, W]`` (C = 3, or 1 for grey), float32 or
float16; H × W from the model's input shape, or ``input_size`` when the shape is dynamic.
The image is resized to H × W (bilinear, no letterbox), put in ``color_order``, then
``x = (pixel × scale − mean) / std`` per channel (``mean``/``std`` in the model's channel
order; ``imagenet_normalization`` uses mean (0.485, 0.456, 0.406) and std
(0.229, 0.224, 0.225) in RGB, the torchvision ImageNet values, with ``scale`` 1/255).
The first output is flattened to one score per class; ``outputs_are_logits`` applies a
softmax. Labels: ``labels`` in the config, else the model metadata ``names`` (as
Ultralytics writes it), else ``class_<i>``. Result::

    {"model": "ppe.onnx", "kind": "classifier", "box": null,
     "labels": [{"label": "helmet", "score": 0.93}, ...]}   # top_k, best first

``kind: detector`` — a YOLO-layout model (``[1, 4 + C, N]`` output) run by
:class:`aios.vision.detector.Detector` (letterbox, per-class NMS). Result::

    {"model": "...", "kind": "detector", "box": null, "image_size": [w, h],
     "detections": [{"class_name": "person", "confidence": 0.87,
                     "bbox": [x1, y1, x2, y2]}]}    # snapshot pixels, clipped

Written at ``result_field`` (default ``data.model``). A model that cannot be loaded or
does not fit its ``kind`` raises :class:`~aios.events.task.PermanentError` naming what to
change.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, field_validator, model_validator

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
from aios.events.task import Event, PermanentError, TaskRequest, TaskServices
from aios.nodes._common import ClassList
from aios.nodes.cv import event_box_in_image, grow_and_clamp, read_snapshot
from aios.nodes.transform import FieldPath, set_field
from aios.vision.types import BGRImage

MODELS_PREFIX = "models:"
"""``models:NAME`` names a file in the AIOS model folder."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
"""ImageNet RGB channel statistics for inputs scaled to [0, 1] (torchvision's models docs)."""

ChannelValue = Annotated[float, Field(ge=-1000.0, le=1000.0)]
ChannelStd = Annotated[float, Field(gt=0.0, le=1000.0)]


class CustomModelConfig(NodeConfig):
    """A user's ONNX model on the event's snapshot."""

    model: str = Field(
        min_length=1,
        max_length=1000,
        title="Model",
        description="Path of the .onnx file, or models:NAME for a file in the AIOS model "
        "folder ($AIOS_HOME/models).",
    )
    kind: Literal["classifier", "detector"] = Field(
        default="classifier",
        title="Model kind",
        description="'classifier': one label per image (top-k scores); 'detector': boxes "
        "(YOLOv8/YOLO11-layout export).",
    )
    region: Literal["image", "event_box"] = Field(
        default="image",
        title="Run on",
        description="'image': the whole snapshot; 'event_box': the object the event is about.",
    )
    box_margin: float = Field(
        default=0.1,
        ge=0.0,
        le=2.0,
        title="Box margin",
        description="event_box: extra space on each side, as a fraction of the box size.",
    )
    input_size: int | None = Field(
        default=None,
        ge=16,
        le=4096,
        title="Input size (px)",
        description="Square model input in pixels when the model's own shape is dynamic "
        "(default: the model's shape; detectors: also its metadata, else 640).",
    )
    color_order: Literal["rgb", "bgr"] = Field(
        default="rgb",
        title="Channel order",
        description="Classifier: channel order the model expects (most exports: RGB).",
    )
    scale: float = Field(
        default=1 / 255,
        gt=0.0,
        le=1.0,
        title="Pixel scale",
        description="Classifier: pixel values (0–255) are multiplied by this (1/255 → 0–1).",
    )
    mean: tuple[ChannelValue, ChannelValue, ChannelValue] | None = Field(
        default=None,
        title="Mean",
        description="Classifier: per-channel mean subtracted after scaling (model's channel "
        "order). Default 0.",
    )
    std: tuple[ChannelStd, ChannelStd, ChannelStd] | None = Field(
        default=None,
        title="Std",
        description="Classifier: per-channel divisor after the mean (model's channel order). "
        "Default 1.",
    )
    imagenet_normalization: bool = Field(
        default=False,
        title="ImageNet normalization",
        description="Classifier: use the ImageNet mean and std (for torchvision/timm models).",
    )
    outputs_are_logits: bool = Field(
        default=False,
        title="Outputs are logits",
        description="Classifier: apply a softmax to the outputs (on when the model ends "
        "without one).",
    )
    labels: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None,
        max_length=100_000,
        title="Labels",
        description="Classifier: label per output, in order (default: the model's metadata "
        "'names').",
    )
    top_k: int = Field(
        default=5,
        ge=1,
        le=100,
        title="Top results",
        description="Classifier: how many best labels are reported.",
    )
    min_confidence: float = Field(
        default=0.25,
        ge=0.01,
        le=1.0,
        title="Minimum confidence",
        description="Detector: detections scoring below this (0–1) are dropped.",
    )
    iou_threshold: float = Field(
        default=0.45,
        ge=0.05,
        le=0.95,
        title="NMS overlap",
        description="Detector: boxes of one class overlapping more than this IoU (0–1) merge.",
    )
    classes: ClassList
    max_detections: int = Field(
        default=100,
        ge=1,
        le=1000,
        title="Max detections",
        description="Detector: at most this many boxes, best first.",
    )
    result_field: FieldPath = Field(
        default="data.model",
        title="Result field",
        description="Where the model's result is written in the event.",
    )

    @field_validator("model")
    @classmethod
    def _model_reference(cls, value: str) -> str:
        value = value.strip()
        if value.startswith(MODELS_PREFIX):
            name = value[len(MODELS_PREFIX) :]
            if not name or "/" in name or "\\" in name or name.startswith("."):
                raise ValueError(
                    f"{value!r}: write models:NAME with a file name in the model folder, "
                    "e.g. models:ppe-classifier.onnx"
                )
        return value

    @model_validator(mode="after")
    def _normalization(self) -> CustomModelConfig:
        if self.imagenet_normalization and (self.mean is not None or self.std is not None):
            raise ValueError(
                "imagenet_normalization sets mean and std; remove 'mean'/'std' or turn it off"
            )
        if self.kind == "classifier" and self.classes:
            raise ValueError("'classes' filters a detector's boxes; remove it for a classifier")
        if self.kind == "detector" and self.labels is not None:
            raise ValueError(
                "'labels' names a classifier's outputs; a detector's class names come from "
                "its metadata 'names'"
            )
        return self


def resolve_model(reference: str) -> Path:
    """Return the file a ``model`` setting names (``models:NAME`` or a path).

    Raises:
        ValueError: the file does not exist (the message says where it was looked for).
    """
    from aios.paths import models_dir

    if reference.startswith(MODELS_PREFIX):
        name = reference[len(MODELS_PREFIX) :]
        folder = models_dir()
        path = folder / (name if Path(name).suffix else f"{name}.onnx")
        if not path.is_file():
            raise ValueError(
                f"model {reference!r}: {path.name} is not in the model folder {folder}; copy "
                "the .onnx file there or give its path in 'model'"
            )
        return path
    path = Path(reference).expanduser()
    if not path.is_file():
        raise ValueError(
            f"model file {reference!r} does not exist; give the path of an .onnx file in "
            "'model', or models:NAME for a file in the AIOS model folder"
        )
    return path


MANIFEST = NodeManifest(
    type="aios/custom_model@1",
    category=Category.PROCESSING,
    tier=Tier.EVENT,
    title="AI/ML Model",
    description="Runs your own ONNX classifier or detector on the event's snapshot (the "
    "whole image or the detected object) and adds its labels or boxes to the event.",
    icon="brain",
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
            description="The events with the model's result under the result field.",
        ),
    ),
)


class _Runner(Protocol):
    def __call__(self, image: BGRImage) -> dict[str, Any]: ...


def _softmax(x: NDArray[np.float64]) -> NDArray[np.float64]:
    e = np.exp(x - x.max())
    out: NDArray[np.float64] = e / e.sum()
    return out


class _Classifier:
    """A loaded classification model with its preprocessing."""

    def __init__(self, path: Path, cfg: CustomModelConfig) -> None:
        import onnxruntime as ort

        from aios.vision.detector import parse_names

        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own, unexported error types
            raise PermanentError(
                f"onnxruntime cannot load {path.name}: {err}; give an ONNX classification model"
            ) from err
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            shapes = [list(i.shape) for i in inputs]
            raise PermanentError(
                f"{path.name} has inputs {shapes}; a classifier takes one image input [N, C, H, W]"
            )
        spec = inputs[0]
        self.input_name: str = spec.name
        if spec.type not in ("tensor(float)", "tensor(float16)"):
            raise PermanentError(f"{path.name} takes {spec.type}; float32 or float16 is needed")
        self.dtype = np.float16 if spec.type == "tensor(float16)" else np.float32
        channels = spec.shape[1] if isinstance(spec.shape[1], int) else 3
        if channels not in (1, 3):
            raise PermanentError(f"{path.name} takes {channels} channels; 1 or 3 are supported")
        self.channels = channels
        out_shape = list(self.session.get_outputs()[0].shape)
        per_image = out_shape[1:] if len(out_shape) > 1 else out_shape  # first: the batch
        if len([d for d in per_image if not isinstance(d, int) or d > 1]) > 1:
            raise PermanentError(
                f"{path.name} gives an output of shape {out_shape}, not one score per class; "
                "if it is a detector, set kind: detector"
            )
        self.height, self.width = self._size(path, spec.shape, cfg.input_size)
        self.cfg = cfg
        mean, std = cfg.mean or (0.0, 0.0, 0.0), cfg.std or (1.0, 1.0, 1.0)
        if cfg.imagenet_normalization:
            rgb = cfg.color_order == "rgb"
            mean = IMAGENET_MEAN if rgb else IMAGENET_MEAN[::-1]
            std = IMAGENET_STD if rgb else IMAGENET_STD[::-1]
        self.mean = np.asarray(mean[:channels], np.float32).reshape(channels, 1, 1)
        self.std = np.asarray(std[:channels], np.float32).reshape(channels, 1, 1)
        meta = self.session.get_modelmeta().custom_metadata_map
        names = parse_names(meta.get("names"))
        self.labels: list[str] | None = list(cfg.labels) if cfg.labels else None
        self.names = names
        self.model_name = path.name

    @staticmethod
    def _size(path: Path, shape: list[Any], wanted: int | None) -> tuple[int, int]:
        h, w = shape[2], shape[3]
        static = (h, w) if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 else None
        if wanted is not None:
            if static is not None and static != (wanted, wanted):
                raise PermanentError(
                    f"{path.name} has a fixed input of {static[1]}x{static[0]} pixels; "
                    f"remove input_size={wanted}"
                )
            return wanted, wanted
        if static is None:
            raise PermanentError(
                f"{path.name} has a dynamic input size {list(shape)}; set input_size to the "
                "size it was trained at"
            )
        return static

    def _label(self, index: int, count: int) -> str:
        if self.labels is not None:
            if len(self.labels) != count:
                raise PermanentError(
                    f"{self.model_name} gives {count} scores but 'labels' has "
                    f"{len(self.labels)} entries; give one label per output"
                )
            return self.labels[index]
        return self.names.get(index, f"class_{index}")

    def __call__(self, image: BGRImage) -> dict[str, Any]:
        import cv2

        resized = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        if self.channels == 1:
            pixels = cv2.cvtColor(resized, cv2.COLOR_BGR2GRAY)[:, :, None]
        elif self.cfg.color_order == "rgb":
            pixels = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
        else:
            pixels = resized
        x = pixels.astype(np.float32).transpose(2, 0, 1) * np.float32(self.cfg.scale)
        x = (x - self.mean) / self.std
        blob = x[None].astype(self.dtype)
        try:
            out = self.session.run(None, {self.input_name: blob})[0]
        except Exception as err:  # onnxruntime raises its own, unexported error types
            raise PermanentError(f"{self.model_name} failed on the image: {err}") from err
        scores = np.asarray(out, np.float64).reshape(-1)
        if self.cfg.outputs_are_logits:
            scores = _softmax(scores)
        count = len(scores)
        order = np.argsort(-scores, kind="stable")[: self.cfg.top_k]
        return {
            "labels": [
                {"label": self._label(int(i), count), "score": round(float(scores[i]), 6)}
                for i in order
            ]
        }


class _DetectorRunner:
    """The project's YOLO-layout detector with this node's thresholds."""

    def __init__(self, path: Path, cfg: CustomModelConfig) -> None:
        from aios.vision.detector import Detector, ModelError

        try:
            self.detector = Detector(
                path,
                cfg.input_size,
                min_confidence=cfg.min_confidence,
                iou_threshold=cfg.iou_threshold,
                classes=set(cfg.classes) or None,
                max_detections=cfg.max_detections,
            )
        except ModelError as err:
            raise PermanentError(str(err)) from err

    def __call__(self, image: BGRImage) -> dict[str, Any]:
        from aios.vision.detector import ModelError

        try:
            dets = self.detector.detect(image)
        except ModelError as err:
            raise PermanentError(str(err)) from err
        h, w = image.shape[:2]
        found = []
        for i in range(len(dets)):
            x1, y1, x2, y2 = (float(v) for v in dets.xyxy[i])
            found.append(
                {
                    "class_name": dets.class_name(i),
                    "confidence": round(float(dets.confidence[i]), 4),
                    "bbox": [
                        round(min(max(x1, 0.0), w), 1),
                        round(min(max(y1, 0.0), h), 1),
                        round(min(max(x2, 0.0), w), 1),
                        round(min(max(y2, 0.0), h), 1),
                    ],
                }
            )
        return {"detections": found}


class CustomModelNode:
    """Runs the configured model on each event's snapshot.

    Raises (when built):
        ValueError: the model file does not exist.
    """

    def __init__(self, config: CustomModelConfig, services: TaskServices) -> None:
        self.config = config
        self.services = services
        self.path = resolve_model(config.model)
        self._runner: _Runner | None = None
        self._lock = threading.Lock()

    def runner(self) -> _Runner:
        """Return the loaded model, loading it on first use (once, under a lock).

        Raises:
            PermanentError: the model cannot be loaded or does not fit ``kind``.
        """
        runner = self._runner
        if runner is None:
            with self._lock:
                runner = self._runner
                if runner is None:
                    kind = _Classifier if self.config.kind == "classifier" else _DetectorRunner
                    runner = self._runner = kind(self.path, self.config)
        return runner

    def run(self, request: TaskRequest) -> Event:
        """Return the event with the model's result at ``result_field``.

        Raises:
            PermanentError: no snapshot (the upstream node must save snapshots), the model
                cannot be loaded, or its outputs do not match the labels.
            TransientError: the blob store failed to read the snapshot.
        """
        _, image = read_snapshot(request.event, self.services)
        runner = self.runner()
        box: list[int] | None = None
        if self.config.region == "event_box":
            found = event_box_in_image(request.event, image)
            if found is not None:
                h, w = image.shape[:2]
                x1, y1, x2, y2 = grow_and_clamp(found, self.config.box_margin, w, h)
                if x2 > x1 and y2 > y1:
                    box = [x1, y1, x2, y2]
        crop = (
            image if box is None else np.ascontiguousarray(image[box[1] : box[3], box[0] : box[2]])
        )
        result: dict[str, Any] = {
            "model": self.path.name,
            "kind": self.config.kind,
            "box": box,
            **runner(crop),
        }
        if self.config.kind == "detector":
            result["image_size"] = [int(image.shape[1]), int(image.shape[0])]
            if box is not None:
                dx, dy = box[0], box[1]
                for det in result["detections"]:
                    b = det["bbox"]
                    det["bbox"] = [b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy]
        event = copy.deepcopy(request.event)
        set_field(event, self.config.result_field, result)
        return event


NODE = NodeType(
    manifest=MANIFEST,
    config_model=CustomModelConfig,
    implementation=CustomModelNode,
    event_role=EventRole.PROCESSOR,
)
