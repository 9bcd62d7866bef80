"""What a request may name of the deployment's models and LoRA adapters: the wire shapes and
their hard limits (the deployment narrows them: `apps/common/model_registry.py`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# Model ids and adapter names are file-name-safe: an adapter name is a file in FLUXGATE_LORA_DIR,
# so no slashes, no leading dot, nothing a path could climb out with.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# The most adapters and the widest scale any deployment may allow (FLUXGATE_MAX_LORAS and
# FLUXGATE_LORA_MAX_SCALE pick within these).
MAX_LORAS = 8
MAX_LORA_SCALE = 4.0


class LoraChoice(BaseModel):
    """One LoRA adapter of a request, at its strength (0 leaves the model as it is)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    scale: float = Field(default=1.0, ge=-MAX_LORA_SCALE, le=MAX_LORA_SCALE)


def adapter_key(loras: list[LoraChoice]) -> tuple[tuple[str, float], ...]:
    """A request's adapter set as one hashable value: requests with equal keys run the model
    with the same weights (order does not matter: the LoRA deltas add up)."""
    return tuple(sorted((lora.name, float(lora.scale)) for lora in loras))


def choice_at_default(values: Mapping[str, Any], default_model: str | None = None) -> set[str]:
    """The choice fields an input leaves out wherever it is stored or sent (its record, the
    model server's request, the body an Idempotency-Key binds to): `model` when not given or
    the deployment's `default_model`, `loras` when none. A process one release older refuses
    fields it does not know, and a rolling update runs both; readers take a missing `model` as
    the default."""
    left_out = set()
    if "model" in values and values["model"] in (None, default_model):
        left_out.add("model")
    if "loras" in values and not values["loras"]:
        left_out.add("loras")
    return left_out
