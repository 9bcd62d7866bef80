"""Collaborators the routes receive through `Depends` (built once in the app's lifespan).

Async on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread hop per
request for what is an attribute read (the profile of `POST /flux` showed it).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from apps.gateway.service import TaskService
from apps.gateway.settings import GatewaySettings
from apps.gateway.waiter import ResultWaiter


async def _settings(request: Request) -> GatewaySettings:
    return request.app.state.settings


async def _service(request: Request) -> TaskService:
    return request.app.state.service


async def _waiter(request: Request) -> ResultWaiter:
    return request.app.state.waiter


Waiter = Annotated[ResultWaiter, Depends(_waiter)]
Settings = Annotated[GatewaySettings, Depends(_settings)]
Service = Annotated[TaskService, Depends(_service)]
