"""Pydantic models and headers of the inference path: worker -> balancer -> model server
(`POST /v1/infer/{model}`), and what a model server reports of its load
(docs/architecture.md, "Internal contracts"). The job-level payloads are in `contracts.py`."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from apps.common.wire.contracts import FluxInput, StrictModel
from apps.common.wire.model_choice import choice_at_default

# --- gateway <-> inference (through the balancer) -----------------------------------------------


# What the worker and the balancer say beside an inference request (apps/balancer/proxy.py).
# Seconds the caller lets the request wait in the balancer for a backend with room.
BALANCER_WAIT_HEADER = "x-fluxgate-wait-s"
# The model and adapters it runs on (`model_route_headers`), so the balancer can prefer a server
# that has them loaded without reading the body.
BALANCER_MODEL_HEADER = "x-fluxgate-model"
BALANCER_ADAPTERS_HEADER = "x-fluxgate-adapters"
# Why the balancer refused it (a `BalancerRefusal`), and with `no_backend` for how many seconds
# the model has had no ready backend.
BALANCER_REFUSED_HEADER = "x-fluxgate-refused"
BALANCER_UNREADY_HEADER = "x-fluxgate-unready-s"


class BalancerRefusal(StrEnum):
    FULL = "full"  # every ready backend is at capacity: the job waits
    NO_BACKEND = "no_backend"  # no backend is ready (cold start, scaled to zero): the job waits
    FAILED = "failed"  # every backend that could take it was tried and failed: a real failure


# FluxInput fields the worker acts on before inference; model servers never need them.
WORKER_ONLY_FLUX_FIELDS = {"refine_prompt", "enable_base64_output"}


class InferenceRequest(StrictModel):
    task_id: str
    input: FluxInput
    # Image-to-image (`style_transfer`): the starting picture at the output's size (PNG, base64)
    # and how much of the schedule redraws it. Images travel worker -> inference over HTTP only.
    image_b64: str | None = None
    strength: float | None = Field(default=None, gt=0, le=1)

    def wire_json(self, default_model: str | None = None) -> str:
        """The request as sent to a model server: without the fields only the worker reads and
        without unset image-to-image fields, so a server one release older still accepts it
        (a rolling update runs both). Previews travel only when asked for, the model only when
        it is not the deployment's `default_model`, adapters only when any, for the same
        reason."""
        left_out = WORKER_ONLY_FLUX_FIELDS | (set() if self.input.preview else {"preview"})
        left_out |= choice_at_default(dict(self.input), default_model)
        return self.model_dump_json(exclude={"input": left_out}, exclude_none=True)

    def image_seeds(self) -> list[int]:
        """Each image's seed: the request's, then one more per image (no seed counts as 0)."""
        return [(self.input.seed or 0) + i for i in range(self.input.num_images)]

    @model_validator(mode="after")
    def _image_with_strength(self) -> InferenceRequest:
        if (self.image_b64 is None) != (self.strength is None):
            raise ValueError("image_b64 and strength go together (image-to-image)")
        return self


class InferenceProgress(BaseModel):
    type: Literal["progress"] = "progress"
    step: int
    total: int
    # With previews asked for: the current latents as a small image (WebP, base64).
    preview_b64: str | None = None


class InferenceImage(BaseModel):
    content_type: str
    width: int
    height: int
    seed: int | None
    data_b64: str


class InferenceResult(BaseModel):
    type: Literal["result"] = "result"
    images: list[InferenceImage]
    compute_ms: float
    batch_size: int = 1


class InferenceError(BaseModel):
    type: Literal["error"] = "error"
    code: str
    message: str


InferenceLine = Annotated[
    InferenceProgress | InferenceResult | InferenceError, Field(discriminator="type")
]


class BackendLoad(BaseModel):
    """`GET /load` of an inference server, read by the balancer."""

    queued: int
    running: int
    capacity: int
    queued_seconds: float
    # Task types it runs (the path of `POST /v1/infer/{model}`).
    models: list[str]
    # Registry models (`apps/common/model_registry.py`) it serves, those in memory now, and the
    # LoRA adapters loaded now; empty from a server older than the registry (it serves the
    # default model only, and the balancer treats it as serving anything).
    serves: list[str] = Field(default_factory=list)
    loaded_models: list[str] = Field(default_factory=list)
    loaded_adapters: list[str] = Field(default_factory=list)
    # How long loading one adapter has taken there (an average, seconds): what a miss costs.
    adapter_load_s: float = 0.0
