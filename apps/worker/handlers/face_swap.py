"""`face_swap`: the face of `image` put into `target_image` (classical: align, match, clone)."""

from __future__ import annotations

from dataclasses import asdict

from apps.common.task_types.face_swap import FaceSwapInput
from apps.worker.handlers import HandlerContext, Output, OutputImage, check_pixels
from apps.worker.imaging.face_swap import swap_face

TASK_TYPE = "face_swap"


def run(task_input: FaceSwapInput, ctx: HandlerContext) -> Output:
    source = ctx.image("image")
    target = ctx.image("target_image")
    check_pixels(source, ctx.settings.worker_max_work_pixels, field="image")
    check_pixels(target, ctx.settings.worker_max_work_pixels, field="target_image")
    ctx.progress(0.1)
    swapped = swap_face(source, target, progress=ctx.progress, should_stop=ctx.should_stop)
    return Output(
        images=[OutputImage(swapped.image, task_input.output_format.value)],
        extra={
            "source_face": asdict(swapped.source_box),
            "target_face": asdict(swapped.target_box),
        },
    )
