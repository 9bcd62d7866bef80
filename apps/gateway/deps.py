"""The gateway's collaborators: one `GatewayState` built once in the app's lifespan, reached
through `gateway_state(request)` or the `Depends` aliases below, and nowhere else.

The aliases are async on purpose: FastAPI runs a plain `def` dependency in its thread pool, a
thread hop per request for what is an attribute read (the profile of `POST /flux` showed it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, FastAPI, Request

from apps.common.security.apikeys import KeyStore
from apps.gateway.event_relay import EventRelay
from apps.gateway.service import TaskService
from apps.gateway.settings import GatewaySettings
from apps.gateway.waiter import ResultWaiter


@dataclass(frozen=True)
class GatewayState:
    settings: GatewaySettings
    redis: aioredis.Redis
    keys: KeyStore
    service: TaskService
    waiter: ResultWaiter
    event_relay: EventRelay

    def install(self, app: FastAPI) -> None:
        app.state.gateway = self


def gateway_state(request: Request) -> GatewayState:
    """What the lifespan built, for routes that skip `Depends` on the hot path (submits)."""
    state: GatewayState = request.app.state.gateway
    return state


async def _state(request: Request) -> GatewayState:
    return gateway_state(request)


async def _settings(request: Request) -> GatewaySettings:
    return gateway_state(request).settings


async def _service(request: Request) -> TaskService:
    return gateway_state(request).service


State = Annotated[GatewayState, Depends(_state)]
Settings = Annotated[GatewaySettings, Depends(_settings)]
Service = Annotated[TaskService, Depends(_service)]
