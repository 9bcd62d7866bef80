"""The asyncio Redis client of a service: a bounded pool that makes callers wait, not fail.

redis-py's default pool raises `MaxConnectionsError` once 100 connections are in use; a notifier
taking thousands of WebSocket subscriptions at once (or a gateway under a burst) would then
refuse work it could simply queue. A blocking pool keeps the number of connections bounded and
queues the excess for up to `wait_s`.
"""

from __future__ import annotations

import redis.asyncio as aioredis

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
    return aioredis.Redis(connection_pool=pool)
