"""`GET /models`: the models and LoRA adapters requests may name."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from apps.gateway.deps import Settings

router = APIRouter(tags=["tasks"])


class ModelInfo(BaseModel):
    id: str
    default_steps: int
    default_guidance: float
    uses_guidance: bool
    max_side: int


class ModelsInfo(BaseModel):
    default: str
    models: list[ModelInfo]
    # Adapter names for `loras[].name` (the `.safetensors` files of FLUXGATE_LORA_DIR).
    adapters: list[str]
    max_loras: int
    max_lora_scale: float


@router.get("/models", response_model=ModelsInfo)
async def models(settings: Settings) -> dict[str, Any]:
    """The deployment's models and adapters. Public like `GET /task-types`: it names what this
    deployment serves, nothing of any tenant."""
    return settings.model_registry().listing()
