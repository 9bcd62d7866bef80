"""The FLUX text-to-image engine: loads a diffusers FluxPipeline and runs it, as whole batches
(the window batcher) or one step at a time over step groups (the continuous scheduler)."""

from __future__ import annotations

import base64
import functools
import io
import time
from collections.abc import Hashable
from typing import Any

import torch
from diffusers import FluxPipeline
from PIL import Image

from apps.common import images
from apps.common.model_registry import model_registry
from apps.common.service.logging import get_logger
from apps.common.wire.contracts import FluxInput, OutputFormat
from apps.common.wire.inference import (
    InferenceError,
    InferenceImage,
    InferenceRequest,
    InferenceResult,
)
from apps.common.wire.model_choice import LoraChoice, adapter_key
from apps.inference.engine import BatchItem, ItemOutcome, RequestRefused
from apps.inference.pipelines.flux_denoise import Rows, Shape, denoise_batch
from apps.inference.pipelines.flux_loading import (
    load_pipe,
    oom_types,
    pick_device,
    pick_dtype,
    watch_gpu_memory,
)
from apps.inference.pipelines.flux_models import AdapterKey, LoadedModel, ModelShelf
from apps.inference.pipelines.flux_rows import GroupShape, Schedules, encode_requests
from apps.inference.pipelines.flux_steps import FluxStepGroup
from apps.inference.pipelines.preview import LatentPreviewer
from apps.inference.settings import InferenceSettings

log = get_logger(__name__)


