"""The notifier's collaborators: one `NotifierState` built in the app's lifespan and reached
through `notifier_state(request or websocket)`, nowhere else."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from fastapi import FastAPI
from starlette.requests import HTTPConnection

from apps.common.jobs.store import JobStore
from apps.common.security.apikeys import KeyStore
from apps.notifier.events import EventIngest
from apps.notifier.hub import EventHub


@dataclass(frozen=True)
class NotifierState:
    redis: aioredis.Redis
    keys: KeyStore
    store: JobStore
    ingest: EventIngest
    hub: EventHub

    def install(self, app: FastAPI) -> None:
        app.state.notifier = self


def notifier_state(connection: HTTPConnection) -> NotifierState:
    state: NotifierState = connection.app.state.notifier
    return state
