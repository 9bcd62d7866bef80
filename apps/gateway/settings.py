"""Settings of the gateway (`FLUXGATE_GATEWAY_*`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from apps.common.service.settings import CommaList, CommonSettings
from apps.gateway.headers import MAX_PREFER_WAIT_S


class GatewaySettings(CommonSettings):
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    # Bodies above this are refused with 413 before they are read.
    gateway_max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # `POST /tasks` bodies, which carry images: two 20 MB images in base64 fit.
    gateway_max_upload_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    # For `Prefer: wait=N`: the notifier's long-poll wait, shared with the nginx sync facade.
    notifier_url: str = "http://127.0.0.1:8300"
    # Browser origins allowed to call the API (comma-separated); empty means CORS off.
    cors_origins: CommaList = []
    # Uploaded images decoded at once (each holds its whole bitmap while it is checked).
    gateway_decode_concurrency: int = Field(default=2, ge=1)
    # How often outputs older than the job TTL are removed from the output store.
    gateway_output_sweep_interval_s: float = Field(default=3600, gt=0)
    # With auth on, API keys already read are kept while Redis tracks their records (a change
    # by anyone empties the cache at once: apps/common/security/key_cache.py), for at most this
    # many seconds each; 0 reads the key from Redis on every request.
    gateway_key_cache_s: float = Field(default=60.0, ge=0)
    # Durability of an acknowledged submit (docs/durability.md): with N > 0 the gateway answers
    # 202 only once N Redis replicas have the job (`WAIT`), else 503 naming the task; a retry
    # with the same Idempotency-Key answers that task.
    redis_wait_replicas: int = Field(default=0, ge=0)
    redis_wait_timeout_ms: int = Field(default=500, ge=1)
    # The most one job may cost, in megapixel-steps (`TaskType.cost`); a costlier submit is
    # refused with 422 `too_expensive`. 128 lets a 1024x1024, 28-step, 4-image FLUX job (117.4)
    # through.
    max_job_cost: float = Field(default=128.0, gt=0)
    # Drop-in routes of the APIs users come from: backserv, backendai, imagetext, wavespeed, all
    # (docs/migrating.md). Off by default.
    compat: CommaList = []
    # The task type the image-and-text service's `POST /api/process` runs.
    compat_imagetext_type: Literal["style_transfer", "stylize", "face_detect", "upscale"] = (
        "style_transfer"
    )
    # The OpenAI Images API under /v1 (docs/openai.md): on unless turned off.
    openai_api: bool = True
    # Aliases of the registry's default model under the OpenAI API: `GET /v1/models` lists them
    # after the registry's models, and `model` may name either. Add `dall-e-3` or `gpt-image-1`
    # for clients that cannot choose another.
    openai_models: CommaList = ["flux"]
    # How long a /v1/images request waits for its images before answering 504 with the job's id
    # (the job keeps running); at most the cap of `Prefer: wait`, under the front door's timeout.
    openai_wait_s: int = Field(default=MAX_PREFER_WAIT_S, ge=1, le=MAX_PREFER_WAIT_S)
    # Denoising steps of a /v1/images job (OpenAI has no such parameter): None keeps the task
    # type's default (28, for FLUX.1-dev); 4 suits FLUX.1-schnell.
    openai_steps: int | None = Field(default=None, ge=1, le=100)

    @field_validator("openai_models")
    @classmethod
    def _some_model(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one model id")
        return value

    @field_validator("compat")
    @classmethod
    def _known_surfaces(cls, value: list[str]) -> list[str]:
        known = {"backserv", "backendai", "imagetext", "wavespeed", "all"}
        unknown = [name for name in value if name.lower() not in known]
        if unknown:
            raise ValueError(f"unknown compat surface {unknown[0]!r}; one of {sorted(known)}")
        return value
