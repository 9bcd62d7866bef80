"""Background removal with OpenCV's GrabCut, started from a box around the subject."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from apps.worker.errors import InvalidImage
from apps.worker.imaging import (
    Progress,
    ShouldStop,
    alpha_of,
    checkpoint,
    report,
    to_bgr,
)

# GrabCut runs on a copy at most this long on its long side; its mask is scaled back up.
WORK_LONG_SIDE = 1024
# Without a box, the subject is looked for inside the image less this margin on each side.
DEFAULT_MARGIN = 0.10
# GrabCut learns the background's colours from outside the box: it needs some pixels there.
MIN_BACKGROUND_PIXELS = 64
# Edge softening, in pixels of a 1024 px image (scaled with the image).
FEATHER_SIGMA = 1.2

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Cutout:
    """The subject cut out of an image."""

    # The input's colours with the mask as alpha (RGBA, the input's size).
    image_rgba: Image.Image
    # L, 255 where the subject is, 0 for background, soft along the edge.
    mask: Image.Image
    # (x, y, width, height) in input pixels: the box GrabCut started from.
    box_used: Box


def default_box(width: int, height: int) -> Box:
    """The image less DEFAULT_MARGIN on each side."""
    dx, dy = round(width * DEFAULT_MARGIN), round(height * DEFAULT_MARGIN)
    return (dx, dy, width - 2 * dx, height - 2 * dy)


def remove_background(
    image: Image.Image,
    *,
    box: Box | None = None,
    iterations: int = 5,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> Cutout:
    """Cut the subject inside `box` (x, y, width, height; default: `default_box`) out of `image`.

    GrabCut runs one iteration at a time (progress and `should_stop` between them) on a copy at
    most WORK_LONG_SIDE long. InvalidImage (field "box") when the box is not inside the image or
    leaves no background outside it."""
    if iterations < 1:
        raise InvalidImage("must be at least 1", field="iterations")
    width, height = image.size
    chosen = default_box(width, height) if box is None else _checked_box(box, width, height)
    checkpoint(should_stop)
    factor = min(1.0, WORK_LONG_SIDE / max(width, height))
    work = to_bgr(image)
    if factor < 1.0:
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        work = cv2.resize(work, size, interpolation=cv2.INTER_AREA)
    rect = _scaled_rect(chosen, factor, work.shape[1], work.shape[0])
    if work.shape[0] * work.shape[1] - rect[2] * rect[3] < MIN_BACKGROUND_PIXELS:
        raise InvalidImage("must leave some background outside it", field="box")
    labels = np.zeros(work.shape[:2], np.uint8)
    bgd_model = np.zeros((1, 65), np.float64)
    fgd_model = np.zeros((1, 65), np.float64)
    for done in range(iterations):
        checkpoint(should_stop)
        mode = cv2.GC_INIT_WITH_RECT if done == 0 else cv2.GC_EVAL
        cv2.grabCut(work, labels, rect, bgd_model, fgd_model, 1, mode)
        report(progress, 0.9 * (done + 1) / iterations)
    mask = _final_mask(labels, (width, height), factor)
    alpha = alpha_of(image)
    if alpha is not None:  # already transparent stays transparent
        mask = np.minimum(mask, np.asarray(alpha))
    mask_image = Image.fromarray(mask)
    rgba = image.convert("RGB")
    rgba.putalpha(mask_image)
    report(progress, 1.0)
    return Cutout(rgba, mask_image, chosen)


def _checked_box(box: Box, width: int, height: int) -> Box:
    x, y, w, h = (int(v) for v in box)
    if w < 2 or h < 2:
        raise InvalidImage("width and height must be at least 2", field="box")
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise InvalidImage(
            f"({x}, {y}, {w}, {h}) is not inside the {width}x{height} image", field="box"
        )
    return (x, y, w, h)


def _scaled_rect(box: Box, factor: float, width: int, height: int) -> Box:
    """The box in the working copy's pixels, grown outward to whole pixels, at least 1x1."""
    x, y, w, h = box
    x0, y0 = math.floor(x * factor), math.floor(y * factor)
    x1 = min(width, max(x0 + 1, math.ceil((x + w) * factor)))
    y1 = min(height, max(y0 + 1, math.ceil((y + h) * factor)))
    return (x0, y0, x1 - x0, y1 - y0)


def _final_mask(labels: np.ndarray, size: tuple[int, int], factor: float) -> np.ndarray:
    """GrabCut's labels as a 0..255 mask of `size`, specks removed and the edge softened."""
    foreground = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    subject: np.ndarray = np.where(foreground, 255, 0).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    subject = cv2.morphologyEx(subject, cv2.MORPH_OPEN, kernel)
    subject = cv2.morphologyEx(subject, cv2.MORPH_CLOSE, kernel)
    if factor < 1.0:
        subject = cv2.resize(subject, size, interpolation=cv2.INTER_LINEAR)
    sigma = FEATHER_SIGMA * max(1.0, max(size) / WORK_LONG_SIDE)
    return cv2.GaussianBlur(subject, (0, 0), sigma)
