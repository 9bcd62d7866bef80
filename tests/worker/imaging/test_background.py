"""GrabCut background removal on synthetic scenes whose true subject is known pixel for pixel."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from PIL import Image

from apps.worker.errors import InvalidImage, Stopped
from apps.worker.imaging.background import default_box, remove_background


def scene(
    width: int = 240, height: int = 200, discs: tuple[tuple[int, int, int], ...] = ((120, 100, 60),)
) -> tuple[Image.Image, np.ndarray]:
    """Striped orange discs (cx, cy, r) on a wavy blue-green ground, and the discs' mask."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:height, :width]
    ground = np.stack(
        [
            40 + 30 * np.sin(xx / 5.0),
            120 + 40 * np.cos(yy / 7.0),
            170 + 20 * np.sin((xx + yy) / 9.0),
        ],
        axis=-1,
    )
    subject = np.stack([220 + 0 * xx, 120 + 80 * ((xx // 6) % 2), 30 + 0 * xx], axis=-1)
    inside = np.zeros((height, width), bool)
    for cx, cy, r in discs:
        inside |= (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    pixels = np.where(inside[..., None], subject, ground) + rng.normal(0, 12, (height, width, 3))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8)), inside


def kept(cutout_mask: Image.Image, where: np.ndarray) -> float:
    """Share of the pixels in `where` that the mask keeps (alpha > 128)."""
    return float((np.asarray(cutout_mask)[where] > 128).mean())


def test_the_disc_is_kept_and_the_ground_dropped() -> None:
    image, disc = scene()
    before = image.tobytes()
    cutout = remove_background(image)
    assert cutout.image_rgba.mode == "RGBA" and cutout.image_rgba.size == image.size
    assert cutout.mask.mode == "L" and cutout.mask.size == image.size
    assert cutout.box_used == default_box(240, 200) == (24, 20, 192, 160)
    assert kept(cutout.mask, disc) > 0.85
    # Most of the ground inside the box goes too, not just what lies outside it.
    assert kept(cutout.mask, ~disc) < 0.10
    assert cutout.image_rgba.getchannel("A").tobytes() == cutout.mask.tobytes()
    assert cutout.image_rgba.convert("RGB").tobytes() == before == image.tobytes()


def test_a_box_picks_one_subject_of_two() -> None:
    image, _ = scene(discs=((60, 100, 40), (180, 100, 40)))
    _, left = scene(discs=((60, 100, 40),))
    _, right = scene(discs=((180, 100, 40),))
    cutout = remove_background(image, box=(10, 50, 100, 100))
    assert cutout.box_used == (10, 50, 100, 100)
    assert kept(cutout.mask, left) > 0.85
    assert kept(cutout.mask, right) == 0.0


def test_a_large_image_is_cut_at_its_own_size() -> None:
    small, _ = scene()
    image = small.resize((1440, 1200), Image.Resampling.BILINEAR)  # worked on at 1024x853
    _, disc = scene(1440, 1200, ((720, 600, 360),))
    cutout = remove_background(image, iterations=1)
    assert cutout.mask.size == (1440, 1200)
    assert kept(cutout.mask, disc) > 0.85
    assert kept(cutout.mask, ~disc) < 0.10
    # The edge is soft: some alpha between 0 and 255 along the rim.
    alpha = np.asarray(cutout.mask)
    assert ((alpha > 10) & (alpha < 245)).sum() > 1000


def test_transparent_input_stays_transparent() -> None:
    image, disc = scene()
    rgba = image.convert("RGBA")
    alpha = Image.new("L", image.size, 255)
    alpha.paste(0, (100, 80, 140, 120))  # a hole in the middle of the disc
    rgba.putalpha(alpha)
    cutout = remove_background(rgba)
    mask = np.asarray(cutout.mask)
    assert mask[80:120, 100:140].max() == 0
    assert kept(cutout.mask, disc) > 0.80


@pytest.mark.parametrize(
    "box",
    [(-1, 10, 50, 50), (10, 10, 240, 50), (200, 150, 41, 20), (10, 10, 1, 40), (0, 0, 240, 200)],
)
def test_a_box_outside_or_filling_the_image_is_refused(box: tuple[int, int, int, int]) -> None:
    image, _ = scene()
    with pytest.raises(InvalidImage) as caught:
        remove_background(image, box=box)
    assert caught.value.field == "box"


def test_zero_iterations_are_refused() -> None:
    with pytest.raises(InvalidImage) as caught:
        remove_background(scene()[0], iterations=0)
    assert caught.value.field == "iterations"


def test_progress_per_iteration_and_should_stop_between_them() -> None:
    seen: list[float] = []
    remove_background(scene()[0], iterations=3, progress=seen.append)
    assert len(seen) == 4 and seen[-1] == 1.0
    assert all(a < b for a, b in pairwise(seen))
    calls: list[float] = []
    with pytest.raises(Stopped):
        remove_background(
            scene()[0], iterations=5, progress=calls.append, should_stop=lambda: len(calls) >= 2
        )
    assert len(calls) == 2
