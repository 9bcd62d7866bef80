"""Server-sent events: the same job views as the WebSocket, for clients that cannot open one.

Same guarantees: subscribe first, then the snapshot, then only newer views, and the stream ends
after the final state. Each event's `id` is the view's `seq`, its `event` the event kind.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from apps.common.jobs.store import JobStore
from apps.notifier.events import EventIngest
from apps.notifier.hub import EventHub

EVENT_STREAM = "text/event-stream"
# No caching, and no buffering in nginx (it honours X-Accel-Buffering from upstream).
EVENT_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
NOT_FOUND_FRAME = (
    b'event: error\ndata: {"error":{"code":"not_found","message":"task not found"}}\n\n'
)
# Comment lines keep proxies and load balancers from closing a quiet stream.


def frame(text: str, *, seq: int, event: str) -> bytes:
    return f"id: {seq}\nevent: {event}\ndata: {text}\n\n".encode()


async def task_event_stream(
    task_id: str,
    hub: EventHub,
    store: JobStore,
    ingest: EventIngest,
    *,
    keepalive_s: float,
) -> AsyncIterator[bytes]:
    """Frames for one task; the caller has checked that it exists and who may see it."""
    async with hub.subscribe(task_id) as queue:
        record = await store.get(task_id)
        if record is None:
            yield NOT_FOUND_FRAME
            return
        snapshot = await ingest.live_view(record, "snapshot")
        yield frame(snapshot.model_dump_json(), seq=record.seq, event="snapshot")
        if record.status.is_terminal:
            return
        last_seq = record.seq
        while True:
            try:
                message = await asyncio.wait_for(queue.get(), keepalive_s)
            except TimeoutError:
                yield b": keepalive\n\n"
                continue
            if message is None:  # only a WebSocket's own watcher puts one; never here
                return
            if message.seq <= last_seq:
                continue  # already covered by the snapshot or an earlier view
            last_seq = message.seq
            # The hub parsed the view once for all subscribers: no JSON work per subscriber.
            yield frame(message.text, seq=message.seq, event=message.event)
            if message.terminal:
                return
