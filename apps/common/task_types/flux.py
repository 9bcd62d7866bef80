from apps.common.task_types import TaskType
from apps.common.task_types._cost import ImageSizes, megapixels
from apps.common.wire.contracts import FluxInput


def cost(task_input: FluxInput, _sizes: ImageSizes) -> float:
    """Every step of every image at its size. A refined prompt (`refine_prompt`) is not charged
    apart: its CPU work is small next to the denoising."""
    pixels = task_input.width * task_input.height
    return megapixels(pixels) * task_input.num_inference_steps * task_input.num_images


TASK_TYPE = TaskType(
    name="flux",
    description="Text to image with FLUX (also at POST /flux).",
    input_model=FluxInput,
    queue="gpu",
    runs_on="inference",
    cost_formula=cost,
    # Steps first: lowering them keeps the picture's size and count.
    cost_fields=("num_inference_steps", "num_images", "width", "height"),
    result_keys={"prompt": "the prompt used (after refinement, when asked)"},
)
