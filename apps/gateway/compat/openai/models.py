"""`GET /v1/models`: the model ids this deployment serves under the OpenAI API: its registry's
models (`FLUXGATE_MODELS`, `GET /models`), then the aliases of the default one that
`FLUXGATE_OPENAI_MODELS` names."""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel

from apps.common.service.errors import NotFound
from apps.gateway.auth import Caller
from apps.gateway.compat.openai.images import RESPONSES, OpenAIErrorBody
from apps.gateway.compat.openai.params import openai_model_ids
from apps.gateway.deps import Settings

router = APIRouter(prefix="/v1/models", tags=["OpenAI Images API"])
# OpenAI's `created` is when a model was made; ours are served since this gateway started.
STARTED_AT = int(time.time())
OWNER = "fluxgate"


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


_LISTED: dict[int | str, dict[str, Any]] = {status: RESPONSES[status] for status in (401, 429, 503)}


@router.get("", response_model=ModelList, responses=_LISTED)
async def list_models(settings: Settings, _caller: Caller) -> ModelList:
    """The ids `model` may name."""
    return ModelList(
        data=[
            Model(id=name, created=STARTED_AT, owned_by=OWNER)
            for name in openai_model_ids(settings)
        ]
    )


@router.get(
    "/{model_id}",
    response_model=Model,
    responses={**_LISTED, 404: {"model": OpenAIErrorBody, "description": "no such model"}},
)
async def get_model(model_id: str, settings: Settings, _caller: Caller) -> Model:
    """One served model; 404 `not_found` for another id."""
    if model_id not in openai_model_ids(settings):
        raise NotFound(f"model '{model_id}' is not served here", field="model")
    return Model(id=model_id, created=STARTED_AT, owned_by=OWNER)
