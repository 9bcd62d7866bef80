from typing import Literal

from pydantic import Field

from apps.common.task_types import TaskType
from apps.common.task_types._cost import ImageSizes, word_cost
from apps.common.wire.contracts import Prompt, StrictModel

PromptStyle = Literal[
    "photo",
    "cinematic",
    "anime",
    "watercolor",
    "oil_painting",
    "digital_art",
    "pixel_art",
    "3d_render",
]


class PromptRefineInput(StrictModel):
    prompt: Prompt
    # Adds the style's modifiers and negative terms (the worker's rules table has one per name).
    style: PromptStyle | None = None
    max_length: int = Field(default=400, ge=20, le=2000)
    # `auto`: the LLM when FLUXGATE_LLM_URL is set, else the rules.
    method: Literal["auto", "rules", "llm"] = "auto"


def cost(task_input: PromptRefineInput, _sizes: ImageSizes) -> float:
    return word_cost(task_input.prompt)


TASK_TYPE = TaskType(
    name="prompt_refine",
    description="Rewrite a prompt for text-to-image: rules, or an OpenAI-compatible LLM.",
    input_model=PromptRefineInput,
    queue="cpu",
    runs_on="worker",
    cost_formula=cost,
    cost_fields=("prompt",),
    result_keys={"prompt": "refined", "negative_prompt": "suggested", "method": "rules or llm"},
)
