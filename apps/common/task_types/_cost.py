"""The unit of a job's cost and the pieces the task types price their inputs with.

The unit is the megapixel-step: one FLUX denoising step of a one-megapixel image (10⁶ pixels;
1024x1024 is 1.048576). GPU types count the steps they run; CPU types (run in the worker) are
priced in the same unit, scaled down so that they stay small next to any GPU job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PIXELS_PER_MEGAPIXEL = 1_000_000
# What a megapixel of CPU image work (stylize, face_detect, ...) costs: a hundredth of one FLUX
# step on as many pixels, about what it takes on a worker next to a GPU step.
CPU_MEGAPIXEL_COST = 0.01
# What a word of text work (translate, prompt_refine) costs: a thousand words cost one step.
WORD_COST = 0.001
# The least any job costs, so a fair scheduler's virtual times always advance.
MIN_COST = 0.001
# Costs are kept and shown to this many decimals.
COST_DECIMALS = 4


@dataclass(frozen=True)
class ImageSizes:
    """The sizes of a job's input images as far as the gateway knows them at submit: uploads and
    base64 are decoded there; an image given as a URL is fetched by the worker later, so its
    size is unknown and it is charged at the bound, `max_pixels`."""

    # Image field -> (width, height).
    known: Mapping[str, tuple[int, int]]
    # FLUXGATE_INPUT_IMAGE_MAX_PIXELS: no input image may have more.
    max_pixels: int

    def size(self, name: str) -> tuple[int, int] | None:
        return self.known.get(name)

    def pixels(self, name: str) -> int:
        """The image's pixels, or the bound when its size is unknown."""
        size = self.known.get(name)
        return self.max_pixels if size is None else size[0] * size[1]


def megapixels(pixels: float) -> float:
    return pixels / PIXELS_PER_MEGAPIXEL


def cpu_image_cost(sizes: ImageSizes, *names: str, times: float = 1.0) -> float:
    """CPU work over whole images: their megapixels (times `times`, an output's growth)."""
    return sum(megapixels(sizes.pixels(name)) for name in names) * times * CPU_MEGAPIXEL_COST


def word_cost(*texts: str) -> float:
    return sum(len(text.split()) for text in texts) * WORD_COST
