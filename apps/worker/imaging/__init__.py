"""Pure image operations (OpenCV, Pillow, Real-ESRGAN) that the worker's task handlers call."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image

from apps.worker.errors import Stopped

# Fraction of the work done, 0..1.
Progress = Callable[[float], None]
# True once the caller wants the work abandoned.
ShouldStop = Callable[[], bool]


def checkpoint(should_stop: ShouldStop | None) -> None:
    """Raise `Stopped` when the caller asked to stop."""
    if should_stop is not None and should_stop():
        raise Stopped


def report(progress: Progress | None, fraction: float) -> None:
    """Tell the caller how far the work is (clamped to 0..1)."""
    if progress is not None:
        progress(min(1.0, max(0.0, fraction)))


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )


def to_bgr(image: Image.Image) -> np.ndarray:
    """The image's colour as a contiguous uint8 BGR array (alpha dropped, a copy)."""
    rgb = np.asarray(image.convert("RGB"))
    return np.ascontiguousarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def from_bgr(bgr: np.ndarray, alpha: Image.Image | None = None) -> Image.Image:
    """A BGR array as an RGB image, or RGBA with `alpha` (an L image of the same size)."""
    rgb = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    if alpha is None:
        return rgb
    rgb.putalpha(alpha)
    return rgb


def alpha_of(image: Image.Image) -> Image.Image | None:
    """The image's alpha channel as an L image, or None when it has none."""
    if not has_alpha(image):
        return None
    return image.convert("RGBA").getchannel("A")
