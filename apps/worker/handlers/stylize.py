"""`stylize`: OpenCV's non-photorealistic presets."""

from __future__ import annotations

from apps.common.task_types.stylize import StylizeInput
from apps.worker.handlers import HandlerContext, Output, OutputImage, check_pixels
from apps.worker.imaging.stylize import stylize

TASK_TYPE = "stylize"


def run(task_input: StylizeInput, ctx: HandlerContext) -> Output:
    image = ctx.image("image")
    check_pixels(image, ctx.settings.worker_max_work_pixels, field="image")
    ctx.progress(0.2)
    styled = stylize(
        image, task_input.preset, sigma_s=task_input.sigma_s, sigma_r=task_input.sigma_r
    )
    return Output(
        images=[OutputImage(styled, task_input.output_format.value)],
        extra={"preset": task_input.preset},
    )
