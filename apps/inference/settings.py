"""Settings of the inference server (`FLUXGATE_INFERENCE_*`, `FLUXGATE_FLUX_MODEL`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from apps.common.service.settings import CommaList, CommonSettings


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
    # Test and demo knob: sleeps this long before loading the pipeline, as a real FLUX checkpoint
    # takes 30-120 s to load, so a cold start (and a restart in the middle of one) can be watched.
    inference_load_delay_s: float = Field(default=0.0, ge=0, le=600)
    # Test knob, never for production: a batch of more than this many image rows raises torch's
    # CUDA OutOfMemoryError before it runs, so the split-in-halves path and the `out_of_memory`
    # error run on a CPU. None (the default) never fakes one.
    inference_test_oom_above_rows: int | None = Field(default=None, ge=1)
    # `continuous`: requests join and leave a running batch between denoising steps, shapes take
    # turns step by step. `window`: compatible requests arriving within max_wait_ms run all their
    # steps as one batch, and later ones wait for it (the scheduler before continuous batching).
    inference_scheduler: Literal["continuous", "window"] = "continuous"
    # Images per model call (continuous: per step of one shape; window: per batch). None picks 16
    # on a GPU (80 GB fits FLUX at 1024 px) and 4 on CPU.
    inference_max_batch_size: int | None = Field(default=None, ge=1, le=64)
    # Window only: how long a batch waits for company...
    inference_max_wait_ms: float = Field(default=40.0, ge=0, le=5000)
    # ...but the window closes once no request arrived for this long (a lone request waits this).
    inference_batch_gap_ms: float = Field(default=8.0, ge=0, le=5000)
    # Live previews (continuous only): those of one request at least this far apart.
    inference_preview_interval_ms: float = Field(default=250.0, ge=0, le=60_000)
    # GPU only: keep idle components in CPU memory; compile the transformer (slow first batch).
    inference_cpu_offload: bool = False
    inference_compile: bool = False
    # Registry models (FLUXGATE_MODELS) this server serves; empty: all of them. At most
    # `inference_max_models` sit in memory at once (least recently used out, loaded on demand),
    # each with at most `inference_max_adapters` LoRA adapters loaded (likewise).
    inference_models: CommaList = []
    inference_max_models: int = Field(default=1, ge=1, le=16)
    inference_max_adapters: int = Field(default=8, ge=1, le=256)
    # Run one small generation before /readyz says ready.
    inference_warmup: bool = True
