"""Face detection with OpenCV's frontal-face Haar cascade, and boxes drawn on an image."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Detection runs on a copy at most this long on its long side; boxes are mapped back.
DETECT_LONG_SIDE = 1024
# How much each step of the cascade's image pyramid shrinks, and how many overlapping raw hits a
# face needs (OpenCV's usual values).
SCALE_FACTOR = 1.1
MIN_NEIGHBORS = 5
# The logistic's spread over level weights: a weight of 0 (a marginal hit) scores 0.5, the
# astronaut's clear frontal face (weight ~7.4) ~0.98.
WEIGHT_SPREAD = 2.0
BOX_COLOUR = (255, 40, 40)

# cv2.CascadeClassifier.detectMultiScale is not documented as thread-safe.
_cascade_lock = threading.Lock()


@dataclass(frozen=True)
class FaceBox:
    """A face in image pixels; `score` in 0..1 from the cascade's confidence (higher is surer)."""

    x: int
    y: int
    width: int
    height: int
    score: float

    @property
    def area(self) -> int:
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        return (self.x + self.width / 2, self.y + self.height / 2)


@cache
def cascade(name: str) -> cv2.CascadeClassifier:
    """One of OpenCV's bundled Haar cascades (e.g. `haarcascade_eye.xml`), loaded once."""
    folder: str = cv2.data.haarcascades  # type: ignore[attr-defined]
    classifier = cv2.CascadeClassifier(folder + name)
    if classifier.empty():
        raise RuntimeError(f"OpenCV's {name} did not load")
    return classifier


def gray_for_detection(image: Image.Image) -> tuple[np.ndarray, float]:
    """A grayscale copy at most DETECT_LONG_SIDE long (area-averaged), and its scale factor.

    Not histogram-equalised: the cascade already normalises each window by its own contrast, and
    a global equalisation lets a large plain background squash the face's tones (the astronaut
    pasted on a 1300x1100 grey canvas was missed with it, found without)."""
    factor = min(1.0, DETECT_LONG_SIDE / max(image.size))
    gray = np.asarray(image.convert("L"))
    if factor < 1.0:
        size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(gray), factor


def run_cascade(
    name: str, gray: np.ndarray, min_size: int, min_neighbors: int = MIN_NEIGHBORS
) -> list[tuple[int, int, int, int, float]]:
    """Raw cascade hits on a uint8 gray array: (x, y, w, h, level weight), best first."""
    with _cascade_lock:
        rects, _levels, weights = cascade(name).detectMultiScale3(
            gray,
            scaleFactor=SCALE_FACTOR,
            minNeighbors=min_neighbors,
            minSize=(min_size, min_size),
            outputRejectLevels=True,
        )
    hits = [
        (int(x), int(y), int(w), int(h), float(weight))
        for (x, y, w, h), weight in zip(rects, np.ravel(weights), strict=True)
    ]
    return sorted(hits, key=lambda hit: hit[4], reverse=True)


def detect_faces(
    image: Image.Image, *, min_size: int = 24, max_faces: int | None = None
) -> list[FaceBox]:
    """Frontal faces in `image`, best score first (at most `max_faces`).

    `min_size` is in pixels of the detection copy (the image scaled to at most 1024 on its long
    side). `score` is the logistic 1 / (1 + exp(-w / 2)) of the cascade's level weight w (the sum
    of its last stage), so 0.5 is a marginal detection and a clear face is above 0.9."""
    gray, factor = gray_for_detection(image)
    faces = []
    for x, y, w, h, weight in run_cascade("haarcascade_frontalface_default.xml", gray, min_size):
        x0, y0 = round(x / factor), round(y / factor)
        x1 = min(image.width, round((x + w) / factor))
        y1 = min(image.height, round((y + h) / factor))
        score = 1.0 / (1.0 + math.exp(-weight / WEIGHT_SPREAD))
        faces.append(FaceBox(x0, y0, x1 - x0, y1 - y0, round(score, 4)))
    return faces if max_faces is None else faces[:max_faces]


def annotate(image: Image.Image, boxes: list[FaceBox]) -> Image.Image:
    """A copy of `image` (RGB) with each box outlined and its score written above it."""
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    line = max(2, round(max(out.size) / 300))
    font = ImageFont.load_default(size=max(10, round(max(out.size) / 40)))
    for box in boxes:
        draw.rectangle(
            (box.x, box.y, box.x + box.width - 1, box.y + box.height - 1),
            outline=BOX_COLOUR,
            width=line,
        )
        label = f"{box.score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        text_y = box.y - (bottom - top) - 2 * line
        if text_y < 0:  # no room above: write inside the box
            text_y = box.y + line
        draw.rectangle(
            (box.x, text_y, box.x + right - left + 2 * line, text_y + bottom - top + 2 * line),
            fill=BOX_COLOUR,
        )
        draw.text((box.x + line - left, text_y + line - top), label, fill="white", font=font)
    return out
