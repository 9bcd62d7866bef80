"""Classical face swap: align a face onto another, match its colour, Poisson-clone it in."""

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
    from_bgr,
    report,
    to_bgr,
)
from apps.worker.imaging.faces import FaceBox, detect_faces, run_cascade

# Eyes are looked for in the top of the face box, scaled to this width (the eye cascade's
# 20 px window misses the eyes of a small face otherwise).
EYE_FACE_WIDTH = 160
EYE_BAND = 0.6
# The pasted ellipse, in face-box widths/heights: Haar boxes run from the brows to the chin, so
# the ellipse sits a little low and stays inside the box, clear of hair and background.
ELLIPSE_AXES = (0.40, 0.48)
ELLIPSE_DROP = 0.04
FEATHER = 0.05
# A face counts as "the" face when it scores within this of the best; the largest of those wins.
SCORE_SLACK = 0.1


@dataclass(frozen=True)
class Swapped:
    """The target picture with the source face in it (RGB, RGBA when the target had alpha)."""

    image: Image.Image
    # The face taken from `source`, and the one replaced in `target`, in their images' pixels.
    source_box: FaceBox
    target_box: FaceBox
    # "eyes" (rotation, scale and position from both eyes) or "box" (scale and position only).
    aligned_by: str


def swap_face(
    source: Image.Image,
    target: Image.Image,
    *,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> Swapped:
    """Put the main face of `source` into the main face of `target`.

    Raises InvalidImage (field "image" or "target_image") when either has no face."""
    checkpoint(should_stop)
    source_box = main_face(source, "image")
    report(progress, 0.15)
    checkpoint(should_stop)
    target_box = main_face(target, "target_image")
    report(progress, 0.3)
    checkpoint(should_stop)
    src = to_bgr(source)
    dst = to_bgr(target)
    source_eyes = find_eyes(src, source_box)
    target_eyes = find_eyes(dst, target_box)
    matrix = None
    if source_eyes is not None and target_eyes is not None:
        matrix = _eye_transform(source_eyes, target_eyes, target_box.width / source_box.width)
    aligned_by = "eyes" if matrix is not None else "box"
    if matrix is None:
        matrix = _box_transform(source_box, target_box)
    roll = 0.0 if target_eyes is None else _angle(*target_eyes)
    mask = _ellipse_mask(dst.shape[:2], target_box, roll)
    x, y, w, h = cv2.boundingRect(mask)
    if w < 3 or h < 3:
        raise InvalidImage("the face is too close to the edge to replace", field="target_image")
    # Work on the mask's bounding box only: the source warped straight into it.
    local = matrix.copy()
    local[:, 2] -= (x, y)
    patch = cv2.warpAffine(src, local, (w, h), flags=cv2.INTER_LINEAR)
    inside = cv2.warpAffine(np.full(src.shape[:2], 255, np.uint8), local, (w, h))
    region_mask = cv2.bitwise_and(mask[y : y + h, x : x + w], inside)
    report(progress, 0.5)
    checkpoint(should_stop)
    region = dst[y : y + h, x : x + w]
    patch = match_colour(patch, region, region_mask)
    report(progress, 0.65)
    checkpoint(should_stop)
    blended = _clone(patch, dst, region_mask, (x, y))
    report(progress, 0.95)
    alpha = alpha_of(target)
    result = Swapped(from_bgr(blended, alpha), source_box, target_box, aligned_by)
    report(progress, 1.0)
    return result


def main_face(image: Image.Image, field: str) -> FaceBox:
    """The image's main face: the largest of those scoring near the best (else InvalidImage)."""
    faces = detect_faces(image)
    if not faces:
        raise InvalidImage("no face found in this image", field=field)
    best = faces[0].score
    return max((face for face in faces if face.score >= best - SCORE_SLACK), key=lambda f: f.area)


def find_eyes(
    bgr: np.ndarray, face: FaceBox
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """Centres of the (image-)left and right eye in image pixels, or None unless both are found."""
    band = bgr[face.y : face.y + round(face.height * EYE_BAND), face.x : face.x + face.width]
    if band.size == 0:
        return None
    factor = EYE_FACE_WIDTH / face.width
    size = (EYE_FACE_WIDTH, max(1, round(band.shape[0] * factor)))
    gray = cv2.cvtColor(band, cv2.COLOR_BGR2GRAY)
    interpolation = cv2.INTER_CUBIC if factor > 1 else cv2.INTER_AREA
    gray = cv2.equalizeHist(cv2.resize(gray, size, interpolation=interpolation))
    left: tuple[float, float] | None = None
    right: tuple[float, float] | None = None
    for ex, ey, ew, eh, _weight in run_cascade("haarcascade_eye.xml", gray, 16, 3):
        cx, cy = (ex + ew / 2) / factor, (ey + eh / 2) / factor
        point = (face.x + cx, face.y + cy)
        # Hits come best first; keep the best on each side of the face.
        if cx < face.width / 2:
            left = left or point
        else:
            right = right or point
    if left is None or right is None:
        return None
    spread = math.dist(left, right) / face.width
    if not 0.2 <= spread <= 0.75 or abs(right[1] - left[1]) > 0.35 * face.width:
        return None
    return left, right


def _angle(left: tuple[float, float], right: tuple[float, float]) -> float:
    return math.atan2(right[1] - left[1], right[0] - left[0])


def _eye_transform(
    source: tuple[tuple[float, float], tuple[float, float]],
    target: tuple[tuple[float, float], tuple[float, float]],
    box_scale: float,
) -> np.ndarray | None:
    """The similarity taking the source eyes onto the target eyes; None when implausible."""
    scale = math.dist(*target) / math.dist(*source)
    turn = _angle(*target) - _angle(*source)
    turn = (turn + math.pi) % (2 * math.pi) - math.pi
    if not 0.75 <= scale / box_scale <= 1.33 or abs(turn) > math.radians(45):
        return None
    cos, sin = scale * math.cos(turn), scale * math.sin(turn)
    (sx, sy), (tx, ty) = source[0], target[0]
    return np.array([[cos, -sin, tx - cos * sx + sin * sy], [sin, cos, ty - sin * sx - cos * sy]])


def _box_transform(source: FaceBox, target: FaceBox) -> np.ndarray:
    scale = target.width / source.width
    (sx, sy), (tx, ty) = source.center, target.center
    return np.array([[scale, 0.0, tx - scale * sx], [0.0, scale, ty - scale * sy]])


def _ellipse_mask(shape: tuple[int, ...], face: FaceBox, roll: float) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    cx, cy = face.center
    centre = (round(cx), round(cy + ELLIPSE_DROP * face.height))
    axes = (round(ELLIPSE_AXES[0] * face.width), round(ELLIPSE_AXES[1] * face.height))
    cv2.ellipse(mask, centre, axes, math.degrees(roll), 0, 360, 255, thickness=-1)
    # seamlessClone needs a frame of untouched pixels around the mask.
    mask[[0, -1], :] = 0
    mask[:, [0, -1]] = 0
    return mask


def match_colour(patch: np.ndarray, region: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`patch` with its LAB mean and spread under `mask` moved to those of `region`."""
    inside = mask > 0
    if inside.sum() < 16:
        return patch
    src = cv2.cvtColor(patch, cv2.COLOR_BGR2LAB).astype(np.float32)
    ref = cv2.cvtColor(region, cv2.COLOR_BGR2LAB).astype(np.float32)
    for channel in range(3):
        s, r = src[..., channel][inside], ref[..., channel][inside]
        # Bounded, so a flat patch or region does not blow the contrast up.
        gain = float(np.clip(r.std() / max(float(s.std()), 1e-3), 0.5, 2.0))
        src[..., channel] = (src[..., channel] - s.mean()) * gain + r.mean()
    return cv2.cvtColor(np.clip(src, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR)


def _clone(
    patch: np.ndarray, dst: np.ndarray, mask: np.ndarray, origin: tuple[int, int]
) -> np.ndarray:
    """`patch` Poisson-blended into `dst` at `origin`, then softened by a feathered mask."""
    bx, by, bw, bh = cv2.boundingRect(mask)
    # seamlessClone centres the mask's bounding box on this point (integer halves): exactly
    # where the box already is, so the clone never reaches past the image.
    centre = (origin[0] + bx + bw // 2, origin[1] + by + bh // 2)
    # A copy: seamlessClone writes into the mask it is given (OpenCV 4.14).
    cloned = cv2.seamlessClone(patch, dst, mask.copy(), centre, cv2.NORMAL_CLONE)
    h, w = mask.shape
    x, y = origin
    sigma = max(1.0, FEATHER * max(w, h))
    eroded = cv2.erode(mask, np.ones((3, 3), np.uint8), iterations=max(1, round(sigma)))
    alpha = cv2.GaussianBlur(eroded, (0, 0), sigma).astype(np.float32)[..., None] / 255.0
    out = dst.copy()
    before = dst[y : y + h, x : x + w].astype(np.float32)
    after = cloned[y : y + h, x : x + w].astype(np.float32)
    out[y : y + h, x : x + w] = np.clip(before + alpha * (after - before), 0, 255).astype(np.uint8)
    return out
