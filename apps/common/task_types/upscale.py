from typing import Literal

from apps.common.task_types import TaskType
from apps.common.task_types._fields import ImageField
from apps.common.wire.contracts import OutputFormat, StrictModel


class UpscaleInput(StrictModel):
    image: ImageField
    scale: Literal[2, 4] = 2
    # `auto`: Real-ESRGAN where a Vulkan device works, else Pillow's Lanczos (the result says).
    method: Literal["auto", "realesrgan", "lanczos"] = "auto"
    output_format: OutputFormat = OutputFormat.PNG


TASK_TYPE = TaskType(
    name="upscale",
    description="Upscale an image x2 or x4 with Real-ESRGAN (Lanczos where Vulkan is absent).",
    input_model=UpscaleInput,
    queue="cpu",
    runs_on="worker",
    image_fields=("image",),
    result_keys={"method": "realesrgan or lanczos", "scale": "2 or 4"},
)
