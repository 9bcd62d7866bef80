"""Active health checks: every backend's `/readyz` and `/load`, every few seconds."""

from __future__ import annotations

import asyncio

import httpx
from pydantic import ValidationError

from apps.balancer.pool import Backend, BackendPool
from apps.common.service.logging import get_logger
from apps.common.wire.inference import BackendLoad

log = get_logger(__name__)

# While requests wait for room, backends are checked this often: a server that finished loading
# is admitted within this, not within a whole interval (a cold start's last step).
STARVED_INTERVAL_S = 0.25


class HealthChecker:
    def __init__(
        self, pool: BackendPool, client: httpx.AsyncClient, *, interval_s: float, timeout_s: float
    ) -> None:
        self._pool = pool
        self._client = client
        self._interval_s = interval_s
        self._timeout_s = timeout_s

    async def run_forever(self) -> None:
        while True:
            await self.check_all()
            interval = self._interval_s
            if self._pool.waiting:
                interval = min(interval, STARVED_INTERVAL_S)
            await asyncio.sleep(interval)

    async def check_all(self) -> None:
        await asyncio.gather(*(self._check(b) for b in list(self._pool.backends.values())))

    async def _check(self, backend: Backend) -> None:
        was_healthy = backend.healthy
        try:
            # Readiness means the pipeline is loaded and the device answers, not just "alive".
            ready = await self._client.get(f"{backend.url}/readyz", timeout=self._timeout_s)
            ready.raise_for_status()
            load = await self._client.get(f"{backend.url}/load", timeout=self._timeout_s)
            load.raise_for_status()
            self._pool.check_passed(backend, BackendLoad.model_validate_json(load.content))
        except (httpx.HTTPError, ValidationError) as exc:
            self._pool.check_failed(backend)
            if was_healthy and not backend.healthy:
                log.warning(
                    "backend failed its health checks", backend=backend.url, error=repr(exc)
                )
            return
        if backend.healthy and not was_healthy:
            log.info(
                "backend admitted",
                backend=backend.url,
                capacity=backend.capacity,
                models=backend.models,
            )
