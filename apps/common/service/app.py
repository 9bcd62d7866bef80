"""The app factory every HTTP service starts from: error mapping, `/metrics`, request ids,
tracing, `/healthz` and `/readyz`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, get_type_hints

import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from prometheus_client import make_asgi_app
from redis.exceptions import RedisError
from starlette.middleware import Middleware
from starlette.types import Lifespan

from apps.common.service.errors import Unavailable
from apps.common.service.http import install_error_handlers
from apps.common.service.request_context import RequestContextMiddleware
from apps.common.service.settings import CommonSettings
from apps.common.service.tracing import fastapi_options, instrument_app

ReadyCheck = Callable[[Request], Awaitable[Any]]


def create_service_app(
    service: str,
    settings: CommonSettings,
    *,
    lifespan: Lifespan[FastAPI],
    ready: ReadyCheck,
    middleware: Sequence[Middleware] = (),
    title: str | None = None,
    summary: str | None = None,
) -> FastAPI:
    """A FastAPI app for `service`. `ready` answers `/readyz`'s body or raises `Unavailable`
    (503); `middleware` runs inside the request-context layer, outermost first."""
    app = FastAPI(
        **fastapi_options(),
        title=title or f"Fluxgate {service}",
        summary=summary,
        lifespan=lifespan,
        # Outermost: ids and timing cover every other layer.
        middleware=[Middleware(RequestContextMiddleware, service=service), *middleware],
    )
    install_error_handlers(app)
    app.mount("/metrics", make_asgi_app())

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    async def readyz(request: Request) -> Any:
        return await ready(request)

    # The check's own return type documents the body in the OpenAPI document, as before.
    body_type = get_type_hints(ready).get("return")
    app.add_api_route("/readyz", readyz, methods=["GET"], response_model=body_type)
    instrument_app(app, service, settings)
    return app


async def redis_ready(client: aioredis.Redis) -> dict[str, str]:
    """The `/readyz` answer of a service that needs only its Redis: ready while it answers a
    ping, else 503 `unavailable`."""
    try:
        await client.ping()
    except RedisError as exc:
        raise Unavailable(f"redis unreachable: {exc}") from exc
    return {"status": "ready"}
