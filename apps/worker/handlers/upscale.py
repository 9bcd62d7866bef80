"""`upscale`: Real-ESRGAN x2/x4 (Pillow Lanczos where no Vulkan device works)."""

from __future__ import annotations

from apps.common.task_types.upscale import UpscaleInput
from apps.worker.handlers import HandlerContext, Output, OutputImage, check_pixels
from apps.worker.imaging.upscale import upscale

TASK_TYPE = "upscale"


def run(task_input: UpscaleInput, ctx: HandlerContext) -> Output:
    source = ctx.image("image")
    check_pixels(
        source, ctx.settings.worker_max_output_pixels, field="image", times=task_input.scale**2
    )
    done = upscale(
        source,
        task_input.scale,
        method=task_input.method,
        progress=ctx.progress,
        should_stop=ctx.should_stop,
    )
    return Output(
        images=[OutputImage(done.image, task_input.output_format.value)],
        extra={"method": done.method_used, "scale": done.scale},
    )
