"""The cost model (`TaskType.cost`, in megapixel-steps): each type's formula, the bound charged
for an image given by URL, the minimum and the rounding, and which field a too costly job should
lower."""

from __future__ import annotations

from typing import Any

import pytest

from apps.common.task_types import ImageSizes, registry, task_type
from apps.common.task_types._cost import MIN_COST
from apps.common.wire.contracts import StrictModel

URL = "https://example.com/photo.jpg"
# Only the bound is known of an image given by URL: FLUXGATE_INPUT_IMAGE_MAX_PIXELS.
BOUND = ImageSizes({}, max_pixels=40_000_000)


def job(type_name: str, **fields: Any) -> StrictModel:
    return task_type(type_name).input_model.model_validate(fields)


def cost(type_name: str, sizes: ImageSizes = BOUND, **fields: Any) -> float:
    return task_type(type_name).cost(job(type_name, **fields), sizes)


def uploaded(**sizes: tuple[int, int]) -> ImageSizes:
    return ImageSizes(sizes, max_pixels=BOUND.max_pixels)


def about(value: float) -> Any:
    """`value` as shown: costs are kept to 4 decimals."""
    return pytest.approx(value, abs=5e-5)


def test_flux_costs_every_step_of_every_image_at_its_size() -> None:
    # 1024x1024 is 1.048576 megapixels: 28 steps of 4 images.
    assert cost("flux", prompt="a fox", num_images=4) == about(117.4405)
    assert cost("flux", prompt="a fox") == about(29.3601)
    big = {"width": 2048, "height": 2048, "num_inference_steps": 100, "num_images": 4}
    assert cost("flux", prompt="a fox", **big) == about(1677.7216)
    assert cost("flux", prompt="a fox", width=256, height=256, num_inference_steps=4) == (
        about(0.2621)
    )


def test_style_transfer_costs_the_steps_its_strength_runs_at_the_fitted_size() -> None:
    fields = {"image": URL, "prompt": "oil", "strength": 0.5, "num_inference_steps": 20}
    # Fitted to max_side 1024: 2000x1000 becomes 1024x512.
    assert cost("style_transfer", uploaded(image=(2000, 1000)), **fields) == about(
        0.524288 * 20 * 0.5
    )
    # An image smaller than max_side keeps its size (sides floored to multiples of 16).
    assert cost("style_transfer", uploaded(image=(500, 300)), **fields) == about(
        496 * 288 / 1e6 * 10
    )
    # Given by URL: max_side squared, the most the output can be.
    assert cost("style_transfer", **fields, max_side=512) == about(0.262144 * 10)
    assert cost("style_transfer", **fields, num_images=3) == about(1.048576 * 10 * 3)


def test_cpu_image_types_cost_a_hundredth_of_a_step_per_megapixel() -> None:
    photo = uploaded(image=(2000, 1000), target_image=(1000, 1000))
    assert cost("stylize", photo, image=URL) == about(0.02)
    assert cost("face_detect", photo, image=URL) == about(0.02)
    assert cost("background_removal", photo, image=URL) == about(0.02)
    assert cost("face_swap", photo, image=URL, target_image=URL) == about(0.03)
    # By the output: scale² times the input's pixels.
    assert cost("upscale", photo, image=URL, scale=4) == about(0.32)


def test_an_image_given_by_url_is_charged_at_the_pixel_bound() -> None:
    assert cost("stylize", image=URL) == about(0.4)
    assert cost("upscale", image=URL, scale=2) == about(1.6)
    # One side known, the other only bounded.
    assert cost("face_swap", uploaded(image=(1000, 1000)), image=URL, target_image=URL) == (
        about(0.41)
    )


def test_text_types_cost_a_thousandth_of_a_step_per_word() -> None:
    assert cost("translate", text=["one two three " * 100, "four five"]) == about(0.302)
    assert cost("prompt_refine", prompt=" ".join(["fox"] * 40)) == about(0.04)


def test_every_job_costs_at_least_the_minimum_rounded_to_four_decimals() -> None:
    tiny = uploaded(image=(32, 32))
    assert cost("stylize", tiny, image=URL) == MIN_COST
    assert cost("translate", text="Hello") == MIN_COST
    assert cost("flux", prompt="x", width=64, height=64, num_inference_steps=1) == 0.0041


@pytest.mark.parametrize("name", sorted(registry()))
def test_every_cost_field_is_an_input_field(name: str) -> None:
    spec = task_type(name)
    assert spec.cost_fields, name
    assert set(spec.cost_fields) <= set(spec.input_model.model_fields), name


def test_the_field_to_lower_is_the_one_whose_default_helps_most() -> None:
    flux = task_type("flux")
    big = job(
        "flux", prompt="a fox", width=2048, height=2048, num_inference_steps=100, num_images=4
    )
    assert flux.field_to_lower(big, BOUND) == "num_images"
    wide = job("flux", prompt="a fox", width=2048, num_inference_steps=20)
    assert flux.field_to_lower(wide, BOUND) == "width"
    # Nothing above its default: the steps, which keep the picture's size and count.
    assert flux.field_to_lower(job("flux", prompt="a fox"), BOUND) == "num_inference_steps"
    restyle = task_type("style_transfer")
    large = job("style_transfer", image=URL, prompt="oil", max_side=2048)
    assert restyle.field_to_lower(large, BOUND) == "max_side"
    upscale = task_type("upscale")
    assert upscale.field_to_lower(job("upscale", image=URL, scale=4), BOUND) == "scale"
    assert upscale.field_to_lower(job("upscale", image=URL), BOUND) == "image"
