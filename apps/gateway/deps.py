"""Collaborators the routes receive through `Depends` (built once in the app's lifespan).

Async on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread hop per
request for what is an attribute read (the profile of `POST /flux` showed it).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from apps.gateway.service import TaskService


async def _service(request: Request) -> TaskService:
    return request.app.state.service


Service = Annotated[TaskService, Depends(_service)]
