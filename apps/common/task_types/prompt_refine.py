from typing import Literal

from pydantic import Field, field_validator

from apps.common.contracts import StrictModel
from apps.common.task_types import TaskType

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
    prompt: str = Field(min_length=1, max_length=2000)
    # Adds the style's modifiers and negative terms (the worker's rules table has one per name).
    style: PromptStyle | None = None
    max_length: int = Field(default=400, ge=20, le=2000)
    # `auto`: the LLM when FLUXGATE_LLM_URL is set, else the rules.
    method: Literal["auto", "rules", "llm"] = "auto"

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


TASK_TYPE = TaskType(
    name="prompt_refine",
    description="Rewrite a prompt for text-to-image: rules, or an OpenAI-compatible LLM.",
    input_model=PromptRefineInput,
    queue="cpu",
    runs_on="worker",
    result_keys={"prompt": "refined", "negative_prompt": "suggested", "method": "rules or llm"},
)
