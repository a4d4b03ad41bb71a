"""Convert a Darknet YOLO model (``.cfg`` + ``.weights``) to an ONNX graph, without torch.

The graph is built with :mod:`onnx.helper` only. The YOLO heads are decoded *inside* the
graph so that the single output has the layout of an Ultralytics YOLOv8 export, and the
rest of AIOS reads both kinds of model the same way:

* input ``images``: ``[1, 3, H, W]`` float32, RGB, values in ``[0, 1]``;
* output ``output0``: ``[1, 4 + C, N]`` float32: rows 0..3 are the box centre ``cx, cy``
  and size ``w, h`` in pixels of the network input, rows ``4..`` are class scores
  ``sigmoid(objectness) * sigmoid(class logit)`` (YOLOv3, Redmon & Farhadi 2018,
  "YOLOv3: An Incremental Improvement", section 2.1 and 2.2);
* metadata ``names`` (a Python dict literal ``{0: 'person', ...}``), ``imgsz``
  (``[H, W]``) and ``stride`` — the keys Ultralytics writes into its exports.

Supported sections: ``[net]``, ``[convolutional]`` (``batch_normalize``, ``pad``/``padding``,
``stride``, ``groups``, activations ``leaky``/``linear``), ``[maxpool]``, ``[route]`` (one
layer or a channel concat of several; no ``groups``), ``[upsample]`` and ``[yolo]``. This is
what YOLOv3 and YOLOv3-tiny use. The numerical behaviour follows the reference
implementation (https://github.com/pjreddie/darknet, ``src/*_layer.c``); the places where
it matters are noted in the code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

logger = logging.getLogger(__name__)

OPSET = 13
"""ONNX opset of the generated graph (Resize with ``scales`` and Slice with inputs need 11+)."""

INPUT_NAME = "images"
OUTPUT_NAME = "output0"

_BN_EPSILON = 0.000001
"""Darknet's batch-norm epsilon, added to ``sqrt(variance)`` (``src/blas.c: normalize_cpu``)."""

_LEAKY_SLOPE = 0.1
"""Slope of Darknet's ``leaky`` activation (``src/activations.h: leaky_activate``)."""


class DarknetError(ValueError):
    """The ``.cfg`` or ``.weights`` file is malformed or uses an unsupported feature."""


@dataclass(frozen=True)
class Section:
    """One ``[name]`` block of a ``.cfg`` file with its ``key=value`` options (as text)."""

    name: str
    options: dict[str, str] = field(default_factory=dict)
    line: int = 0

    def get_int(self, key: str, default: int | None = None) -> int:
        """Integer option ``key``; ``default`` when absent; :class:`DarknetError` if missing."""
        if key not in self.options:
            if default is None:
                raise DarknetError(f"[{self.name}] at line {self.line} needs '{key}='")
            return default
        try:
            return int(self.options[key])
        except ValueError as err:
            raise DarknetError(
                f"[{self.name}] at line {self.line}: '{key}' is not an integer"
            ) from err

    def get_ints(self, key: str) -> list[int]:
        """Comma-separated integer option ``key`` (e.g. ``anchors``, ``mask``, ``layers``)."""
        raw = self.options.get(key)
        if raw is None:
            raise DarknetError(f"[{self.name}] at line {self.line} needs '{key}='")
        try:
            return [int(v) for v in raw.split(",") if v.strip()]
        except ValueError as err:
            raise DarknetError(
                f"[{self.name}] at line {self.line}: '{key}' is not a list of integers"
            ) from err

    def get_str(self, key: str, default: str) -> str:
        """Text option ``key`` or ``default``."""
        return self.options.get(key, default)


def parse_cfg(text: str) -> list[Section]:
    """Parse the text of a Darknet ``.cfg`` file into its sections, in order.

    Comments (``#``, ``;``) and blank lines are skipped; keys and values are stripped.

    Raises:
        DarknetError: an option before the first section, a line without ``=``, or no
            ``[net]``/``[network]`` section first.
    """
    sections: list[Section] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise DarknetError(f"line {number}: malformed section header {line!r}")
            sections.append(Section(line[1:-1].strip().lower(), {}, number))
            continue
        if not sections:
            raise DarknetError(f"line {number}: option before the first section")
        key, sep, value = line.partition("=")
        if not sep:
            raise DarknetError(f"line {number}: expected 'key=value', got {line!r}")
        sections[-1].options[key.strip()] = value.strip()
    if not sections or sections[0].name not in ("net", "network"):
        raise DarknetError("a Darknet .cfg must start with a [net] section")
    return sections


