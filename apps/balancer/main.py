"""HTTP face of the balancer: `POST /v1/infer/{model}` forwarded to the pool; `GET /backends`."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response

from apps.balancer.discovery import DnsDiscovery
from apps.balancer.health import HealthChecker
from apps.balancer.pool import BackendPool, BackendState
from apps.balancer.proxy import Forwarder
from apps.balancer.settings import BalancerSettings
from apps.common.security.url_guard import Resolver, system_resolver
from apps.common.service.app import create_service_app
from apps.common.service.errors import InvalidInput, Unavailable
from apps.common.service.settings import get_settings
from apps.common.wire.inference import BALANCER_WAIT_HEADER


def create_app(
    settings: BalancerSettings | None = None, resolver: Resolver = system_resolver
) -> FastAPI:
    settings = settings or get_settings(BalancerSettings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # No read timeout: a generation may sit in a backend's queue for long; the worker bounds it.
        timeout = httpx.Timeout(None, connect=settings.balancer_connect_timeout_s)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=200)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
            pool = BackendPool(
                settings.balancer_backends,
                policy=settings.balancer_policy,
                affinity_batches=(
                    settings.balancer_affinity_batches if settings.balancer_affinity else None
                ),
                unhealthy_after=settings.balancer_unhealthy_after,
                healthy_after=settings.balancer_healthy_after,
                eject_base_s=settings.balancer_eject_base_s,
                eject_max_s=settings.balancer_eject_max_s,
                queue_factor=settings.balancer_queue_factor,
            )
            checker = HealthChecker(
                pool,
                client,
                interval_s=settings.balancer_health_interval_s,
                timeout_s=settings.balancer_health_timeout_s,
            )
            loops = [asyncio.create_task(checker.run_forever())]
            if settings.balancer_discovery_dns:
                discovery = DnsDiscovery(
                    pool,
                    settings.balancer_discovery_dns,
                    interval_s=settings.balancer_discovery_interval_s,
                    resolver=resolver,
                )
                discovery.refresh()
                loops.append(asyncio.create_task(discovery.run_forever()))
            app.state.pool = pool
            app.state.forwarder = Forwarder(pool, client, settings.balancer_max_attempts)
            try:
                yield
            finally:
                for loop in loops:
                    loop.cancel()
                await asyncio.gather(*loops, return_exceptions=True)

    async def ready(request: Request) -> dict[str, object]:
        pool: BackendPool = request.app.state.pool
        now = time.monotonic()
        healthy = [b for b in pool.backends.values() if b.state(now) is BackendState.HEALTHY]
        if not healthy:
            raise Unavailable("no healthy inference backend")
        return {"status": "ready", "healthy_backends": len(healthy)}

    app = create_service_app("balancer", settings, lifespan=lifespan, ready=ready)

    @app.get("/backends")
    async def backends(request: Request) -> list[dict[str, object]]:
        """Every backend's state, load, capacity, recent latency and failures."""
        pool: BackendPool = request.app.state.pool
        now = time.monotonic()
        return [b.describe(now) for b in pool.backends.values()]

    @app.get("/demand")
    async def demand(request: Request) -> dict[str, int]:
        """Inference requests on the pool now: running or queued on a backend (`in_flight`) and
        held here for room (`waiting`). The chart's KEDA ScaledObject adds `total` to the GPU
        queue's length, so a busy pool is not scaled down and a waiting one is scaled up."""
        pool: BackendPool = request.app.state.pool
        in_flight = sum(b.in_flight for b in pool.backends.values())
        return {"in_flight": in_flight, "waiting": pool.waiting, "total": in_flight + pool.waiting}

    @app.post("/v1/infer/{model}")
    async def infer(model: str, request: Request) -> Response:
        """Forward to a backend with room; with `X-Fluxgate-Wait-S`, wait up to that long for
        one (a cold start, a full pool) before answering 503."""
        forwarder: Forwarder = request.app.state.forwarder
        try:
            wait_s = float(request.headers.get(BALANCER_WAIT_HEADER, "0"))
        except ValueError:
            wait_s = math.nan
        if not math.isfinite(wait_s) or wait_s < 0:
            raise InvalidInput(
                f"{BALANCER_WAIT_HEADER} must be seconds, 0 or more", field=BALANCER_WAIT_HEADER
            )
        return await forwarder.forward(
            model, await request.body(), dict(request.headers), wait_s=wait_s
        )

    return app
