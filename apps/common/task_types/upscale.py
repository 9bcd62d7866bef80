from typing import Literal

from apps.common.task_types import TaskType
from apps.common.task_types._cost import ImageSizes, cpu_image_cost
from apps.common.task_types._fields import ImageField
from apps.common.wire.contracts import OutputFormat, StrictModel


class UpscaleInput(StrictModel):
    image: ImageField
    scale: Literal[2, 4] = 2
    # `auto`: Real-ESRGAN where a Vulkan device works, else Pillow's Lanczos (the result says).
    method: Literal["auto", "realesrgan", "lanczos"] = "auto"
    output_format: OutputFormat = OutputFormat.PNG


def cost(task_input: UpscaleInput, sizes: ImageSizes) -> float:
    """By the output's megapixels: `scale`² times the input's."""
    return cpu_image_cost(sizes, "image", times=task_input.scale**2)


TASK_TYPE = TaskType(
    name="upscale",
    description="Upscale an image x2 or x4 with Real-ESRGAN (Lanczos where Vulkan is absent).",
    input_model=UpscaleInput,
    queue="cpu",
    runs_on="worker",
    cost_formula=cost,
    cost_fields=("image", "scale"),
    image_fields=("image",),
    result_keys={"method": "realesrgan or lanczos", "scale": "2 or 4"},
)
