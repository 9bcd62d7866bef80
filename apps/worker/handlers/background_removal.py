"""`background_removal`: GrabCut from a box; an RGBA cut-out plus its mask."""

from __future__ import annotations

from apps.common.task_types.background_removal import BackgroundRemovalInput
from apps.worker.handlers import HandlerContext, Output, OutputImage
from apps.worker.imaging.background import remove_background

TASK_TYPE = "background_removal"


def run(task_input: BackgroundRemovalInput, ctx: HandlerContext) -> Output:
    image = ctx.image("image")
    box = task_input.box
    cutout = remove_background(
        image,
        box=None if box is None else (box.x, box.y, box.width, box.height),
        iterations=task_input.iterations,
        progress=ctx.progress,
        should_stop=ctx.should_stop,
    )
    x, y, width, height = cutout.box_used
    return Output(
        images=[OutputImage(cutout.image_rgba, task_input.output_format)],
        extra={
            "mask": OutputImage(cutout.mask, "png"),
            "box": {"x": x, "y": y, "width": width, "height": height},
        },
    )