@dataclass(frozen=True)
class WeightsHeader:
    """Header of a ``.weights`` file (``src/parser.c: load_weights_upto``)."""

    major: int
    minor: int
    revision: int
    seen: int


class WeightsReader:
    """Sequential reader of the float32 parameters that follow a ``.weights`` header.

    Header: ``major, minor, revision`` as int32, then ``seen`` (images seen in training) as
    int64 when ``major * 10 + minor >= 2`` (and both are below 1000), else as int32 —
    little-endian, as written by Darknet on x86.
    """

    def __init__(self, data: bytes) -> None:
        """Read the header of ``data`` (the whole file)."""
        if len(data) < 16:
            raise DarknetError(f"weights file too short ({len(data)} bytes) for a header")
        major, minor, revision = (int(v) for v in np.frombuffer(data, "<i4", 3, 0))
        if major * 10 + minor >= 2 and major < 1000 and minor < 1000:
            seen = int(np.frombuffer(data, "<i8", 1, 12)[0])
            offset = 20
        else:
            seen = int(np.frombuffer(data, "<i4", 1, 12)[0])
            offset = 16
        self.header = WeightsHeader(major, minor, revision, seen)
        extra = (len(data) - offset) % 4
        if extra:
            raise DarknetError(f"weights file has {extra} trailing bytes after float32 data")
        self._values: NDArray[np.float32] = np.frombuffer(data, "<f4", offset=offset)
        self._pos = 0

    @property
    def remaining(self) -> int:
        """Number of float32 values not read yet."""
        return len(self._values) - self._pos

    def take(self, count: int, what: str) -> NDArray[np.float32]:
        """Return the next ``count`` values as a new float32 array.

        Raises:
            DarknetError: the file ends before ``count`` values (wrong cfg for these weights).
        """
        if count > self.remaining:
            raise DarknetError(
                f"weights file ends while reading {what}: needs {count} values, "
                f"{self.remaining} left (does the .cfg match the .weights?)"
            )
        out = self._values[self._pos : self._pos + count].astype(np.float32, copy=True)
        self._pos += count
        return out


@dataclass(frozen=True)
class YoloHead:
    """One ``[yolo]`` layer: the anchors (network pixels) it predicts with."""

    anchors: tuple[tuple[float, float], ...]
    classes: int
    grid_h: int
    grid_w: int


@dataclass
class ConversionResult:
    """The ONNX model and what was learnt about the network while building it."""

    model: onnx.ModelProto
    input_size: tuple[int, int]
    """Network input ``(height, width)`` in pixels."""
    num_classes: int
    heads: list[YoloHead]
    num_boxes: int
    """``N`` of the ``[1, 4 + C, N]`` output."""
    yolo_outputs: list[str] = field(default_factory=list)
    """Names of the raw (undecoded) tensors feeding each ``[yolo]`` layer."""


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._counter = 0

    def name(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}_{self._counter}"

    def const(self, prefix: str, value: NDArray[np.generic]) -> str:
        name = self.name(prefix)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], prefix: str, **attrs: Any) -> str:
        out = self.name(prefix)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


