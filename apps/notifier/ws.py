"""The WebSocket protocol of `/ws/tasks/{task_id}`: auth, the snapshot first, then only newer
views, and the close codes (documented in the README's API section)."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import WebSocket
from prometheus_client import Gauge
from starlette.websockets import WebSocketDisconnect, WebSocketState

from apps.common.jobs.store import JobStore
from apps.common.security.apikeys import bearer_token
from apps.common.service.request_context import bind_ids
from apps.notifier.events import EventIngest
from apps.notifier.hub import EventHub
from apps.notifier.state import notifier_state

WS_CONNECTIONS = Gauge("fluxgate_notifier_websockets", "Open WebSocket subscriptions")
CLOSE_NOT_FOUND = 4404
CLOSE_UNAUTHORIZED = 4401


async def serve_task_socket(websocket: WebSocket, task_id: str, *, auth: bool) -> None:
    """One subscriber: accepted first, so that a refused key or an unknown task is a close code
    the client can read (4401, 4404)."""
    await websocket.accept()
    bind_ids(task_id=task_id)
    owner: str | None = None
    if auth:
        # Browsers cannot set headers on a WebSocket: `?token=` works too.
        token = bearer_token(websocket.headers.get("authorization")) or (
            websocket.query_params.get("token")
        )
        key = await notifier_state(websocket).keys.authenticate(token) if token else None
        if key is None:
            await websocket.close(code=CLOSE_UNAUTHORIZED, reason="API key required")
            return
        owner = key.id
    WS_CONNECTIONS.inc()
    try:
        state = notifier_state(websocket)
        await _stream_task(websocket, task_id, state.hub, state.store, state.ingest, owner)
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client left; nothing to clean but the subscription, done by the hub
    finally:
        WS_CONNECTIONS.dec()


async def _stream_task(
    websocket: WebSocket,
    task_id: str,
    hub: EventHub,
    store: JobStore,
    ingest: EventIngest,
    owner: str | None,
) -> None:
    """Snapshot first, then only newer views; close after a terminal one.
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
