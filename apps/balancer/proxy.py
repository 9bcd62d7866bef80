"""Forwards one inference request to a backend and streams its answer back.

Before the first byte of the answer, a failure (refused connection, reset, timeout, 5xx) moves the
request to another backend, within `max_attempts`. After it, the stream just ends: the worker sees
no result and retries the job.

A request that finds no backend with room (all full, or none ready: a cold start, scaled to zero)
may wait here up to the caller's `x-fluxgate-wait-s` for one, and starts the moment one has room.
Past that it gets a 503 that says why (`X-Fluxgate-Refused`: `full` or `no_backend`, and for the
latter `X-Fluxgate-Unready-S`, how long the model has had no ready server), so the job goes on
waiting in the worker and in Redis rather than spending its retry budget. A request that was
tried and failed on every backend is refused as `failed`: that one is a real failure.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import Counter, Histogram

from apps.balancer.affinity import Affinity
from apps.balancer.pool import Backend, BackendPool
from apps.common.service.logging import get_logger
from apps.common.wire.inference import (
    BALANCER_REFUSED_HEADER,
    BALANCER_UNREADY_HEADER,
    BalancerRefusal,
)

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
# The longest `BALANCER_WAIT_HEADER` a request may wait here for room.
MAX_WAIT_S = 60.0


@dataclass
class Forwarder:
    pool: BackendPool
    client: httpx.AsyncClient
    max_attempts: int

    async def forward(
        self, model: str, body: bytes, headers: dict[str, str], *, wait_s: float = 0.0
    ) -> Response:
        sent_headers = {k: v for k, v in headers.items() if k.lower() in _PASSED_HEADERS}
        affinity = Affinity.of_headers({k.lower(): v for k, v in headers.items()})
        deadline = time.monotonic() + min(max(wait_s, 0.0), MAX_WAIT_S)
        tried: set[str] = set()
        attempt = 0
        while attempt < self.max_attempts:
            backend = self.pool.choose(model, exclude=tried, affinity=affinity)
            if backend is None:
                left = deadline - time.monotonic()
                usable = self.pool.usable(model, affinity=affinity)
                untried = [b for b in usable if b.url not in tried]
                if left <= 0 or (tried and not untried):
                    break
                # Wait for room rather than refuse at once: nothing was tried yet, or the servers
                # not tried yet are only full.
                await self.pool.wait_for_change(left)
                continue
            if attempt:
                RETRIES.inc()
            attempt += 1
            tried.add(backend.url)
            answer = await self._try(backend, model, body, sent_headers, affinity)
            if answer is not None:
                return answer
        untried = [b for b in self.pool.usable(model, affinity=affinity) if b.url not in tried]
        # A real failure only when every server that could take it was tried and failed.
        return self._refusal(model, failed=bool(tried) and not untried)

    def _refusal(self, model: str, *, failed: bool) -> Response:
        headers = {"Retry-After": str(self.pool.retry_after_s(model))}
        unready_s = self.pool.unready_s(model)
        if failed:
            reason = BalancerRefusal.FAILED
            message = f"every inference backend tried for '{model}' failed"
        elif unready_s > 0:
            reason = BalancerRefusal.NO_BACKEND
            message = f"no ready inference backend serves '{model}'"
            headers[BALANCER_UNREADY_HEADER] = f"{unready_s:.1f}"
        else:
            reason, message = BalancerRefusal.FULL, "every inference backend is at capacity"
        REFUSED.labels(reason.value).inc()
        headers[BALANCER_REFUSED_HEADER] = reason.value
        return JSONResponse(
            {"error": {"code": "unavailable", "message": message}}, status_code=503, headers=headers
        )

    async def _try(
        self,
        backend: Backend,
        model: str,
        body: bytes,
        headers: dict[str, str],
        affinity: Affinity | None = None,
    ) -> Response | None:
        self.pool.acquire(backend, affinity)
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
