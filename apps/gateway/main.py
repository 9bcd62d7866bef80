"""The gateway app factory: wiring, middleware and error mapping."""

from __future__ import annotations

import asyncio
import mimetypes
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware

from apps.common.jobs.announce import Announcer
from apps.common.jobs.store import JobStore
from apps.common.redis.client import async_redis
from apps.common.security.apikeys import KeyStore
from apps.common.security.key_cache import KeyCache
from apps.common.service.app import create_service_app, redis_ready
from apps.common.service.errors import NotFound
from apps.common.service.logging import get_logger
from apps.common.service.settings import get_settings
from apps.common.service.tracing import instrument_celery
from apps.common.storage import make_output_store
from apps.common.storage.names import INPUTS_PREFIX, OutputStore
from apps.common.wire.queues import make_producer
from apps.gateway import compat
from apps.gateway.body_limit import BodyLimitMiddleware, SecurityHeadersMiddleware
from apps.gateway.compat.openai.errors import OpenAIErrorMiddleware
from apps.gateway.deps import GatewayState, gateway_state
from apps.gateway.enqueue import JobQueue
from apps.gateway.event_relay import EventRelay
from apps.gateway.routes import admin, demo, flux, models, submit_task, tasks, usage
from apps.gateway.service import TaskService
from apps.gateway.settings import GatewaySettings
from apps.gateway.waiter import ResultWaiter

log = get_logger(__name__)


class OutputFiles(StaticFiles):
    """The output directory, less `inputs/`: uploaded inputs stay private (only the worker
    reads them, from the store), however the path is spelled (`//inputs`, `./inputs`)."""

    def lookup_path(self, path: str) -> tuple[str, os.stat_result | None]:
        if path.replace("\\", "/").split("/", 1)[0] == INPUTS_PREFIX:
            return "", None
        return super().lookup_path(path)


async def sweep_outputs(outputs: OutputStore, settings: GatewaySettings) -> None:
    """Remove outputs and inputs once their job records have expired (an hour of slack), and
    ask an S3 bucket to expire them itself where we may set its lifecycle."""
    set_lifecycle = getattr(outputs, "set_lifecycle", None)
    if set_lifecycle is not None:
        try:
            await run_in_threadpool(set_lifecycle)
        except Exception as exc:  # no permission is common: the sweep still runs
            log.warning("could not set the bucket's lifecycle rule", error=repr(exc))
    while True:
        try:
            removed = await run_in_threadpool(outputs.sweep, settings.job_ttl_s + 3600)
            if removed:
                log.info("expired outputs removed", files=removed)
        except Exception as exc:
            log.warning("output sweep failed", error=repr(exc))
        await asyncio.sleep(settings.gateway_output_sweep_interval_s)


async def _ready(request: Request) -> dict[str, str]:
    return await redis_ready(gateway_state(request).redis)


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or get_settings(GatewaySettings)
    outputs = make_output_store(settings)
    local_outputs = None if settings.output_dir.startswith("s3://") else Path(settings.output_dir)
    if local_outputs is not None:
        local_outputs.mkdir(parents=True, exist_ok=True)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = async_redis(settings.redis_url, socket_timeout_s=5)
        producer = make_producer(
            settings.redis_url, visibility_timeout_s=settings.broker_visibility_timeout_s
        )
        store = JobStore(client, ttl_s=settings.job_ttl_s)
        announcer = Announcer(store, client, producer)
        queue = JobQueue(
            client,
            producer,
            job_ttl_s=settings.job_ttl_s,
            wait_replicas=settings.redis_wait_replicas,
            wait_timeout_ms=settings.redis_wait_timeout_ms,
            fair_ready=settings.fair_share_ready if settings.fair_share else None,
        )
        http = httpx.AsyncClient(limits=httpx.Limits(max_connections=None))
        key_cache = (
            KeyCache(client, max_age_s=settings.gateway_key_cache_s)
            if settings.auth and settings.gateway_key_cache_s > 0
            else None
        )
        GatewayState(
            settings=settings,
            redis=client,
            keys=KeyStore(client, key_cache),
            service=TaskService(store, queue, client, announcer, settings, outputs),
            waiter=ResultWaiter(http, settings.notifier_url, settings.internal_secret),
            event_relay=EventRelay(http, settings.notifier_url, settings.internal_secret),
        ).install(app)
        background = [asyncio.create_task(sweep_outputs(outputs, settings))]
        if key_cache is not None:
            background.append(asyncio.create_task(key_cache.run()))
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            producer.close()
            await http.aclose()
            await client.aclose()

    # Off unless asked for: browsers elsewhere may not call the API with a user's key.
    cors = [
        Middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "Cancel-After",
                "Prefer",
            ],
            expose_headers=["Location", "Retry-After", "Idempotent-Replayed"],
        )
    ]
    middleware = [
        *(cors if settings.cors_origins else []),
        Middleware(SecurityHeadersMiddleware),
        # Outside the body limit, so its 413 under /v1/ is OpenAI-shaped too.
        *([Middleware(OpenAIErrorMiddleware)] if settings.openai_api else []),
        Middleware(
            BodyLimitMiddleware,
            max_bytes=settings.gateway_max_body_bytes,
            # Task inputs carry images (uploads, base64); every other body stays small.
            larger={
                path: settings.gateway_max_upload_bytes
                for path in ("/tasks", *compat.upload_paths(settings))
            },
        ),
    ]
    app = create_service_app(
        "gateway",
        settings,
        lifespan=lifespan,
        ready=_ready,
        middleware=middleware,
        title="Fluxgate",
        summary="Queue AI image jobs and get results pushed over WebSocket or webhooks.",
    )
    app.include_router(demo.router)
    app.mount("/static", StaticFiles(directory=demo.STATIC_DIR), name="static")
    app.mount(
        "/demo/client", StaticFiles(directory=demo.CLIENT_DIST, check_dir=False), name="client"
    )
    # Before the native routes: WaveSpeed's `POST /flux` also takes the native body.
    for compat_router in compat.routers(settings):
        app.include_router(compat_router)
    app.include_router(flux.router)
    app.include_router(tasks.router)
    app.include_router(submit_task.router)
    app.include_router(models.router)
    app.include_router(admin.router)
    app.include_router(usage.router)

    # Output names are random and unguessable, so files need no API key (browsers, webhooks).
    if local_outputs is not None:
        app.mount("/files", OutputFiles(directory=local_outputs, check_dir=False), name="files")
    else:

        @app.get("/files/{path:path}", include_in_schema=False)
        async def _s3_file(path: str) -> Response:
            # `proxy` mode: outputs come through here (presigned URLs never point here).
            try:
                data = await run_in_threadpool(
                    outputs.read_output, f"{settings.public_base}/files/{path}"
                )
            except FileNotFoundError as exc:
                raise NotFound("not found") from exc
            kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
            return Response(
                data, media_type=kind, headers={"Cache-Control": "private, max-age=3600"}
            )

    # The gateway publishes Celery messages: their headers carry the trace on.
    instrument_celery()
    return app
