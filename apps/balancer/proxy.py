"""Forwards one inference request to a backend and streams its answer back.

Before the first byte of the answer, a failure (refused connection, reset, timeout, 5xx) moves the
request to another backend, within `max_attempts`. After it, the stream just ends: the worker sees
no result and retries the job. When every backend is full the answer is a quick 503 with
Retry-After, so work waits in the durable Celery queue rather than in memory here.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import Counter, Histogram

from apps.balancer.pool import Backend, BackendPool
from apps.common.logging import get_logger

log = get_logger(__name__)

CHOICES = Counter("fluxgate_balancer_choices_total", "Requests sent to a backend", ["backend"])
RETRIES = Counter("fluxgate_balancer_retries_total", "Requests moved to another backend")
REFUSED = Counter("fluxgate_balancer_refused_total", "Requests refused with 503", ["reason"])
LATENCY = Histogram(
    "fluxgate_balancer_request_seconds",
    "Backend request time",
    ["backend"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)

_PASSED_HEADERS = ("content-type", "x-request-id", "x-fluxgate-task-id")
# Tells the worker why it was refused: `full` (wait and retry) or `no_backend`.
BUSY_HEADER = "X-Fluxgate-Refused"


@dataclass
class Forwarder:
    pool: BackendPool
    client: httpx.AsyncClient
    max_attempts: int

    async def forward(self, model: str, body: bytes, headers: dict[str, str]) -> Response:
        sent_headers = {k: v for k, v in headers.items() if k.lower() in _PASSED_HEADERS}
        tried: set[str] = set()
        for attempt in range(self.max_attempts):
            backend = self.pool.choose(model, exclude=tried)
            if backend is None:
                break
            if attempt:
                RETRIES.inc()
            tried.add(backend.url)
            answer = await self._try(backend, model, body, sent_headers)
            if answer is not None:
                return answer
        reason = "no_backend" if not self.pool.usable(model) else "full"
        REFUSED.labels(reason).inc()
        message = (
            f"no healthy inference backend serves '{model}'"
            if reason == "no_backend"
            else "every inference backend is at capacity"
        )
        return JSONResponse(
            {"error": {"code": "unavailable", "message": message}},
            status_code=503,
            headers={"Retry-After": str(self.pool.retry_after_s(model)), BUSY_HEADER: reason},
        )

    async def _try(
        self, backend: Backend, model: str, body: bytes, headers: dict[str, str]
    ) -> Response | None:
        self.pool.acquire(backend)
        CHOICES.labels(backend.url).inc()
        started = time.perf_counter()
        try:
            request = self.client.build_request(
                "POST", f"{backend.url}/v1/infer/{model}", content=body, headers=headers
            )
            response = await self.client.send(request, stream=True)
        except httpx.TransportError as exc:
            log.warning("backend unreachable", backend=backend.url, error=repr(exc))
            self.pool.release(backend, ok=False, reason="connect")
            return None
        if response.status_code >= 500:
            await response.aclose()
            log.warning("backend refused", backend=backend.url, status=response.status_code)
            self.pool.release(backend, ok=False, reason=f"http_{response.status_code}")
            return None
        if response.status_code >= 400:
            # The request itself is wrong: no other backend would take it either.
            content = await response.aread()
            await response.aclose()
            self.pool.release(backend, ok=True)
            return Response(
                content,
                status_code=response.status_code,
                media_type=response.headers.get("content-type"),
            )
        chunks = response.aiter_raw()
        try:
            # Nothing reached the worker yet: a reset here can still go to another backend.
            first = await anext(chunks)
        except (httpx.TransportError, StopAsyncIteration) as exc:
            await response.aclose()
            log.warning(
                "backend dropped the request before answering", backend=backend.url, error=repr(exc)
            )
            self.pool.release(backend, ok=False, reason="reset")
            return None
        return StreamingResponse(
            self._relay(backend, response, chunks, first, started),
            status_code=response.status_code,
            media_type=response.headers.get("content-type"),
        )

    async def _relay(
        self,
        backend: Backend,
        response: httpx.Response,
        chunks: AsyncIterator[bytes],
        first: bytes,
        started: float,
    ) -> AsyncIterator[bytes]:
        outcome = "left"  # until the stream ends one way or the other, the caller may leave
        try:
            yield first
            async for chunk in chunks:
                yield chunk
            outcome = "done"
        except httpx.TransportError as exc:
            # Died mid-stream: end ours too; the worker sees no result and retries the job.
            outcome = "broke"
            log.warning("backend stream broke", backend=backend.url, error=repr(exc))
        finally:
            await response.aclose()
            elapsed = time.perf_counter() - started
            LATENCY.labels(backend.url).observe(elapsed)
            if outcome == "broke":
                self.pool.release(backend, ok=False, reason="stream")
            else:
                # A caller that left (a cancel) says nothing bad about the backend.
                self.pool.release(
                    backend, ok=True, latency_ms=elapsed * 1000 if outcome == "done" else None
                )
