"""Settings of the inference server (`FLUXGATE_INFERENCE_*`, `FLUXGATE_FLUX_MODEL`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from apps.common.settings import CommonSettings


class InferenceSettings(CommonSettings):
    inference_host: str = "127.0.0.1"
    inference_port: int = 8200
    # A local directory or a hub id; empty means the tiny offline pipeline built on first start.
    flux_model: str = ""
    model_cache_dir: Path = Path(".data/models")
    inference_device: Literal["auto", "cpu", "cuda"] = "auto"
    inference_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    # None picks 512 for a real FLUX model and 32 for the tiny one.
    inference_max_sequence_length: int | None = Field(default=None, ge=8, le=512)
    # Test and demo knob: slows each diffusion step so progress and cancel can be watched.
    inference_step_delay_ms: int = Field(default=0, ge=0, le=60_000)
