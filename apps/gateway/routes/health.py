"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from redis.exceptions import RedisError

from apps.common.service.errors import Unavailable
from apps.gateway.deps import State

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: State) -> dict[str, str]:
    try:
        await state.redis.ping()
    except RedisError as exc:
        raise Unavailable(f"redis unreachable: {exc}") from exc
    return {"status": "ready"}
