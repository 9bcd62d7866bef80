"""HTTP face of the inference server: `POST /v1/infer/{model}` streams progress and images."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

# The default model is built locally; a hub download only happens when the user opts in.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Progress bars and advice about optional packages would flood the shared log stream.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from prometheus_client import Gauge

from apps.common.service.app import create_service_app
from apps.common.service.errors import NotFound, Unavailable
from apps.common.service.logging import get_logger
from apps.common.service.settings import get_settings
from apps.common.wire.inference import BackendLoad, InferenceProgress, InferenceRequest
from apps.inference.batcher import Batcher
from apps.inference.scheduler import StepScheduler
from apps.inference.settings import InferenceSettings
from apps.inference.waiting import Scheduler

log = get_logger(__name__)


def default_batch_size(device_type: str) -> int:
    # An 80 GB GPU holds 16 FLUX images at 1024 px in bf16; a CPU gains little past 4.
    return 16 if device_type == "cuda" else 4


async def _load_engine(app: FastAPI, settings: InferenceSettings) -> None:
    from apps.inference.pipelines.flux import FluxEngine
    from apps.inference.pipelines.flux_loading import pick_device

    try:
        if settings.inference_load_delay_s:
            await asyncio.sleep(settings.inference_load_delay_s)
        engine = await asyncio.to_thread(FluxEngine.load, settings)
        if settings.inference_warmup:
            await asyncio.to_thread(engine.warm_up)
    except Exception as exc:
        log.exception("pipeline failed to load")
        app.state.load_error = f"{type(exc).__name__}: {exc}"
        return
    max_batch = settings.inference_max_batch_size or default_batch_size(
        pick_device(settings.inference_device).type
    )
    batcher: Scheduler
    if settings.inference_scheduler == "continuous":
        batcher = StepScheduler(
            engine,
            max_batch_size=max_batch,
            preview_interval_s=settings.inference_preview_interval_ms / 1000,
        )
    else:
        batcher = Batcher(
            engine,
            max_batch_size=max_batch,
            max_wait_s=settings.inference_max_wait_ms / 1000,
            gap_s=settings.inference_batch_gap_ms / 1000,
        )
    batcher.start()
    app.state.batcher = batcher
    LOAD.labels("queued").set_function(lambda: batcher.load().queued)
    LOAD.labels("running").set_function(lambda: batcher.load().running)
    LOAD.labels("capacity").set_function(lambda: batcher.load().capacity)
    log.info("ready", scheduler=settings.inference_scheduler, max_batch_size=max_batch)


LOAD = Gauge(
    "fluxgate_inference_load",
    "Images waiting to start (queued), running, and the images one model call takes (capacity)",
    ["kind"],
)


def create_app(settings: InferenceSettings | None = None) -> FastAPI:
    settings = settings or get_settings(InferenceSettings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.batcher = None
        app.state.load_error = None
        # Loading and warm-up take seconds to minutes: /healthz answers meanwhile, /readyz only
        # once both are done.
        loader = asyncio.create_task(_load_engine(app, settings))
        yield
        loader.cancel()
        if app.state.batcher is not None:
            await app.state.batcher.stop()

    def batcher_of(request: Request) -> Scheduler:
        batcher: Scheduler | None = request.app.state.batcher
        if batcher is None:
            reason = request.app.state.load_error or "the pipeline is still loading"
            raise Unavailable(reason)
        return batcher

    async def ready(request: Request) -> dict[str, object]:
        batcher = batcher_of(request)
        try:
            await asyncio.to_thread(batcher.check_device)
        except Exception as exc:
            raise Unavailable(f"device check failed: {exc}") from exc
        return {"status": "ready", "models": batcher.models}

    app = create_service_app("inference", settings, lifespan=lifespan, ready=ready)

    @app.get("/load")
    async def load(request: Request) -> BackendLoad:
        batcher: Scheduler | None = request.app.state.batcher
        if batcher is None:
            return BackendLoad(queued=0, running=0, capacity=0, queued_seconds=0, models=[])
        return batcher.load()

    @app.post("/v1/infer/{model}")
    async def infer(model: str, body: InferenceRequest, request: Request) -> StreamingResponse:
        batcher = batcher_of(request)
        if model not in batcher.models:
            raise NotFound(f"model '{model}' is not served here", field="model")
        total = body.input.num_inference_steps
        accepted = InferenceProgress(step=0, total=total).model_dump_json().encode() + b"\n"

        async def lines() -> AsyncIterator[bytes]:
            # Taken: say so at once (step 0), before the request may wait here for a batch. The
            # job counts as started from here, and the balancer forwards this first line only
            # once this server took the request (it fails over before that).
            yield accepted
            async for event in batcher.run(body):
                yield event.model_dump_json().encode() + b"\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    return app
