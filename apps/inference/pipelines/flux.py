"""The FLUX text-to-image engine on diffusers' FluxPipeline."""

from __future__ import annotations

import base64
import io
import time
from typing import Any

import torch
from diffusers import FluxPipeline

from apps.common.contracts import InferenceImage, InferenceRequest, InferenceResult, OutputFormat
from apps.common.logging import get_logger
from apps.inference.engine import GenerationCanceled, StepCallback
from apps.inference.pipelines.tiny import ensure_tiny_flux
from apps.inference.settings import InferenceSettings

log = get_logger(__name__)

TRUE_CFG_SCALE = 4.0
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


class FluxEngine:
    """Loads a FluxPipeline once and runs requests on it, one at a time."""

    models = ["flux"]

    def __init__(
        self,
        pipe: FluxPipeline,
        *,
        device: torch.device,
        max_sequence_length: int,
        step_delay_s: float,
    ) -> None:
        self._pipe = pipe
        self._device = device
        self._max_sequence_length = max_sequence_length
        self._step_delay_s = step_delay_s

    @classmethod
    def load(cls, settings: InferenceSettings) -> FluxEngine:
        device = pick_device(settings.inference_device)
        dtype = pick_dtype(settings.inference_dtype, device)
        tiny = not settings.flux_model
        source = str(ensure_tiny_flux(settings.model_cache_dir)) if tiny else settings.flux_model
        started = time.perf_counter()
        # The tiny model goes through from_pretrained too, so the real loading path always runs.
        pipe = FluxPipeline.from_pretrained(source, dtype=dtype)
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        log.info(
            "pipeline loaded",
            source=source,
            device=str(device),
            dtype=str(dtype),
            seconds=round(time.perf_counter() - started, 2),
        )
        max_len = settings.inference_max_sequence_length or (32 if tiny else 512)
        return cls(
            pipe,
            device=device,
            max_sequence_length=max_len,
            step_delay_s=settings.inference_step_delay_ms / 1000,
        )

    def check_device(self) -> None:
        probe = torch.ones(8, device=self._device)
        if float((probe * 2).sum().item()) != 16.0:
            raise RuntimeError(f"device {self._device} returned a wrong result")

    def generate(self, request: InferenceRequest, on_step: StepCallback) -> InferenceResult:
        spec = request.input
        seed = spec.seed if spec.seed is not None else 0
        seeds = [seed + i for i in range(spec.num_images)]
        # CPU generators make a seed give the same image whatever device runs the model.
        generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
        total = spec.num_inference_steps
        stopped = False

        def step_end(pipe: FluxPipeline, step: int, _t: Any, _kw: dict[str, Any]) -> dict[str, Any]:
            nonlocal stopped
            if self._step_delay_s:
                time.sleep(self._step_delay_s)
            if not on_step(step + 1, total):
                stopped = True
                # diffusers' documented way to stop a run between steps.
                pipe._interrupt = True  # type: ignore[attr-defined]
            return {}

        started = time.perf_counter()
        with torch.inference_mode():
            output = self._pipe(  # type: ignore[operator]
                prompt=spec.prompt,
                negative_prompt=spec.negative_prompt,
                # A negative prompt only works with true CFG, which doubles the compute.
                true_cfg_scale=TRUE_CFG_SCALE if spec.negative_prompt else 1.0,
                width=spec.width,
                height=spec.height,
                num_inference_steps=total,
                guidance_scale=spec.guidance_scale,
                num_images_per_prompt=spec.num_images,
                generator=generators,
                max_sequence_length=self._max_sequence_length,
                callback_on_step_end=step_end,
            )
        if stopped:
            raise GenerationCanceled(request.task_id)
        compute_ms = (time.perf_counter() - started) * 1000
        images = [
            _encode(image, spec.output_format, image_seed)
            for image, image_seed in zip(output.images, seeds, strict=True)
        ]
        return InferenceResult(images=images, compute_ms=round(compute_ms, 2), batch_size=1)


def _encode(image: Any, fmt: OutputFormat, seed: int) -> InferenceImage:
    buffer = io.BytesIO()
    pil_format = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[fmt.value]
    image.convert("RGB").save(buffer, format=pil_format)
    return InferenceImage(
        content_type=fmt.content_type,
        width=image.width,
        height=image.height,
        seed=seed,
        data_b64=base64.b64encode(buffer.getvalue()).decode(),
    )
