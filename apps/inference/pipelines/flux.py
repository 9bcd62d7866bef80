"""The FLUX text-to-image engine: loads a diffusers FluxPipeline and runs it, as whole batches
(the window batcher) or one step at a time over step groups (the continuous scheduler)."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Hashable
from typing import Any

import torch
from diffusers import FluxPipeline
from diffusers.utils import logging as diffusers_logging
from PIL import Image
from prometheus_client import Gauge

from apps.common import images
from apps.common.service.logging import get_logger
from apps.common.wire.contracts import (
    FluxInput,
    InferenceError,
    InferenceImage,
    InferenceRequest,
    InferenceResult,
    OutputFormat,
)
from apps.inference.engine import BatchItem, ItemOutcome
from apps.inference.pipelines.flux_denoise import Rows, Shape, denoise_batch
from apps.inference.pipelines.flux_rows import GroupShape, Schedules, encode_requests
from apps.inference.pipelines.flux_steps import FluxStepGroup
from apps.inference.pipelines.preview import LatentPreviewer
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


def _oom_types() -> tuple[type[BaseException], ...]:
    return (torch.cuda.OutOfMemoryError,) if hasattr(torch.cuda, "OutOfMemoryError") else ()


GPU_MEMORY = Gauge(
    "fluxgate_inference_gpu_memory_bytes",
    "GPU memory held by this server's torch allocator (CUDA only)",
    ["kind"],
)


def _watch_gpu_memory(device: torch.device) -> None:
    """Read at scrape time: allocated (live tensors), reserved (cached), peak since start."""
    GPU_MEMORY.labels("allocated").set_function(lambda: torch.cuda.memory_allocated(device))
    GPU_MEMORY.labels("reserved").set_function(lambda: torch.cuda.memory_reserved(device))
    GPU_MEMORY.labels("peak").set_function(lambda: torch.cuda.max_memory_allocated(device))


class FluxEngine:
    """FLUX on one device. Whole batches share size, steps, guidance and true CFG; step groups
    share size and true CFG only."""

    # `style_transfer` is FLUX image-to-image on the same weights and batcher.
    models = ["flux", "style_transfer"]

    def __init__(
        self,
        pipe: FluxPipeline,
        *,
        device: torch.device,
        max_sequence_length: int,
        step_delay_s: float,
        test_oom_above_rows: int | None = None,
        previewer: LatentPreviewer | None = None,
    ) -> None:
        self._pipe = pipe
        self._previewer = previewer
        self._schedules: dict[tuple[int, int], Schedules] = {}
        self._test_oom_above_rows = test_oom_above_rows
        self._device = device
        self._max_sequence_length = max_sequence_length
        self._step_delay_s = step_delay_s
        if device.type == "cuda":
            _watch_gpu_memory(device)

    @classmethod
    def load(cls, settings: InferenceSettings) -> FluxEngine:
        device = pick_device(settings.inference_device)
        dtype = pick_dtype(settings.inference_dtype, device)
        tiny = not settings.flux_model
        source = str(ensure_tiny_flux(settings.model_cache_dir)) if tiny else settings.flux_model
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
            source=source,
            device=str(device),
            dtype=str(dtype),
            seconds=round(time.perf_counter() - started, 2),
        )
        max_len = settings.inference_max_sequence_length or (32 if tiny else 512)
        started = time.perf_counter()
        previewer = LatentPreviewer.fit(pipe, device)
        log.info("preview projection fitted", seconds=round(time.perf_counter() - started, 2))
        return cls(
            pipe,
            device=device,
            max_sequence_length=max_len,
            step_delay_s=settings.inference_step_delay_ms / 1000,
            test_oom_above_rows=settings.inference_test_oom_above_rows,
            previewer=previewer,
        )

    def batch_key(self, request: InferenceRequest) -> Hashable:
        spec = request.input
        return (
            spec.width,
            spec.height,
            spec.num_inference_steps,
            spec.guidance_scale,
            spec.negative_prompt is not None,
            request.strength,
        )

    def cost(self, request: InferenceRequest) -> int:
        return request.input.num_images

    def shape_key(self, request: InferenceRequest) -> Hashable:
        # Steps, guidance, strength and seed are per row; image-to-image rows differ from
        # text-to-image ones only in where they start, so they share calls too.
        spec = request.input
        return (spec.width, spec.height, spec.negative_prompt is not None)

    def encode_prompts(self, requests: list[InferenceRequest]) -> list[object]:
        with torch.inference_mode():
            encoded = encode_requests(self._pipe, requests, self._max_sequence_length, self._device)
        return list(encoded)

    def open_group(self, request: InferenceRequest) -> FluxStepGroup:
        spec = request.input
        size = (spec.width, spec.height)
        if size not in self._schedules:
            self._schedules[size] = Schedules.for_size(self._pipe, self._device, *size)
        shape = GroupShape(
            width=spec.width,
            height=spec.height,
            true_cfg=spec.negative_prompt is not None,
            max_sequence_length=self._max_sequence_length,
        )
        return FluxStepGroup(
            self._pipe,
            shape,
            device=self._device,
            schedules=self._schedules[size],
            previewer=self._previewer,
            make_result=_result,
            init_image=_decode_init_image,
            step_delay_s=self._step_delay_s,
            test_oom_above_rows=self._test_oom_above_rows,
        )

    def is_out_of_memory(self, exc: BaseException) -> bool:
        return isinstance(exc, _oom_types())

    def check_device(self) -> None:
        probe = torch.ones(8, device=self._device)
        if float((probe * 2).sum().item()) != 16.0:
            raise RuntimeError(f"device {self._device} returned a wrong result")

    def warm_up(self) -> None:
        spec = FluxInput(prompt="warm-up", width=64, height=64, num_inference_steps=1, seed=0)
        started = time.perf_counter()
        request = InferenceRequest(task_id="warm-up", input=spec)
        self._run([BatchItem(request, _keep_going)])
        # The step path too, with a preview: its first use builds a schedule and the encoder.
        group = self.open_group(request)
        group.admit([BatchItem(request, _keep_going, preview_due=lambda _s, _t: True)])
        while group.rows:
            for retired in group.step():
                retired.finish()
        log.info("warm-up done", seconds=round(time.perf_counter() - started, 2))

    def run_batch(self, items: list[BatchItem]) -> list[ItemOutcome]:
        """Run the batch; if it does not fit in GPU memory, run each half instead."""
        try:
            return self._run(items)
        except _oom_types() as exc:
            torch.cuda.empty_cache()
            if len(items) == 1:
                log.warning("out of memory on a single request", task_id=items[0].request.task_id)
                return [InferenceError(code="out_of_memory", message=str(exc)[:300])]
            half = len(items) // 2
            log.warning("out of memory; splitting the batch", size=len(items))
            return self.run_batch(items[:half]) + self.run_batch(items[half:])

    def _run(self, items: list[BatchItem]) -> list[ItemOutcome]:
        first = items[0].request.input
        shape = Shape(
            width=first.width,
            height=first.height,
            steps=first.num_inference_steps,
            guidance_scale=first.guidance_scale,
            true_cfg=first.negative_prompt is not None,
            max_sequence_length=self._max_sequence_length,
            strength=items[0].request.strength,
        )
        rows = [
            Rows(
                prompt=item.request.input.prompt,
                negative_prompt=item.request.input.negative_prompt,
                seeds=[
                    (item.request.input.seed or 0) + i for i in range(item.request.input.num_images)
                ],
                on_step=item.on_step,
                init_image=_decode_init_image(item.request, first.width, first.height),
            )
            for item in items
        ]
        batch_rows = sum(len(r.seeds) for r in rows)
        if self._test_oom_above_rows is not None and batch_rows > self._test_oom_above_rows:
            # FLUXGATE_INFERENCE_TEST_OOM_ABOVE_ROWS: what a GPU raises when a batch does not fit.
            raise torch.cuda.OutOfMemoryError(f"test: {batch_rows} rows do not fit")
        started = time.perf_counter()
        with torch.inference_mode():
            denoise_batch(
                self._pipe, shape, rows, device=self._device, step_delay_s=self._step_delay_s
            )
        compute_ms = round((time.perf_counter() - started) * 1000, 2)
        outcomes: list[ItemOutcome] = []
        for item, request_rows in zip(items, rows, strict=True):
            if not request_rows.active:
                outcomes.append(None)
                continue
            fmt = item.request.input.output_format
            images = [
                _encode(image, fmt, seed)
                for image, seed in zip(request_rows.images, request_rows.seeds, strict=True)
            ]
            outcomes.append(
                InferenceResult(images=images, compute_ms=compute_ms, batch_size=batch_rows)
            )
        return outcomes


def _keep_going(_step: int, _total: int, _preview: str | None = None) -> bool:
    return True


def _result(
    item: BatchItem, pictures: list[Any], seeds: list[int], compute_s: float, batch_size: int
) -> InferenceResult:
    """A finished request's answer: its images encoded in its format."""
    fmt = item.request.input.output_format
    return InferenceResult(
        images=[_encode(image, fmt, seed) for image, seed in zip(pictures, seeds, strict=True)],
        compute_ms=round(compute_s * 1000, 2),
        batch_size=batch_size,
    )


def _decode_init_image(request: InferenceRequest, width: int, height: int) -> Any:
    """The image-to-image start picture, at the batch's size; None for text-to-image."""
    if request.image_b64 is None:
        return None
    image = Image.open(io.BytesIO(base64.b64decode(request.image_b64))).convert("RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    return image


def _encode(image: Any, fmt: OutputFormat, seed: int) -> InferenceImage:
    data, content_type = images.encode(image.convert("RGB"), fmt)
    return InferenceImage(
        content_type=content_type,
        width=image.width,
        height=image.height,
        seed=seed,
        data_b64=base64.b64encode(data).decode(),
    )