def _conv(
    b: _Builder,
    sec: Section,
    *,
    x: str,
    shape: tuple[int, int, int],
    weights: WeightsReader,
    index: int,
) -> tuple[str, tuple[int, int, int]]:
    c, h, w = shape
    filters = sec.get_int("filters", 1)
    size = sec.get_int("size", 1)
    stride = sec.get_int("stride", 1)
    groups = sec.get_int("groups", 1)
    # src/parser.c parse_convolutional: 'pad=1' means padding = size / 2.
    padding = sec.get_int("padding", 0)
    if sec.get_int("pad", 0):
        padding = size // 2
    if c % groups or filters % groups:
        raise DarknetError(f"[convolutional] #{index}: groups={groups} does not divide channels")
    what = f"layer {index} (convolutional)"
    bias = weights.take(filters, f"{what} biases")
    w_count = filters * (c // groups) * size * size
    if sec.get_int("batch_normalize", 0):
        scales = weights.take(filters, f"{what} bn scales")
        mean = weights.take(filters, f"{what} bn rolling mean")
        var = weights.take(filters, f"{what} bn rolling variance")
        raw = weights.take(w_count, f"{what} weights").reshape(filters, c // groups, size, size)
        # Fold y = scale * (conv - mean) / (sqrt(var) + eps) + bias into the conv.
        factor = scales / (np.sqrt(var) + _BN_EPSILON)
        kernel = (raw * factor[:, None, None, None]).astype(np.float32)
        bias = (bias - mean * factor).astype(np.float32)
    else:
        kernel = weights.take(w_count, f"{what} weights").reshape(filters, c // groups, size, size)
    w_name = b.const(f"conv{index}_w", kernel.astype(np.float32))
    b_name = b.const(f"conv{index}_b", bias.astype(np.float32))
    y = b.node(
        "Conv",
        [x, w_name, b_name],
        f"conv{index}",
        kernel_shape=[size, size],
        strides=[stride, stride],
        pads=[padding] * 4,
        group=groups,
    )
    activation = sec.get_str("activation", "logistic")
    if activation == "leaky":
        y = b.node("LeakyRelu", [y], f"leaky{index}", alpha=_LEAKY_SLOPE)
    elif activation == "relu":
        y = b.node("Relu", [y], f"relu{index}")
    elif activation == "logistic":
        y = b.node("Sigmoid", [y], f"logistic{index}")
    elif activation != "linear":
        raise DarknetError(f"[convolutional] #{index}: activation '{activation}' unsupported")
    out_h = (h + 2 * padding - size) // stride + 1
    out_w = (w + 2 * padding - size) // stride + 1
    return y, (filters, out_h, out_w)


def _maxpool(
    b: _Builder, sec: Section, x: str, shape: tuple[int, int, int], index: int
) -> tuple[str, tuple[int, int, int]]:
    c, h, w = shape
    size = sec.get_int("size", 1)
    stride = sec.get_int("stride", 1)
    # src/maxpool_layer.c: padding defaults to size - 1, output = (in + padding - size) /
    # stride + 1, and the window starts at -padding / 2: the rest of the padding is on the
    # right/bottom. Out-of-range cells are ignored, which is what ONNX MaxPool's padding
    # does too. So size=2 stride=1 keeps the spatial size (pads 0 left, 1 right).
    padding = sec.get_int("padding", size - 1)
    begin = padding // 2
    out_h = (h + padding - size) // stride + 1
    out_w = (w + padding - size) // stride + 1
    end_h = max(0, (out_h - 1) * stride + size - h - begin)
    end_w = max(0, (out_w - 1) * stride + size - w - begin)
    y = b.node(
        "MaxPool",
        [x],
        f"maxpool{index}",
        kernel_shape=[size, size],
        strides=[stride, stride],
        pads=[begin, begin, end_h, end_w],
    )
    return y, (c, out_h, out_w)


def _upsample(
    b: _Builder, sec: Section, x: str, shape: tuple[int, int, int], index: int
) -> tuple[str, tuple[int, int, int]]:
    c, h, w = shape
    stride = sec.get_int("stride", 2)
    if sec.options.get("scale", "1") not in ("1", "1.0"):
        raise DarknetError(f"[upsample] #{index}: 'scale' is not supported")
    # src/blas.c upsample_cpu: out[y][x] = in[y / stride][x / stride] (nearest, floor).
    roi = b.const("roi", np.zeros(0, dtype=np.float32))
    scales = b.const("scales", np.array([1, 1, stride, stride], dtype=np.float32))
    y = b.node(
        "Resize",
        [x, roi, scales],
        f"upsample{index}",
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )
    return y, (c, h * stride, w * stride)


def _yolo(
    b: _Builder,
    sec: Section,
    *,
    x: str,
    shape: tuple[int, int, int],
    input_hw: tuple[int, int],
    index: int,
) -> tuple[str, YoloHead]:
    """Decode one head to ``[1, 4 + C, A * gh * gw]`` (``src/yolo_layer.c: get_yolo_box``)."""
    c, gh, gw = shape
    classes = sec.get_int("classes", 20)
    anchors_all = sec.get_ints("anchors")
    mask = sec.get_ints("mask") if "mask" in sec.options else list(range(len(anchors_all) // 2))
    if len(anchors_all) % 2:
        raise DarknetError(f"[yolo] #{index}: odd number of anchor values")
    pairs = [(float(anchors_all[2 * i]), float(anchors_all[2 * i + 1])) for i in mask]
    na = len(pairs)
    if c != na * (5 + classes):
        raise DarknetError(
            f"[yolo] #{index}: input has {c} channels, expected {na} * (5 + {classes})"
        )
    if sec.options.get("scale_x_y", "1") not in ("1", "1.0"):
        raise DarknetError(f"[yolo] #{index}: scale_x_y is not supported (YOLOv4)")
    net_h, net_w = input_hw
    cells = gh * gw
    r = b.node(
        "Reshape",
        [x, b.const("shape", np.array([1, na, 5 + classes, cells], dtype=np.int64))],
        f"yolo{index}_reshape",
    )

    def part(start: int, end: int) -> str:
        return b.node(
            "Slice",
            [
                r,
                b.const("starts", np.array([start], dtype=np.int64)),
                b.const("ends", np.array([end], dtype=np.int64)),
                b.const("axes", np.array([2], dtype=np.int64)),
            ],
            f"yolo{index}_slice",
        )

    # Centre: (cell index + sigmoid(t)) * (network size / grid size)  -> network pixels.
    gy, gx = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    grid = np.stack([gx.reshape(-1), gy.reshape(-1)]).astype(np.float32)[None, None]
    stride_xy = np.array([net_w / gw, net_h / gh], dtype=np.float32).reshape(1, 1, 2, 1)
    xy = b.node("Sigmoid", [part(0, 2)], f"yolo{index}_xy_sig")
    xy = b.node("Add", [xy, b.const("grid", grid)], f"yolo{index}_xy_grid")
    xy = b.node("Mul", [xy, b.const("stride", stride_xy)], f"yolo{index}_xy")
    # Size: anchor * exp(t)  (anchors are in network pixels).
    anchors = np.array(pairs, dtype=np.float32).reshape(1, na, 2, 1)
    wh = b.node("Exp", [part(2, 4)], f"yolo{index}_wh_exp")
    wh = b.node("Mul", [wh, b.const("anchors", anchors)], f"yolo{index}_wh")
    # Score: sigmoid(objectness) * sigmoid(class logit).
    obj = b.node("Sigmoid", [part(4, 5)], f"yolo{index}_obj")
    cls = b.node("Sigmoid", [part(5, 5 + classes)], f"yolo{index}_cls")
    score = b.node("Mul", [obj, cls], f"yolo{index}_score")
    box = b.node("Concat", [xy, wh, score], f"yolo{index}_cat", axis=2)
    box = b.node("Transpose", [box], f"yolo{index}_t", perm=[0, 2, 1, 3])
    flat = b.node(
        "Reshape",
        [box, b.const("shape", np.array([1, 4 + classes, na * cells], dtype=np.int64))],
        f"yolo{index}_out",
    )
    return flat, YoloHead(tuple(pairs), classes, gh, gw)


def convert(
    cfg_text: str,
    weights_data: bytes,
    class_names: list[str],
    *,
    model_name: str = "darknet-yolo",
    description: str = "",
    keep_raw_outputs: bool = False,
) -> ConversionResult:
    """Build the ONNX model of a Darknet YOLO network.

    Args:
        cfg_text: the ``.cfg`` file's text.
        weights_data: the ``.weights`` file's bytes.
        class_names: one label per class, in class-id order (a ``.names`` file's lines).
        model_name: ONNX graph name.
        description: stored as metadata ``description``.
        keep_raw_outputs: also expose each ``[yolo]`` layer's raw input
            ``[1, A * (5 + C), gh, gw]`` as an extra graph output (for verification).

    Returns:
        The checked model (``onnx.checker``) with input ``images`` ``[1, 3, H, W]`` and
        output ``output0`` ``[1, 4 + C, N]``; see the module docstring.

    Raises:
        DarknetError: unsupported sections/options, cfg and weights that do not match, or a
            class-name count that differs from the ``[yolo]`` layers' ``classes``.
    """
    sections = parse_cfg(cfg_text)
    net = sections[0]
    height, width = net.get_int("height"), net.get_int("width")
    channels = net.get_int("channels", 3)
    if channels != 3:
        raise DarknetError(f"[net] channels={channels}: only 3-channel networks are supported")
    reader = WeightsReader(weights_data)
    logger.debug("darknet weights header %s", reader.header)

    b = _Builder()
    x = b.node("Identity", [INPUT_NAME], "input")
    shape = (channels, height, width)
    outputs: list[tuple[str, tuple[int, int, int]]] = []
    heads: list[YoloHead] = []
    head_outputs: list[str] = []
    raw_outputs: list[tuple[str, tuple[int, int, int]]] = []
    for index, sec in enumerate(sections[1:]):
        if sec.name in ("convolutional", "conv"):
            x, shape = _conv(b, sec, x=x, shape=shape, weights=reader, index=index)
        elif sec.name in ("maxpool", "max"):
            x, shape = _maxpool(b, sec, x, shape, index)
        elif sec.name == "upsample":
            x, shape = _upsample(b, sec, x, shape, index)
        elif sec.name == "route":
            if "groups" in sec.options:
                raise DarknetError(f"[route] #{index}: 'groups' is not supported (YOLOv4)")
            picked = []
            for ref in sec.get_ints("layers"):
                src = index + ref if ref < 0 else ref
                if not 0 <= src < index:
                    raise DarknetError(f"[route] #{index}: layer {ref} is out of range")
                picked.append(outputs[src])
            if len({s[1:] for _, s in picked}) != 1:
                raise DarknetError(f"[route] #{index}: routed layers differ in spatial size")
            if len(picked) == 1:
                x, shape = picked[0]
            else:
                x = b.node("Concat", [p for p, _ in picked], f"route{index}", axis=1)
                shape = (sum(s[0] for _, s in picked), *picked[0][1][1:])
        elif sec.name == "yolo":
            raw_outputs.append((x, shape))
            decoded, head = _yolo(b, sec, x=x, shape=shape, input_hw=(height, width), index=index)
            heads.append(head)
            head_outputs.append(decoded)
        else:
            raise DarknetError(f"section [{sec.name}] at line {sec.line} is not supported")
        outputs.append((x, shape))

    if not heads:
        raise DarknetError("the network has no [yolo] layer")
    if reader.remaining:
        logger.warning("%d float32 values left unread in the weights file", reader.remaining)
    num_classes = heads[0].classes
    if any(h.classes != num_classes for h in heads):
        raise DarknetError("[yolo] layers disagree on 'classes'")
    if len(class_names) != num_classes:
        raise DarknetError(f"{len(class_names)} class names for a {num_classes}-class network")
    num_boxes = sum(len(h.anchors) * h.grid_h * h.grid_w for h in heads)
    if len(head_outputs) == 1:
        b.nodes.append(helper.make_node("Identity", head_outputs, [OUTPUT_NAME], name="output"))
    else:
        b.nodes.append(
            helper.make_node("Concat", head_outputs, [OUTPUT_NAME], name="output", axis=2)
        )

    graph_outputs = [
        helper.make_tensor_value_info(
            OUTPUT_NAME, TensorProto.FLOAT, [1, 4 + num_classes, num_boxes]
        )
    ]
    if keep_raw_outputs:
        graph_outputs += [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, *raw_shape])
            for name, raw_shape in raw_outputs
        ]
    graph = helper.make_graph(
        b.nodes,
        model_name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, 3, height, width])],
        graph_outputs,
        initializer=b.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="aios.vision.darknet",
    )
    model.ir_version = 8  # readable by onnxruntime >= 1.13
    max_stride = max(max(height // h.grid_h, width // h.grid_w) for h in heads)
    metadata = {
        "description": description or f"{model_name} converted from Darknet",
        "task": "detect",
        "batch": "1",
        "imgsz": repr([height, width]),
        "stride": str(max_stride),
        "names": repr(dict(enumerate(class_names))),
    }
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    return ConversionResult(
        model=model,
        input_size=(height, width),
        num_classes=num_classes,
        heads=heads,
        num_boxes=num_boxes,
        yolo_outputs=[name for name, _ in raw_outputs],
    )


def read_names(text: str) -> list[str]:
    """Parse a Darknet ``.names`` file: one label per non-empty line."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def convert_files(
    cfg: Path,
    weights: Path,
    names: Path,
    *,
    model_name: str = "darknet-yolo",
    description: str = "",
    keep_raw_outputs: bool = False,
) -> ConversionResult:
    """:func:`convert` reading the ``.cfg``, ``.weights`` and ``.names`` files from disk."""
    return convert(
        cfg.read_text(encoding="utf-8"),
        weights.read_bytes(),
        read_names(names.read_text(encoding="utf-8")),
        model_name=model_name,
        description=description,
        keep_raw_outputs=keep_raw_outputs,
    )
