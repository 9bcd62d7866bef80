from typing import Literal

from pydantic import Field

from apps.common.task_types import TaskType
from apps.common.task_types._cost import ImageSizes, cpu_image_cost
from apps.common.task_types._fields import ImageField
from apps.common.wire.contracts import OutputFormat, StrictModel


class StylizeInput(StrictModel):
    image: ImageField
    preset: Literal[
        "stylization", "pencil_sketch", "pencil_sketch_color", "detail_enhance", "cartoon"
    ] = "stylization"
    # OpenCV's edge-preserving filter: neighbourhood size and how much colours may differ.
    sigma_s: float = Field(default=60, ge=0, le=200)
    sigma_r: float = Field(default=0.45, ge=0, le=1)
    output_format: OutputFormat = OutputFormat.PNG


def cost(_task_input: StylizeInput, sizes: ImageSizes) -> float:
    return cpu_image_cost(sizes, "image")


TASK_TYPE = TaskType(
    name="stylize",
    description="Classical stylization presets (OpenCV): painting, pencil sketch, detail, cartoon.",
    input_model=StylizeInput,
    queue="cpu",
    runs_on="worker",
    cost_formula=cost,
    cost_fields=("image",),
    image_fields=("image",),
)