class FluxEngine:
    """FLUX on one device, over the registry models it holds (`ModelShelf`). Whole batches share
    model, adapters, size, steps, guidance and true CFG; step groups share model, adapters, size
    and true CFG only."""

    # `style_transfer` is FLUX image-to-image on the same weights and batcher.
    models = ["flux", "style_transfer"]

    def __init__(
        self,
        shelf: ModelShelf,
        *,
        device: torch.device,
        max_sequence_length: int | None,
        step_delay_s: float,
        test_oom_above_rows: int | None = None,
        previews: bool = True,
    ) -> None:
        self._shelf = shelf
        self._previews = previews
        self._test_oom_above_rows = test_oom_above_rows
        self._device = device
        # None: 32 for the tiny model, 512 for a real one.
        self._max_sequence_length = max_sequence_length
        self._step_delay_s = step_delay_s
        if device.type == "cuda":
            watch_gpu_memory(device)

    @classmethod
    def load(cls, settings: InferenceSettings) -> FluxEngine:
        """The engine with its first served model loaded (the default when it serves that)."""
        device = pick_device(settings.inference_device)
        dtype = pick_dtype(settings.inference_dtype, device)
        registry = settings.model_registry(default_source=settings.flux_model)
        served = settings.inference_models or list(registry.models)
        unknown = [m for m in served if m not in registry.models]
        if unknown:
            raise ValueError(f"FLUXGATE_INFERENCE_MODELS names {unknown}, not in FLUXGATE_MODELS")
        shelf = ModelShelf(
            registry,
            served,
            functools.partial(load_pipe, settings=settings, device=device, dtype=dtype),
            max_models=settings.inference_max_models,
            max_adapters=settings.inference_max_adapters,
        )
        engine = cls(
            shelf,
            device=device,
            max_sequence_length=settings.inference_max_sequence_length,
            step_delay_s=settings.inference_step_delay_ms / 1000,
            test_oom_above_rows=settings.inference_test_oom_above_rows,
        )
        first = registry.default if registry.default in served else served[0]
        engine._loaded(first)
        return engine

    @classmethod
    def of_pipe(
        cls, pipe: FluxPipeline, *, device: torch.device, max_sequence_length: int
    ) -> FluxEngine:
        """An engine serving one pipeline already built, as the default model, without
        previews (tests that change the weights)."""
        registry = model_registry()
        shelf = ModelShelf(
            registry, [registry.default], lambda _spec: pipe, max_models=1, max_adapters=8
        )
        return cls(
            shelf,
            device=device,
            max_sequence_length=max_sequence_length,
            step_delay_s=0,
            previews=False,
        )

    # --- models and adapters --------------------------------------------------------------------

    def _loaded(self, model_id: str | None, loras: list[LoraChoice] | None = None) -> LoadedModel:
        """The model (and adapters) a request runs on, loaded; `RequestRefused` if it cannot be."""
        loaded = self._shelf.prepare(model_id, loras or [])
        if "schedules" not in loaded.extras:
            # Once per model: its own projection for previews and its schedules per size.
            started = time.perf_counter()
            loaded.extras["schedules"] = {}
            loaded.extras["previewer"] = (
                LatentPreviewer.fit(loaded.pipe, self._device) if self._previews else None
            )
            log.info("preview projection fitted", seconds=round(time.perf_counter() - started, 2))
        return loaded

    def _max_len(self, loaded: LoadedModel) -> int:
        return self._max_sequence_length or (512 if loaded.spec.source else 32)

    @property
    def _pipe(self) -> Any:
        """The default model's pipeline."""
        return self._loaded(None).pipe

    def holdings(self) -> dict[str, Any]:
        """What `/load` says of models and adapters: served, in memory, adapters loaded."""
        return {
            "serves": list(self._shelf.served),
            "loaded_models": self._shelf.loaded_models(),
            "loaded_adapters": self._shelf.loaded_adapters(),
            "adapter_load_s": round(self._shelf.adapter_load_s, 4),
        }

    def _model_id(self, request: InferenceRequest) -> str:
        return request.input.model or self._shelf.registry.default

    def batch_key(self, request: InferenceRequest) -> Hashable:
        spec = request.input
        return (
            spec.width,
            spec.height,
            spec.num_inference_steps,
            spec.guidance_scale,
            spec.negative_prompt is not None,
            request.strength,
            self._model_id(request),
            adapter_key(spec.loras),
        )

    def cost(self, request: InferenceRequest) -> int:
        return request.input.num_images

    def shape_key(self, request: InferenceRequest) -> Hashable:
        # Steps, guidance, strength and seed are per row; image-to-image rows differ from
        # text-to-image ones only in where they start, so they share calls too. The model and
        # its adapter set (with their scales) are the weights of the call: shared, never per row.
        spec = request.input
        return (
            spec.width,
            spec.height,
            spec.negative_prompt is not None,
            self._model_id(request),
            adapter_key(spec.loras),
        )

    def encode_prompts(self, requests: list[InferenceRequest]) -> list[object]:
        """Per model and adapter set, one encoder call; requests of a model not in memory are
        left for their group to encode (None), so waiting never loads a model."""
        out: list[object] = [None] * len(requests)
        runs: dict[tuple[str, AdapterKey], list[int]] = {}
        loaded_now = set(self._shelf.loaded_models())
        for index, request in enumerate(requests):
            if self._model_id(request) in loaded_now:
                key = (self._model_id(request), adapter_key(request.input.loras))
                runs.setdefault(key, []).append(index)
        for (model_id, adapters), indices in runs.items():
            try:
                loaded = self._loaded(model_id, requests[indices[0]].input.loras)
            except RequestRefused:
                continue  # its group says why
            self._shelf.activate(loaded, adapters)
            with torch.inference_mode():
                encoded = encode_requests(
                    loaded.pipe, [requests[i] for i in indices], self._max_len(loaded), self._device
                )
            for i, prompt in zip(indices, encoded, strict=True):
                out[i] = prompt
        return out

    def open_group(self, request: InferenceRequest) -> FluxStepGroup:
        """An empty group on the request's model and adapters, loading them first (raises
        `RequestRefused` for a model not served here or an adapter missing or corrupt)."""
        spec = request.input
        loaded = self._loaded(spec.model, spec.loras)
        size = (spec.width, spec.height)
        schedules = loaded.extras["schedules"]
        if size not in schedules:
            schedules[size] = Schedules.for_size(loaded.pipe, self._device, *size)
        shape = GroupShape(
            width=spec.width,
            height=spec.height,
            true_cfg=spec.negative_prompt is not None,
            max_sequence_length=self._max_len(loaded),
        )
        return FluxStepGroup(
            loaded.pipe,
            shape,
            device=self._device,
            schedules=schedules[size],
            previewer=loaded.extras["previewer"],
            make_result=_result,
            init_image=_decode_init_image,
            step_delay_s=self._step_delay_s,
            test_oom_above_rows=self._test_oom_above_rows,
            binding=self._shelf.bind(loaded, adapter_key(spec.loras)),
        )

    def is_out_of_memory(self, exc: BaseException) -> bool:
        return isinstance(exc, oom_types())

    def check_device(self) -> None:
        probe = torch.ones(8, device=self._device)
        if float((probe * 2).sum().item()) != 16.0:
            raise RuntimeError(f"device {self._device} returned a wrong result")

    def warm_up(self) -> None:
        """One small generation on the first model this server serves (the default when it
        serves that one)."""
        served, default = self._shelf.served, self._shelf.registry.default
        model = None if default in served else served[0]
        spec = FluxInput(
            prompt="warm-up", width=64, height=64, num_inference_steps=1, seed=0, model=model
        )
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
        except RequestRefused as refused:  # its model or adapters: the batch shares them
            return [refused.error() for _ in items]
        except oom_types() as exc:
            torch.cuda.empty_cache()
            if len(items) == 1:
                log.warning("out of memory on a single request", task_id=items[0].request.task_id)
                return [InferenceError(code="out_of_memory", message=str(exc)[:300])]
            half = len(items) // 2
            log.warning("out of memory; splitting the batch", size=len(items))
            return self.run_batch(items[:half]) + self.run_batch(items[half:])

    def _run(self, items: list[BatchItem]) -> list[ItemOutcome]:
        first = items[0].request.input
        loaded = self._loaded(first.model, first.loras)
        self._shelf.activate(loaded, adapter_key(first.loras))
        shape = Shape(
            width=first.width,
            height=first.height,
            steps=first.num_inference_steps,
            guidance_scale=first.guidance_scale,
            true_cfg=first.negative_prompt is not None,
            max_sequence_length=self._max_len(loaded),
            strength=items[0].request.strength,
        )
        rows = [
            Rows(
                prompt=item.request.input.prompt,
                negative_prompt=item.request.input.negative_prompt,
                seeds=item.request.image_seeds(),
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
                loaded.pipe, shape, rows, device=self._device, step_delay_s=self._step_delay_s
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
