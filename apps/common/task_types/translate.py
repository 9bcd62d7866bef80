from pydantic import Field, field_validator

from apps.common.task_types import TaskType
from apps.common.task_types._cost import ImageSizes, word_cost
from apps.common.wire.contracts import StrictModel


class TranslateInput(StrictModel):
    # One text or up to 64 of them, each up to 5000 characters.
    text: str | list[str] = Field(min_length=1)
    # For multilingual models with `>>xx<<` tokens (e.g. opus-mt-en-ROMANCE); single-pair
    # models translate their one direction and ignore it.
    target_lang: str | None = Field(default=None, pattern=r"^[a-z]{2,3}(_[A-Za-z]{2,4})?$")
    source_lang: str | None = Field(default=None, pattern=r"^[a-z]{2,3}(_[A-Za-z]{2,4})?$")
    max_new_tokens: int = Field(default=256, ge=1, le=1024)

    @field_validator("text")
    @classmethod
    def _bounded(cls, value: str | list[str]) -> str | list[str]:
        texts = [value] if isinstance(value, str) else value
        if len(texts) > 64:
            raise ValueError("at most 64 texts")
        for text in texts:
            if not text.strip():
                raise ValueError("must not be blank")
            if len(text) > 5000:
                raise ValueError("each text is at most 5000 characters")
        return value


def cost(task_input: TranslateInput, _sizes: ImageSizes) -> float:
    text = task_input.text
    return word_cost(*([text] if isinstance(text, str) else text))


TASK_TYPE = TaskType(
    name="translate",
    description="Translate text with a seq2seq model (FLUXGATE_TRANSLATE_MODEL).",
    input_model=TranslateInput,
    queue="cpu",
    runs_on="worker",
    cost_formula=cost,
    cost_fields=("text",),
    requires_setting="translate_model",
    result_keys={"translations": "one string per input text", "model": "the model used"},
)
