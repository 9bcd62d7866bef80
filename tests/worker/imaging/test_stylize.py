"""Stylize presets on the astronaut (downsized): each changes the picture in its own way."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from apps.worker.errors import InvalidImage
from apps.worker.imaging.stylize import PRESETS, stylize


def photo() -> Image.Image:
    return Image.fromarray(data.astronaut()).resize((256, 256), Image.Resampling.LANCZOS)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


def sharpness(image: Image.Image) -> float:
    """Variance of the Laplacian of the gray image: fine detail and edge contrast."""
    gray = np.asarray(image.convert("L"))
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


@pytest.mark.parametrize("preset", PRESETS)
def test_each_preset_keeps_the_size_and_changes_the_picture(preset: str) -> None:
    source = photo()
    before = source.tobytes()
    out = stylize(source, preset)
    assert out.size == source.size and out.mode == "RGB"
    assert np.abs(pixels(out) - pixels(source)).mean() > 5
    assert source.tobytes() == before


def test_pencil_sketch_is_gray_and_its_colour_variant_is_not() -> None:
    gray = pixels(stylize(photo(), "pencil_sketch"))
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    # Mostly paper-white with darker strokes.
    assert gray.mean() > 170 and gray.min() < 100
    colour = pixels(stylize(photo(), "pencil_sketch_color"))
    assert np.abs(colour[..., 0] - colour[..., 2]).mean() > 5


def test_detail_enhance_sharpens() -> None:
    assert sharpness(stylize(photo(), "detail_enhance")) > 1.5 * sharpness(photo())


def test_cartoon_inks_edges_in_black() -> None:
    source, out = pixels(photo()), pixels(stylize(photo(), "cartoon"))
    ink = (out == 0).all(axis=-1) & (source.max(axis=-1) > 60)
    assert 0.02 < ink.mean() < 0.4


def test_sigma_s_changes_the_result() -> None:
    small = pixels(stylize(photo(), "stylization", sigma_s=5))
    large = pixels(stylize(photo(), "stylization", sigma_s=150))
    assert np.abs(small - large).mean() > 3


@pytest.mark.parametrize("preset", PRESETS)
def test_zero_sigmas_still_give_a_picture(preset: str) -> None:
    # OpenCV's filters return a blank image at exactly 0; the floors keep the picture.
    out = pixels(stylize(photo(), preset, sigma_s=0, sigma_r=0))
    assert out.std() > 10


def test_alpha_is_kept() -> None:
    source = photo().convert("RGBA")
    alpha = Image.new("L", source.size, 255)
    alpha.paste(0, (0, 0, 64, 64))
    source.putalpha(alpha)
    out = stylize(source, "cartoon")
    assert out.mode == "RGBA"
    assert out.getchannel("A").tobytes() == alpha.tobytes()


@pytest.mark.parametrize(
    ("preset", "sigma_s", "sigma_r", "field"),
    [
        ("oil_paint", 60, 0.45, "preset"),
        ("stylization", -1, 0.45, "sigma_s"),
        ("stylization", 200.5, 0.45, "sigma_s"),
        ("stylization", math.nan, 0.45, "sigma_s"),
        ("cartoon", 60, 1.01, "sigma_r"),
        ("cartoon", 60, -0.1, "sigma_r"),
    ],
)
def test_bad_settings_name_their_field(
    preset: str, sigma_s: float, sigma_r: float, field: str
) -> None:
    with pytest.raises(InvalidImage) as caught:
        stylize(photo(), preset, sigma_s=sigma_s, sigma_r=sigma_r)
    assert caught.value.field == field
