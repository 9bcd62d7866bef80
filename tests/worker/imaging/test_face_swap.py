"""Face swap between copies of the astronaut: the target's face changes, nothing else does."""

from __future__ import annotations

from itertools import pairwise

import cv2
import numpy as np
import pytest
from PIL import Image, ImageEnhance
from skimage import data

from apps.worker.errors import InvalidImage, Stopped
from apps.worker.imaging.face_swap import match_colour, swap_face


def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut())


def source() -> Image.Image:
    return astronaut().resize((256, 256), Image.Resampling.LANCZOS)


def target() -> Image.Image:
    """The astronaut mirrored, smaller, brighter, on a larger grey canvas."""
    mirrored = astronaut().transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    face = ImageEnhance.Brightness(mirrored.resize((200, 200), Image.Resampling.LANCZOS))
    canvas = Image.new("RGB", (320, 280), (90, 100, 110))
    canvas.paste(face.enhance(1.3), (60, 40))
    return canvas


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_the_source_face_replaces_the_target_face_and_only_it() -> None:
    src, dst = source(), target()
    src_bytes, dst_bytes = src.tobytes(), dst.tobytes()
    swapped = swap_face(src, dst)
    assert swapped.image.size == dst.size and swapped.image.mode == "RGB"
    assert (src.tobytes(), dst.tobytes()) == (src_bytes, dst_bytes)
    box = swapped.target_box
    # The mirrored face sits at x ~ 60 + 200 - (272 * 200 / 512), y ~ 40 + 66 * 200 / 512.
    assert 140 <= box.x <= 165 and 55 <= box.y <= 75
    assert swapped.aligned_by == "eyes"

    before = np.asarray(dst, dtype=np.float64)
    after = np.asarray(swapped.image, dtype=np.float64)
    inside = (slice(box.y, box.y + box.height), slice(box.x, box.x + box.width))
    assert np.abs(after[inside] - before[inside]).mean() > 5
    far = np.ones(before.shape[:2], bool)
    pad_x, pad_y = box.width // 4, box.height // 4
    far[box.y - pad_y : box.y + box.height + pad_y, box.x - pad_x : box.x + box.width + pad_x] = 0
    assert np.abs(after[far] - before[far]).max() <= 1

    # The middle of the face now looks like the (unmirrored) source face, not the old one.
    sb = swapped.source_box
    crop = (box.x, box.y, box.x + box.width, box.y + box.height)
    reference = src.convert("L").crop((sb.x, sb.y, sb.x + sb.width, sb.y + sb.height))
    reference_px = np.asarray(reference.resize((box.width, box.height)), dtype=np.float64)
    new_px = np.asarray(swapped.image.convert("L").crop(crop), dtype=np.float64)
    old_px = np.asarray(dst.convert("L").crop(crop), dtype=np.float64)
    mid = (slice(box.height // 4, 3 * box.height // 4), slice(box.width // 4, 3 * box.width // 4))
    assert (
        correlation(new_px[mid], reference_px[mid])
        > correlation(old_px[mid], reference_px[mid]) + 0.1
    )


def test_a_tinted_source_face_comes_out_in_the_target_colour() -> None:
    src = source()
    r, g, b = src.split()
    blue = Image.merge("RGB", (r.point(lambda v: v * 0.6), g, b.point(lambda v: min(255, v + 60))))
    swapped = swap_face(blue, target())
    box = swapped.target_box
    crop = (box.x + box.width // 4, box.y + box.height // 4)
    crop += (box.x + 3 * box.width // 4, box.y + 3 * box.height // 4)
    new = np.asarray(swapped.image.crop(crop), dtype=np.float64).mean(axis=(0, 1))
    old = np.asarray(target().crop(crop), dtype=np.float64).mean(axis=(0, 1))
    assert np.abs(new - old).max() < 15


def test_match_colour_moves_lab_mean_and_spread_under_the_mask() -> None:
    rng = np.random.default_rng(5)
    patch = rng.normal((60, 90, 200), 10, (40, 40, 3)).clip(0, 255).astype(np.uint8)
    region = rng.normal((120, 140, 160), 18, (40, 40, 3)).clip(0, 255).astype(np.uint8)
    mask = np.zeros((40, 40), np.uint8)
    mask[5:35, 5:35] = 255
    matched = match_colour(patch, region, mask)
    inside = mask > 0
    lab = [cv2.cvtColor(a, cv2.COLOR_BGR2LAB).astype(np.float64)[inside] for a in (matched, region)]
    assert np.abs(lab[0].mean(axis=0) - lab[1].mean(axis=0)).max() < 2
    assert np.allclose(lab[0].std(axis=0), lab[1].std(axis=0), rtol=0.15)
    # The input patch is left alone.
    assert patch.mean() < 120


def test_a_face_filling_the_frame_is_swapped_inside_the_image() -> None:
    dst = astronaut().crop((170, 55, 290, 175))
    swapped = swap_face(source().transpose(Image.Transpose.FLIP_LEFT_RIGHT), dst)
    assert swapped.image.size == dst.size
    diff = np.abs(np.asarray(swapped.image, np.float64) - np.asarray(dst, np.float64))
    assert diff.mean() > 2


def test_without_both_eyes_the_boxes_align_the_face() -> None:
    # In this crop the eye cascade finds one eye only (OpenCV 4.x's haarcascade_eye.xml).
    dst = astronaut().crop((150, 30, 270, 150))
    swapped = swap_face(source().transpose(Image.Transpose.FLIP_LEFT_RIGHT), dst)
    assert swapped.aligned_by == "box"
    box = swapped.target_box
    inside = (slice(box.y, box.y + box.height), slice(box.x, box.x + box.width))
    diff = np.abs(np.asarray(swapped.image, np.float64) - np.asarray(dst, np.float64))
    assert diff[inside].mean() > 5


def test_an_rgba_target_keeps_its_alpha() -> None:
    dst = target().convert("RGBA")
    alpha = Image.new("L", dst.size, 255)
    alpha.paste(0, (0, 0, 40, 40))
    dst.putalpha(alpha)
    swapped = swap_face(source(), dst)
    assert swapped.image.mode == "RGBA"
    assert swapped.image.getchannel("A").tobytes() == alpha.tobytes()


def test_no_face_in_the_target_names_target_image() -> None:
    with pytest.raises(InvalidImage) as caught:
        swap_face(source(), Image.new("RGB", (200, 200), (200, 180, 160)))
    assert caught.value.field == "target_image"


def test_no_face_in_the_source_names_image() -> None:
    noise = np.random.default_rng(3).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    with pytest.raises(InvalidImage) as caught:
        swap_face(Image.fromarray(noise), target())
    assert caught.value.field == "image"


def test_progress_rises_to_one_and_should_stop_stops() -> None:
    seen: list[float] = []
    swap_face(source(), target(), progress=seen.append)
    assert seen[-1] == 1.0 and len(seen) >= 4
    assert all(a < b for a, b in pairwise(seen))
    calls: list[float] = []
    with pytest.raises(Stopped):
        swap_face(source(), target(), progress=calls.append, should_stop=lambda: len(calls) >= 2)
    assert calls and calls[-1] < 1.0
