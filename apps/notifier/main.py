"""HTTP face of the notifier: event ingest, waits, the SSE relay and the WebSocket route."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Query, Request, WebSocket
from fastapi.responses import Response, StreamingResponse

from apps.common.jobs.announce import Announcer
from apps.common.jobs.positions import QueuePositions
from apps.common.jobs.record import JobRecord
from apps.common.jobs.store import JobStore
from apps.common.redis.client import async_redis
from apps.common.security.apikeys import KeyStore
from apps.common.security.signing import (
    INTERNAL_READ_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_internal_read,
)
from apps.common.service.app import create_service_app, redis_ready
from apps.common.service.errors import Unauthorized
from apps.common.service.request_context import bind_ids
from apps.common.service.settings import get_settings
from apps.common.wire.queues import make_producer
from apps.notifier.events import EventIngest
from apps.notifier.hub import EventHub
from apps.notifier.settings import NotifierSettings
from apps.notifier.sse import EVENT_STREAM, EVENT_STREAM_HEADERS, task_event_stream
from apps.notifier.state import NotifierState, notifier_state
from apps.notifier.sweeper import Sweeper
from apps.notifier.waits import wait_for_terminal
from apps.notifier.ws import serve_task_socket

JSON = "application/json"


def create_app(settings: NotifierSettings | None = None) -> FastAPI:
    settings = settings or get_settings(NotifierSettings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = async_redis(settings.redis_url)
        producer = make_producer(
            settings.redis_url, visibility_timeout_s=settings.broker_visibility_timeout_s
        )
        store = JobStore(client, ttl_s=settings.job_ttl_s)
        announcer = Announcer(store, client, producer)
        positions = QueuePositions(client)
        ingest = EventIngest(store, settings, announcer, positions)

        async def resync(task_id: str) -> str | None:
            record = await store.get(task_id)
            if record is None:
                return None
            return (await ingest.live_view(record, "snapshot")).model_dump_json()

        hub = EventHub(client, resync)
        await hub.start()
        sweeper = Sweeper(
            client,
            store,
            ingest,
            announcer,
            producer,
            interval_s=settings.notifier_sweep_interval_s,
        )
        sweeping = asyncio.create_task(sweeper.run_forever())
        NotifierState(
            redis=client, keys=KeyStore(client), store=store, ingest=ingest, hub=hub
        ).install(app)
        try:
            yield
        finally:
            sweeping.cancel()
            await asyncio.gather(sweeping, return_exceptions=True)
            await hub.stop()
            producer.close()
            await client.aclose()

    async def ready(request: Request) -> dict[str, str]:
        return await redis_ready(notifier_state(request).redis)

    app = create_service_app("notifier", settings, lifespan=lifespan, ready=ready)

    @app.post("/internal/events")
    async def post_event(request: Request) -> Response:
        outcome = await notifier_state(request).ingest.ingest(
            await request.body(),
            timestamp=request.headers.get(TIMESTAMP_HEADER),
            signature=request.headers.get(SIGNATURE_HEADER),
        )
        applied = "true" if outcome.applied else "false"
        body = f'{{"applied":{applied},"task":{outcome.view.model_dump_json()}}}'
        return Response(body, media_type=JSON)

    def internal_reader(request: Request) -> None:
        # Only peers (the gateway, nginx's sync facade) read any task here: no tenant checks.
        if not verify_internal_read(
            settings.internal_secret, request.headers.get(INTERNAL_READ_HEADER)
        ):
            raise Unauthorized("internal route: the internal token is missing or wrong")

    @app.get("/internal/wait/{task_id}", dependencies=[Depends(internal_reader)])
    async def wait(
        task_id: str,
        request: Request,
        timeout: float = Query(default=30.0, ge=0),  # noqa: ASYNC109
    ) -> Response:
        state = notifier_state(request)

        def render(record: JobRecord) -> str:
            return state.ingest.views.render(record).model_dump_json()

        outcome = await wait_for_terminal(
            state.hub,
            state.store,
            task_id,
            timeout_s=min(timeout, settings.notifier_max_wait_s),
            render=render,
        )
        return Response(outcome.text, status_code=200 if outcome.terminal else 202, media_type=JSON)

    @app.get("/internal/stream/{task_id}", dependencies=[Depends(internal_reader)])
    async def stream(task_id: str, request: Request) -> StreamingResponse:
        """Server-sent events of one task, relayed by the gateway (which checks the caller)."""
        bind_ids(task_id=task_id)
        state = notifier_state(request)
        return StreamingResponse(
            task_event_stream(
                task_id,
                state.hub,
                state.store,
                state.ingest,
                keepalive_s=settings.notifier_sse_keepalive_s,
            ),
            media_type=EVENT_STREAM,
            headers=EVENT_STREAM_HEADERS,
        )

    @app.websocket("/ws/tasks/{task_id}")
    async def task_socket(websocket: WebSocket, task_id: str) -> None:
        await serve_task_socket(websocket, task_id, auth=settings.auth)

    return app
