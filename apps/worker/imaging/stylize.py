"""Non-photorealistic presets: OpenCV's edge-preserving filters and a bilateral-filter cartoon."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from apps.worker.errors import InvalidImage
from apps.worker.imaging import alpha_of, from_bgr, to_bgr

PRESETS = ("stylization", "pencil_sketch", "pencil_sketch_color", "detail_enhance", "cartoon")
SIGMA_S_RANGE = (0.0, 200.0)
SIGMA_R_RANGE = (0.0, 1.0)
# OpenCV divides by both sigmas: at 0 its filters return a black (or white) image, so the
# smallest values we pass are these (the least smoothing that still looks like the picture).
SIGMA_S_FLOOR = 1.0
SIGMA_R_FLOOR = 0.01
# How dark the pencil's shading is (OpenCV's default).
PENCIL_SHADE = 0.05
# Cartoon: bilateral passes, and how much darker than its neighbourhood a pixel must be to ink
# it (lower inks the texture of flat areas too).
CARTOON_PASSES = 3
CARTOON_INK_OFFSET = 6


def stylize(
    image: Image.Image, preset: str, *, sigma_s: float = 60, sigma_r: float = 0.45
) -> Image.Image:
    """`image` rendered in one of PRESETS (RGB; RGBA keeping the input's alpha).

    `sigma_s` (0..200) is the neighbourhood size of the edge-preserving filter and `sigma_r`
    (0..1) how different colours may be and still be smoothed together. "pencil_sketch" is gray
    (R == G == B). "cartoon" maps them onto its bilateral filter: colour sigma 10 + 150 *
    sigma_r, space sigma sigma_s / 8."""
    if preset not in PRESETS:
        raise InvalidImage(f"must be one of {', '.join(PRESETS)}", field="preset")
    if not SIGMA_S_RANGE[0] <= sigma_s <= SIGMA_S_RANGE[1]:
        raise InvalidImage(f"must be within {SIGMA_S_RANGE}, not {sigma_s}", field="sigma_s")
    if not SIGMA_R_RANGE[0] <= sigma_r <= SIGMA_R_RANGE[1]:
        raise InvalidImage(f"must be within {SIGMA_R_RANGE}, not {sigma_r}", field="sigma_r")
    s = max(float(sigma_s), SIGMA_S_FLOOR)
    r = max(float(sigma_r), SIGMA_R_FLOOR)
    bgr = to_bgr(image)
    if preset == "stylization":
        out = cv2.stylization(bgr, sigma_s=s, sigma_r=r)
    elif preset == "detail_enhance":
        out = cv2.detailEnhance(bgr, sigma_s=s, sigma_r=r)
    elif preset in ("pencil_sketch", "pencil_sketch_color"):
        gray, colour = cv2.pencilSketch(bgr, sigma_s=s, sigma_r=r, shade_factor=PENCIL_SHADE)
        out = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR) if preset == "pencil_sketch" else colour
    else:
        out = _cartoon(bgr, s, r)
    return from_bgr(out, alpha_of(image))


def _cartoon(bgr: np.ndarray, sigma_s: float, sigma_r: float) -> np.ndarray:
    """Flat colour areas (a repeated bilateral filter) under dark ink edges."""
    colour = bgr
    for _ in range(CARTOON_PASSES):
        colour = cv2.bilateralFilter(
            colour, d=9, sigmaColor=10 + 150 * sigma_r, sigmaSpace=sigma_s / 8
        )
    gray = cv2.medianBlur(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), 7)
    # The ink's neighbourhood grows with the picture, so lines stay lines on large images.
    block = max(11, (max(bgr.shape[:2]) // 50) | 1)
    edges = cv2.adaptiveThreshold(
        gray,
        255,
        cv2.ADAPTIVE_THRESH_MEAN_C,
        cv2.THRESH_BINARY,
        blockSize=block,
        C=CARTOON_INK_OFFSET,
    )
    return cv2.bitwise_and(colour, colour, mask=edges)
