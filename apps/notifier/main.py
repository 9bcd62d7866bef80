"""HTTP and WebSocket face of the notifier."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Query, Request, WebSocket
from fastapi.responses import Response, StreamingResponse
from prometheus_client import Gauge, make_asgi_app
from redis.exceptions import RedisError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from apps.common.jobs.announce import Announcer
from apps.common.jobs.positions import QueuePositions
from apps.common.jobs.record import JobRecord
from apps.common.jobs.store import JobStore
from apps.common.redis.client import async_redis
from apps.common.security.apikeys import KeyStore, bearer_token
from apps.common.security.signing import (
    INTERNAL_READ_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_internal_read,
)
from apps.common.service.errors import Unauthorized, Unavailable
from apps.common.service.http import install_error_handlers
from apps.common.service.request_context import RequestContextMiddleware, bind_ids
from apps.common.service.settings import get_settings
from apps.common.service.tracing import fastapi_options, instrument_app
from apps.common.wire.queues import make_producer
from apps.notifier.events import EventIngest
from apps.notifier.hub import EventHub
from apps.notifier.settings import NotifierSettings
from apps.notifier.sse import EVENT_STREAM, EVENT_STREAM_HEADERS, task_event_stream
from apps.notifier.sweeper import Sweeper
from apps.notifier.waits import wait_for_terminal

WS_CONNECTIONS = Gauge("fluxgate_notifier_websockets", "Open WebSocket subscriptions")
CLOSE_NOT_FOUND = 4404
CLOSE_UNAUTHORIZED = 4401
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
        ingest = EventIngest(store, settings, announcer, QueuePositions(client))

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
        app.state.keys = KeyStore(client)
        app.state.redis, app.state.store, app.state.ingest, app.state.hub = (
            client,
            store,
            ingest,
            hub,
        )
        try:
            yield
        finally:
            sweeping.cancel()
            await asyncio.gather(sweeping, return_exceptions=True)
            await hub.stop()
            producer.close()
            await client.aclose()

    app = FastAPI(title="Fluxgate notifier", lifespan=lifespan, **fastapi_options())
    install_error_handlers(app)
    app.mount("/metrics", make_asgi_app())
    # Outermost: ids and timing cover every other layer.
    app.add_middleware(RequestContextMiddleware, service="notifier")
    instrument_app(app, "notifier", settings)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> dict[str, str]:
        try:
            await request.app.state.redis.ping()
        except RedisError as exc:
            raise Unavailable(f"redis unreachable: {exc}") from exc
        return {"status": "ready"}

    @app.post("/internal/events")
    async def post_event(request: Request) -> Response:
        outcome = await request.app.state.ingest.ingest(
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
        ingest: EventIngest = request.app.state.ingest

        def render(record: JobRecord) -> str:
            return ingest.views.render(record).model_dump_json()

        outcome = await wait_for_terminal(
            request.app.state.hub,
            request.app.state.store,
            task_id,
            timeout_s=min(timeout, settings.notifier_max_wait_s),
            render=render,
        )
        return Response(outcome.text, status_code=200 if outcome.terminal else 202, media_type=JSON)

    @app.get("/internal/stream/{task_id}", dependencies=[Depends(internal_reader)])
    async def stream(task_id: str, request: Request) -> StreamingResponse:
        """Server-sent events of one task, relayed by the gateway (which checks the caller)."""
        bind_ids(task_id=task_id)
        state = request.app.state
        return StreamingResponse(
            task_event_stream(task_id, state.hub, state.store, state.ingest),
            media_type=EVENT_STREAM,
            headers=EVENT_STREAM_HEADERS,
        )

    @app.websocket("/ws/tasks/{task_id}")
    async def task_socket(websocket: WebSocket, task_id: str) -> None:
        await websocket.accept()
        bind_ids(task_id=task_id)
        owner: str | None = None
        if settings.auth:
            # Browsers cannot set headers on a WebSocket: `?token=` works too.
            token = bearer_token(websocket.headers.get("authorization")) or (
                websocket.query_params.get("token")
            )
            key = await websocket.app.state.keys.authenticate(token) if token else None
            if key is None:
                await websocket.close(code=CLOSE_UNAUTHORIZED, reason="API key required")
                return
            owner = key.id
        WS_CONNECTIONS.inc()
        try:
            state = websocket.app.state
            await _stream_task(websocket, task_id, state.hub, state.store, state.ingest, owner)
        except (WebSocketDisconnect, RuntimeError):
            pass  # the client left; nothing to clean but the subscription, done by the hub
        finally:
            WS_CONNECTIONS.dec()

    return app


async def _stream_task(
    websocket: WebSocket,
    task_id: str,
    hub: EventHub,
    store: JobStore,
    ingest: EventIngest,
    owner: str | None,
) -> None:
    """Snapshot first, then only newer views; close after a terminal one (ARCHITECTURE.md).
    With auth on, another key's task is "not found", like one that never existed."""
    async with hub.subscribe(task_id) as queue:
        record = await store.get(task_id)
        if record is None or (owner is not None and record.owner != owner):
            await websocket.close(code=CLOSE_NOT_FOUND, reason="task not found")
            return
        snapshot = await ingest.live_view(record, "snapshot")
        await websocket.send_text(snapshot.model_dump_json())
        if record.status.is_terminal:
            await websocket.close(code=1000)
            return
        last_seq = record.seq
        left = asyncio.create_task(_until_client_leaves(websocket))
        # The client leaving wakes the loop through its own queue: one plain `get` per view,
        # where a task plus `asyncio.wait` per view and subscriber cost ~2x at 10k subscribers.
        left.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while True:
                message = await queue.get()
                if message is None:
                    return
                if message.seq <= last_seq:
                    continue  # already covered by the snapshot or an earlier view
                last_seq = message.seq
                await websocket.send_text(message.text)
                if message.terminal:
                    await websocket.close(code=1000)
                    return
        finally:
            left.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await left
            if websocket.application_state is WebSocketState.CONNECTED:
                with contextlib.suppress(RuntimeError):
                    await websocket.close(code=1001)


async def _until_client_leaves(websocket: WebSocket) -> None:
    # Clients send nothing we need; reading is how a closed socket is noticed.
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
