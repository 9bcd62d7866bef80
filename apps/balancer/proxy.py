"""Forwards one inference request to a backend and streams its answer back untouched."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial

import httpx
from fastapi.responses import StreamingResponse

from apps.balancer.pool import BackendPool
from apps.common.errors import Unavailable
from apps.common.logging import get_logger

log = get_logger(__name__)

_PASSED_HEADERS = ("content-type", "x-request-id")


async def forward(
    pool: BackendPool,
    client: httpx.AsyncClient,
    *,
    path: str,
    body: bytes,
    headers: dict[str, str],
) -> StreamingResponse:
    """Send to the least-loaded backend; before any byte came back, try the next one instead."""
    tried: set[str] = set()
    sent_headers = {k: v for k, v in headers.items() if k.lower() in _PASSED_HEADERS}
    while (backend := pool.choose(exclude=tried)) is not None:
        tried.add(backend.url)
        pool.acquire(backend)
        try:
            request = client.build_request(
                "POST", backend.url + path, content=body, headers=sent_headers
            )
            response = await client.send(request, stream=True)
        except httpx.TransportError as exc:
            pool.release(backend)
            backend.failures += 1
            log.warning("backend unreachable", backend=backend.url, error=repr(exc))
            continue
        if response.status_code == 503:
            await response.aclose()
            pool.release(backend)
            continue
        backend.served += 1
        return StreamingResponse(
            _relay(response, partial(pool.release, backend)),
            status_code=response.status_code,
            media_type=response.headers.get("content-type"),
        )
    raise Unavailable("no inference backend can take the request")


async def _relay(response: httpx.Response, done: Callable[[], None]) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    except httpx.TransportError as exc:
        # The backend died mid-stream: end our stream too, so the worker sees no result and retries.
        log.warning("backend stream broke", error=repr(exc))
    finally:
        await response.aclose()
        done()
