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
from prometheus_client import make_asgi_app

from apps.common.contracts import BackendLoad, InferenceRequest
from apps.common.errors import NotFound, Unavailable
from apps.common.http import install_error_handlers
from apps.common.logging import get_logger
from apps.common.settings import get_settings
from apps.inference.scheduler import InferenceScheduler
from apps.inference.settings import InferenceSettings

log = get_logger(__name__)


async def _load_engine(app: FastAPI, settings: InferenceSettings) -> None:
    from apps.inference.pipelines.flux import FluxEngine

    try:
        engine = await asyncio.to_thread(FluxEngine.load, settings)
    except Exception as exc:
        log.exception("pipeline failed to load")
        app.state.load_error = f"{type(exc).__name__}: {exc}"
        return
    app.state.scheduler = InferenceScheduler(engine)


def create_app(settings: InferenceSettings | None = None) -> FastAPI:
    settings = settings or get_settings(InferenceSettings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.scheduler = None
        app.state.load_error = None
        # Loading takes seconds to minutes: serve /healthz meanwhile, /readyz says when it is done.
        loader = asyncio.create_task(_load_engine(app, settings))
        yield
        loader.cancel()
        if app.state.scheduler is not None:
            app.state.scheduler.shutdown()

    app = FastAPI(title="Fluxgate inference", lifespan=lifespan)
    install_error_handlers(app)
    app.mount("/metrics", make_asgi_app())

    def scheduler_of(request: Request) -> InferenceScheduler:
        scheduler: InferenceScheduler | None = request.app.state.scheduler
        if scheduler is None:
            reason = request.app.state.load_error or "the pipeline is still loading"
            raise Unavailable(reason)
        return scheduler

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> dict[str, object]:
        scheduler = scheduler_of(request)
        try:
            await asyncio.to_thread(scheduler.check_device)
        except Exception as exc:
            raise Unavailable(f"device check failed: {exc}") from exc
        return {"status": "ready", "models": scheduler.models}

    @app.get("/load")
    async def load(request: Request) -> BackendLoad:
        scheduler: InferenceScheduler | None = request.app.state.scheduler
        if scheduler is None:
            return BackendLoad(queued=0, running=0, capacity=0, queued_seconds=0, models=[])
        return scheduler.load()

    @app.post("/v1/infer/{model}")
    async def infer(model: str, body: InferenceRequest, request: Request) -> StreamingResponse:
        scheduler = scheduler_of(request)
        if model not in scheduler.models:
            raise NotFound(f"model '{model}' is not served here", field="model")

        async def lines() -> AsyncIterator[bytes]:
            async for event in scheduler.run(body):
                yield event.model_dump_json().encode() + b"\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    return app
