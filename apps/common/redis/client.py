"""The asyncio Redis client of a service: a bounded pool that makes callers wait, not fail.

redis-py's default pool raises `MaxConnectionsError` once 100 connections are in use; a notifier
taking thousands of WebSocket subscriptions at once (or a gateway under a burst) would then
refuse work it could simply queue. A blocking pool keeps the number of connections bounded and
queues the excess for up to `wait_s`.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.connection import HiredisRespSerializer

DEFAULT_MAX_CONNECTIONS = 64


def async_redis(
    url: str,
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    wait_s: float = 10.0,
    socket_timeout_s: float | None = None,
) -> aioredis.Redis:
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=wait_s,
        decode_responses=True,
        socket_connect_timeout=2,
        socket_timeout=socket_timeout_s,
    )
    pool.connection_class = _lean(pool.connection_class)
    # The client owns its pool: closing it closes the pool's connections too.
    return aioredis.Redis.from_pool(pool)


class _LeanCommands(AbstractConnection):
    """Packs commands with hiredis's C packer, as redis-py's sync connection does but its
    asyncio one does not (redis-py #4176): py-spy on a gateway under bench-submit found the
    Python packer at 8% of its CPU; it takes 62 us for the accept script's ~100 arguments,
    hiredis 18 us. (Bounding writes by `asyncio.timeout` instead of the parent's `wait_for` was
    tried too: slower.)"""

    _packer = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        packed: list[bytes] = self._packer.pack(*args)
        return packed


_LEAN: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def _lean(connection_class: type[AbstractConnection]) -> type[AbstractConnection]:
    """The pool's connection class (TCP, TLS or a Unix socket, from the URL) made lean."""
    if connection_class not in _LEAN:
        _LEAN[connection_class] = type(
            f"Lean{connection_class.__name__}", (_LeanCommands, connection_class), {}
        )
    return _LEAN[connection_class]
