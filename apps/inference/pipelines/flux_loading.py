"""How a FLUX pipeline gets onto a device: which device and dtype, loading one registry model's
weights (offload, compile), and the GPU memory gauges."""

from __future__ import annotations

import time

import torch
from diffusers import FluxPipeline
from diffusers.utils import logging as diffusers_logging
from prometheus_client import Gauge

from apps.common.model_registry import ModelSpec
from apps.common.service.logging import get_logger
from apps.inference.pipelines.tiny import ensure_tiny_flux
from apps.inference.settings import InferenceSettings

log = get_logger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def pick_dtype(setting: str, device: torch.device) -> torch.dtype:
    if setting != "auto":
        return _DTYPES[setting]
    # bf16 is FLUX's native precision on GPUs; CPUs run float32 (bf16 matmuls are slow there).
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def oom_types() -> tuple[type[BaseException], ...]:
    return (torch.cuda.OutOfMemoryError,) if hasattr(torch.cuda, "OutOfMemoryError") else ()


GPU_MEMORY = Gauge(
    "fluxgate_inference_gpu_memory_bytes",
    "GPU memory held by this server's torch allocator (CUDA only)",
    ["kind"],
)


def watch_gpu_memory(device: torch.device) -> None:
    """Read at scrape time: allocated (live tensors), reserved (cached), peak since start."""
    GPU_MEMORY.labels("allocated").set_function(lambda: torch.cuda.memory_allocated(device))
    GPU_MEMORY.labels("reserved").set_function(lambda: torch.cuda.memory_reserved(device))
    GPU_MEMORY.labels("peak").set_function(lambda: torch.cuda.max_memory_allocated(device))


def load_pipe(
    spec: ModelSpec, *, settings: InferenceSettings, device: torch.device, dtype: torch.dtype
) -> FluxPipeline:
    """One registry model's pipeline on the device (its source empty: the tiny offline one)."""
    source = spec.source or str(ensure_tiny_flux(settings.model_cache_dir))
    started = time.perf_counter()
    diffusers_logging.disable_progress_bar()  # keep the shared log stream readable
    # The tiny model goes through from_pretrained too, so the real loading path always runs.
    pipe = FluxPipeline.from_pretrained(source, dtype=dtype)
    if settings.inference_cpu_offload and device.type == "cuda":
        # Keeps only the running component on the GPU: fits FLUX on 24 GB cards, slower.
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if settings.inference_compile and device.type == "cuda":
        pipe.transformer = torch.compile(pipe.transformer, mode="max-autotune-no-cudagraphs")
    pipe.set_progress_bar_config(disable=True)
    log.info(
        "pipeline loaded",
        model=spec.id,
        source=source,
        device=str(device),
        dtype=str(dtype),
        seconds=round(time.perf_counter() - started, 2),
    )
    return pipe
