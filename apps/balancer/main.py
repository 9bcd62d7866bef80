"""HTTP face of the balancer: `POST /v1/infer/{model}` forwarded to the pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from prometheus_client import make_asgi_app

from apps.balancer.pool import BackendPool
from apps.balancer.proxy import forward
from apps.balancer.settings import BalancerSettings
from apps.common.errors import Unavailable
from apps.common.http import install_error_handlers
from apps.common.settings import get_settings


def create_app(settings: BalancerSettings | None = None) -> FastAPI:
    settings = settings or get_settings(BalancerSettings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # No read timeout: a generation may sit in a backend's queue for long; the worker bounds it.
        timeout = httpx.Timeout(None, connect=settings.balancer_connect_timeout_s)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=100)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
            app.state.client = client
            app.state.pool = BackendPool(settings.balancer_backends)
            yield

    app = FastAPI(title="Fluxgate balancer", lifespan=lifespan)
    install_error_handlers(app)
    app.mount("/metrics", make_asgi_app())

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> dict[str, object]:
        pool: BackendPool = request.app.state.pool
        if not pool.backends:
            raise Unavailable("no inference backends configured")
        return {"status": "ready", "backends": len(pool.backends)}

    @app.get("/backends")
    async def backends(request: Request) -> list[dict[str, object]]:
        pool: BackendPool = request.app.state.pool
        return [
            {"url": b.url, "in_flight": b.in_flight, "served": b.served, "failures": b.failures}
            for b in pool.backends
        ]

    @app.post("/v1/infer/{model}")
    async def infer(model: str, request: Request) -> StreamingResponse:
        return await forward(
            request.app.state.pool,
            request.app.state.client,
            path=f"/v1/infer/{model}",
            body=await request.body(),
            headers=dict(request.headers),
        )

    return app
