"""API keys a service has read, kept while Redis promises to say when any of them changes.

Reading the caller's key was one of the two Redis round trips of every submit (py-spy on a
gateway under bench-submit: 13% of its CPU). The cache removes it without making revocation
late: a dedicated RESP3 connection asks Redis to track every key record (`CLIENT TRACKING ON
BCAST PREFIX`), and Redis pushes a message on that connection when any of them is written,
deleted or flushed, by anyone: another gateway, the key admin CLI, a script. Any such message
empties the cache (key records change rarely: a creation, a limit changed, a revocation).

The cache is used only while that connection is up and tracking; when it drops, the cache is
emptied and every read goes to Redis until tracking is back. A connection that went silent
(a peer or a NAT dropping it without a reset) is found by its PING, sent every `heartbeat_s`,
going unanswered. A read that raced with a change is not kept (a
generation counter), and no entry is older than `max_age_s`, a last bound should Redis ever
fail to push. A key that does not exist is never cached.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
import structlog

from apps.common.redis import keys

if TYPE_CHECKING:
    from apps.common.security.apikeys import ApiKey

# As `apps.common.service.logging.get_logger` makes it; importing that module from here would
# make `security` and `service` import each other (service's settings use the URL guard).
log = structlog.get_logger(__name__)

RECONNECT_S = 1.0
HEARTBEAT_S = 5.0


class KeyCache:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        max_age_s: float,
        max_keys: int = 10_000,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self._client = client
        self._max_age_s = max_age_s
        self._max_keys = max_keys
        self._heartbeat_s = heartbeat_s
        self._failed_before = False
        self._entries: OrderedDict[str, tuple[float, ApiKey]] = OrderedDict()
        self._live = False
        # Bumped by every invalidation: a read that began before one is not kept.
        self.generation = 0

    @property
    def live(self) -> bool:
        return self._live

    def get(self, digest: str) -> ApiKey | None:
        if not self._live:
            return None
        entry = self._entries.get(digest)
        if entry is None:
            return None
        stored_at, key = entry
        if time.monotonic() - stored_at > self._max_age_s:
            del self._entries[digest]
            return None
        self._entries.move_to_end(digest)
        return key

    def put(self, digest: str, key: ApiKey, generation: int) -> None:
        """Keep `key`, read at `generation`, unless the keys changed since or tracking is off."""
        if not self._live or generation != self.generation:
            return
        self._entries[digest] = (time.monotonic(), key)
        self._entries.move_to_end(digest)
        while len(self._entries) > self._max_keys:
            self._entries.popitem(last=False)

    def invalidate(self) -> None:
        self.generation += 1
        self._entries.clear()

    async def run(self) -> None:
        """Track the key records for as long as the service runs, reconnecting when needed."""
        while True:
            try:
                await self._track()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Said when it stops, and the first time it cannot start (a Redis before 6, an
                # ACL without CLIENT): then every request reads its key from Redis.
                if self._live or not self._failed_before:
                    log.warning("API key cache off until Redis tracks again", error=repr(exc))
                self._failed_before = True
            finally:
                self._live = False
                self.invalidate()
            await asyncio.sleep(RECONNECT_S)

    async def _track(self) -> None:
        pool = self._client.connection_pool
        kwargs: dict[str, Any] = {**pool.connection_kwargs, "protocol": 3}
        # Pushes arrive whenever keys change: this connection waits on them without a timeout.
        kwargs["socket_timeout"] = None
        connection = pool.connection_class(**kwargs)
        try:
            await connection.connect()
            await connection.send_command(
                "CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", keys.apikey_key("")
            )
            await connection.read_response()
            self.invalidate()
            self._live = True
            heard_at = time.monotonic()

            async def listen() -> None:
                nonlocal heard_at
                while True:
                    reply = await connection.read_response(push_request=True)
                    heard_at = time.monotonic()
                    if reply not in ("PONG", b"PONG"):
                        # A push: keys written, deleted, expired or flushed.
                        self.invalidate()

            async def beat() -> None:
                while True:
                    await asyncio.sleep(self._heartbeat_s)
                    # The last PING, sent a heartbeat ago, went unanswered.
                    if time.monotonic() - heard_at > 1.5 * self._heartbeat_s:
                        raise ConnectionError("Redis did not answer the tracking PING")
                    await connection.send_command("PING", check_health=False)

            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(listen())
                tasks.create_task(beat())
        finally:
            await connection.disconnect()
