"""Fans published job views out to the local subscribers of each task.

One pattern subscription per process receives every task's events: it is in place before the first
client connects, so "subscribe, then read the snapshot" never misses an event in between.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from apps.common.redis import keys
from apps.common.service.logging import get_logger
from apps.common.wire.contracts import TERMINAL_STATUSES, TaskStatus

log = get_logger(__name__)

# Called when a lost Redis connection comes back: the current state of one task, as published text.
Resync = Callable[[str], Awaitable[str | None]]


@dataclass(frozen=True)
class Published:
    """One job view as published: serialised once, sent as is to every subscriber."""

    seq: int
    terminal: bool
    text: str
    # The view's event kind (`snapshot`, `progress`, ...), for transports that name it (SSE).
    event: str = "message"

    @classmethod
    def parse(cls, text: str) -> Published:
        data = orjson.loads(text)
        return cls(
            seq=int(data["seq"]),
            terminal=TaskStatus(data["status"]) in TERMINAL_STATUSES,
            text=text,
            event=data.get("event") or "message",
        )


class EventHub:
    def __init__(self, client: aioredis.Redis, resync: Resync) -> None:
        self._redis = client
        self._resync = resync
        self._subscribers: dict[str, set[asyncio.Queue[Published | None]]] = defaultdict(set)
        self._ready = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    @property
    def connections(self) -> int:
        return sum(len(queues) for queues in self._subscribers.values())

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._read_forever())
        await asyncio.wait_for(self._ready.wait(), timeout=10)

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)

    @asynccontextmanager
    async def subscribe(self, task_id: str) -> AsyncIterator[asyncio.Queue[Published | None]]:
        """A queue that receives every view of `task_id` published while the block runs. The
        hub puts only views; a subscriber may put None in its own queue to wake itself up."""
        queue: asyncio.Queue[Published | None] = asyncio.Queue()
        self._subscribers[task_id].add(queue)
        try:
            yield queue
        finally:
            subscribers = self._subscribers.get(task_id)
            if subscribers is not None:
                subscribers.discard(queue)
                if not subscribers:
                    del self._subscribers[task_id]

    def _dispatch(self, task_id: str, text: str) -> None:
        queues = self._subscribers.get(task_id)
        if not queues:
            return
        message = Published.parse(text)
        for queue in queues:
            queue.put_nowait(message)

    async def _read_forever(self) -> None:
        backoff = 0.1
        first = True
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=False)
            try:
                await pubsub.psubscribe(keys.EVENTS_PATTERN)
                async for message in pubsub.listen():
                    if message["type"] == "psubscribe":
                        backoff = 0.1
                        self._ready.set()
                        if not first:
                            await self._resync_all()
                        first = False
                    elif message["type"] == "pmessage":
                        channel = message["channel"]
                        channel = channel.decode() if isinstance(channel, bytes) else channel
                        data = message["data"]
                        self._dispatch(
                            keys.task_id_from_channel(channel),
                            data.decode() if isinstance(data, bytes) else data,
                        )
            except (RedisError, OSError) as exc:
                if first:
                    # Never subscribed yet: Redis is still starting (`make up` starts all at once).
                    log.info("waiting for Redis", error=repr(exc), retry_in_s=backoff)
                else:
                    log.warning(
                        "event subscription lost; reconnecting",
                        error=repr(exc),
                        retry_in_s=backoff,
                    )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                await pubsub.aclose()

    async def _resync_all(self) -> None:
        # Events published while we were away are gone: send each subscriber the current state.
        for task_id in list(self._subscribers):
            text = await self._resync(task_id)
            if text is not None:
                self._dispatch(task_id, text)
