from pydantic import Field

from apps.common.task_types import TaskType
from apps.common.task_types._fields import ImageField
from apps.common.wire.contracts import MAX_SEED, OutputFormat, Prompt, StrictModel


class StyleTransferInput(StrictModel):
    """FLUX image-to-image: `image` redrawn as `prompt` says; `strength` is how far it may move."""

    image: ImageField
    prompt: Prompt
    strength: float = Field(default=0.6, ge=0.05, le=1.0)
    num_inference_steps: int = Field(default=28, ge=1, le=100)
    guidance_scale: float = Field(default=3.5, ge=0, le=20)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    num_images: int = Field(default=1, ge=1, le=4)
    # The output's long side; the image's aspect ratio is kept (both sides multiples of 16).
    max_side: int = Field(default=1024, ge=64, le=2048)
    output_format: OutputFormat = OutputFormat.PNG


TASK_TYPE = TaskType(
    name="style_transfer",
    description="Redraw an image in the style a prompt describes (FLUX image-to-image).",
    input_model=StyleTransferInput,
    queue="gpu",
    runs_on="inference",
    image_fields=("image",),
)
