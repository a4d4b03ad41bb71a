"""A cheap motion gate: skip the detector on frames where nothing moves.

Method — background differencing against a running average, as described by Adrian
Rosebrock, "Basic motion detection and tracking with Python and OpenCV" (PyImageSearch,
2015), built on OpenCV's ``cv2.accumulateWeighted`` (OpenCV docs, "Motion Analysis"):

1. the frame is resized to ``downscale_width`` pixels wide (aspect ratio kept), converted
   to grayscale and blurred with a ``blur_kernel``×``blur_kernel`` Gaussian, which removes
   sensor noise and compression artefacts;
2. the absolute difference to the background model (a float image) is thresholded at
   ``pixel_threshold`` grey levels, giving the *changed* pixels;
3. the changed fraction (changed pixels / all pixels) is compared with
   ``threshold_fraction``: above or equal means motion;
4. the background is updated: ``background = (1 - alpha) * background + alpha * frame``
   with ``alpha = background_alpha``. ``alpha = 1`` is plain differencing with the previous
   frame; small values remember the empty scene longer (slow-moving objects stay visible).

The first frame (and the first after a change of frame size, or :meth:`MotionGate.reset`)
counts as motion, with a changed fraction of ``1.0``, so the pipeline always analyses it.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, NamedTuple

import cv2
import numpy as np

from aios.vision.types import BGRImage, Frame

logger = logging.getLogger(__name__)


class MotionDecision(NamedTuple):
    """The gate's verdict on one frame (unpacks as ``motion, changed_fraction``)."""

    motion: bool
    """Whether ``changed_fraction >= threshold_fraction`` (always true on a first frame)."""
    changed_fraction: float
    """Fraction in ``[0, 1]`` of downscaled pixels that differ from the background."""


class MotionGate:
    """Decide per frame whether something moves (see the module docstring for the method).

    Args:
        threshold_fraction: fraction in ``(0, 1]`` of changed pixels from which a frame
            counts as motion (e.g. ``0.002`` = 0.2 % of the image).
        pixel_threshold: grey-level difference in ``1..255`` from which a pixel counts as
            changed.
        downscale_width: width in pixels of the analysed image (smaller is faster and less
            sensitive to noise); frames narrower than this are not upscaled.
        blur_kernel: odd Gaussian kernel size in pixels applied after downscaling.
        background_alpha: running-average weight in ``(0, 1]`` of the newest frame.

    Not thread-safe: one gate per stream.

    Raises:
        ValueError: a parameter is out of range.
    """

    def __init__(
        self,
        threshold_fraction: float = 0.002,
        pixel_threshold: int = 25,
        downscale_width: int = 320,
        *,
        blur_kernel: int = 5,
        background_alpha: float = 0.5,
    ) -> None:
        if not 0.0 < threshold_fraction <= 1.0:
            raise ValueError(f"threshold_fraction must be in (0, 1], got {threshold_fraction}")
        if not 1 <= pixel_threshold <= 255:
            raise ValueError(f"pixel_threshold must be in 1..255, got {pixel_threshold}")
        if downscale_width < 8:
            raise ValueError(f"downscale_width must be at least 8, got {downscale_width}")
        if blur_kernel < 1 or blur_kernel % 2 == 0:
            raise ValueError(f"blur_kernel must be a positive odd number, got {blur_kernel}")
        if not 0.0 < background_alpha <= 1.0:
            raise ValueError(f"background_alpha must be in (0, 1], got {background_alpha}")
        self.threshold_fraction = threshold_fraction
        self.pixel_threshold = pixel_threshold
        self.downscale_width = downscale_width
        self.blur_kernel = blur_kernel
        self.background_alpha = background_alpha
        self._background: np.ndarray[Any, np.dtype[np.float32]] | None = None
        self._input_shape: tuple[int, ...] | None = None

    def reset(self) -> None:
        """Forget the background; the next frame counts as motion."""
        self._background = None
        self._input_shape = None

    def _prepare(self, image: BGRImage) -> np.ndarray[Any, np.dtype[np.float32]]:
        height, width = image.shape[:2]
        if width > self.downscale_width:
            new_h = max(1, round(height * self.downscale_width / width))
            image = np.asarray(
                cv2.resize(image, (self.downscale_width, new_h), interpolation=cv2.INTER_AREA),
                dtype=np.uint8,
            )
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        if self.blur_kernel > 1:
            gray = cv2.GaussianBlur(gray, (self.blur_kernel, self.blur_kernel), 0)
        return np.asarray(gray, dtype=np.float32)

    def check(self, image: BGRImage) -> MotionDecision:
        """Analyse one frame and update the background.

        Args:
            image: BGR image, shape ``(H, W, 3)`` ``uint8`` (grayscale ``(H, W)`` also works).

        Returns:
            ``MotionDecision(motion, changed_fraction)``.
        """
        current = self._prepare(image)
        if self._background is None or self._input_shape != image.shape:
            self._background = current
            self._input_shape = image.shape
            return MotionDecision(True, 1.0)
        diff = cv2.absdiff(current, self._background)
        changed = int(np.count_nonzero(diff >= self.pixel_threshold))
        fraction = changed / diff.size
        cv2.accumulateWeighted(current, self._background, self.background_alpha)
        return MotionDecision(fraction >= self.threshold_fraction, fraction)

    def __call__(self, image: BGRImage) -> MotionDecision:
        """Same as :meth:`check`."""
        return self.check(image)

    def apply(self, frame: Frame) -> Frame:
        """Return ``frame`` with :attr:`Frame.motion` set by :meth:`check`."""
        return dataclasses.replace(frame, motion=self.check(frame.image).motion)
