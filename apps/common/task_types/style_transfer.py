from pydantic import Field

from apps.common.task_types import TaskType
from apps.common.task_types._cost import ImageSizes, megapixels
from apps.common.task_types._fields import ImageField
from apps.common.wire.contracts import MAX_SEED, OutputFormat, Prompt, StrictModel
from apps.common.wire.model_choice import MAX_LORAS, NAME_PATTERN, LoraChoice


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
    # One of the deployment's models (`GET /models`; None: its default) and LoRA adapters on it.
    model: str | None = Field(default=None, pattern=NAME_PATTERN)
    loras: list[LoraChoice] = Field(default_factory=list, max_length=MAX_LORAS)


MIN_SIDE = 64


def output_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size the image is redrawn at: its aspect ratio at most `max_side` long, both sides
    multiples of 16 (FLUX's latent grid), never below 64."""
    scale = min(1.0, max_side / max(width, height))

    def side(value: int) -> int:
        return max(MIN_SIDE, int(value * scale) // 16 * 16)

    return side(width), side(height)


def cost(task_input: StyleTransferInput, sizes: ImageSizes) -> float:
    """The steps the schedule runs (`strength` of them) at the output's size: the fitted size of
    an uploaded image, or `max_side` squared (the most it can be) for one given as a URL."""
    known = sizes.size("image")
    side = task_input.max_side
    width, height = (side, side) if known is None else output_size(*known, side)
    steps = task_input.num_inference_steps * task_input.strength
    return megapixels(width * height) * steps * task_input.num_images


TASK_TYPE = TaskType(
    name="style_transfer",
    description="Redraw an image in the style a prompt describes (FLUX image-to-image).",
    input_model=StyleTransferInput,
    queue="gpu",
    runs_on="inference",
    cost_formula=cost,
    cost_fields=("num_inference_steps", "num_images", "max_side", "strength"),
    image_fields=("image",),
)
