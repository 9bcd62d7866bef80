from typing import Literal

from pydantic import Field

from apps.common.task_types import TaskType
from apps.common.task_types._cost import ImageSizes, cpu_image_cost
from apps.common.task_types._fields import ImageField
from apps.common.wire.contracts import StrictModel


class Box(StrictModel):
    x: int = Field(ge=0)
    y: int = Field(ge=0)
    width: int = Field(ge=2)
    height: int = Field(ge=2)


class BackgroundRemovalInput(StrictModel):
    image: ImageField
    # Around the subject; default: the image less a 10% margin on each side.
    box: Box | None = None
    iterations: int = Field(default=5, ge=1, le=10)
    # Formats that keep the alpha channel.
    output_format: Literal["png", "webp"] = "png"


def cost(_task_input: BackgroundRemovalInput, sizes: ImageSizes) -> float:
    return cpu_image_cost(sizes, "image")


TASK_TYPE = TaskType(
    name="background_removal",
    description="Cut the subject out (OpenCV GrabCut): an RGBA image plus its mask.",
    input_model=BackgroundRemovalInput,
    queue="cpu",
    runs_on="worker",
    cost_formula=cost,
    cost_fields=("image",),
    image_fields=("image",),
    result_keys={"mask": "the mask as an image", "box": "the box GrabCut started from"},
)
