"""The gateway's API key cache (apps/common/security/key_cache.py) on a real redis-server: a key
read once is served without Redis, and any change to any key record, made by any client, is seen
at once; without tracking there is no cache."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis

from apps.common.redis import keys
from apps.common.redis.client import async_redis
from apps.common.security.apikeys import ApiKey, KeyStore
from apps.common.security.key_cache import KeyCache
from devtools.procs import start_redis


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[str]:
    """A server of its own: the test flushes it and kills its connections."""
    proc, url = start_redis(tmp_path)
    try:
        yield url
    finally:
        proc.stop()


@asynccontextmanager
async def cached_store(
    url: str, heartbeat_s: float = 5.0
) -> AsyncIterator[tuple[KeyStore, KeyCache]]:
    client = async_redis(url, socket_timeout_s=5)
    cache = KeyCache(client, max_age_s=60, heartbeat_s=heartbeat_s)
    tracking = asyncio.create_task(cache.run())
    try:
        await until(lambda: cache.live, "tracking on")
        yield KeyStore(client, cache), cache
    finally:
        tracking.cancel()
        await asyncio.gather(tracking, return_exceptions=True)
        await client.aclose()


async def until(check: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + 5
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within 5 s: {what}")
        await asyncio.sleep(0.01)


def calls(url: str, command: str) -> int:
    """How many times Redis has run `command` (its command stats)."""
    stats = redis.Redis.from_url(url).info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def gets(url: str) -> int:
    return calls(url, "get")


async def known_token(store: KeyStore, name: str = "acme") -> str:
    """A new key's token, read once through the store (so cached from then on)."""
    _, token = await store.create(name=name, rate_per_s=5, burst=5, max_active=5)
    assert await store.authenticate(token) is not None
    return token


def test_a_key_read_once_is_served_without_redis(own_redis: str) -> None:
    async def scenario() -> None:
        async with cached_store(own_redis) as (store, _):
            _, token = await store.create(name="acme", rate_per_s=5, burst=5, max_active=5)
            first = await store.authenticate(token)
            reads = gets(own_redis)
            for _ in range(20):
                assert await store.authenticate(token) == first
            assert gets(own_redis) == reads
            # An unknown token is asked of Redis every time: only keys that exist are kept.
            assert await store.authenticate("fg_unknown") is None
            assert await store.authenticate("fg_unknown") is None
            assert gets(own_redis) == reads + 2

    asyncio.run(scenario())


def test_any_change_by_any_client_is_seen_at_once(own_redis: str) -> None:
    other = redis.Redis.from_url(own_redis, decode_responses=True)

    async def scenario() -> None:
        async with cached_store(own_redis) as (store, _):
            key, token = await store.create(name="acme", rate_per_s=5, burst=5, max_active=5)
            assert await store.authenticate(token) is not None
            record = keys.apikey_key(str(other.get(keys.apikey_id_key(key.id))))

            # Limits changed by another process (another gateway, the key admin CLI).
            changed = ApiKey.model_validate_json(other.get(record) or "")
            other.set(record, changed.model_copy(update={"max_active": 99}).model_dump_json())

            async def sees_new_limit() -> bool:
                found = await store.authenticate(token)
                return found is not None and found.max_active == 99

            await until(sees_new_limit, "the new limit")

            # Revoked by another process.
            other.delete(record)

            await until(refused_token(store, token), "the revocation")

            # A flush drops everything.
            second = await known_token(store, "beta")
            other.flushdb()
            await until(refused_token(store, second), "the flush")

    asyncio.run(scenario())


def refused_token(store: KeyStore, token: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await store.authenticate(token) is None

    return check


def test_without_tracking_every_read_goes_to_redis(own_redis: str) -> None:
    other = redis.Redis.from_url(own_redis, decode_responses=True)

    async def scenario() -> None:
        async with cached_store(own_redis) as (store, cache):
            token = await known_token(store)
            # The tracking connection dies (a Redis restart, a proxy cutting idle connections).
            tracking = [c for c in other.client_list() if "t" in c["flags"]]
            assert len(tracking) == 1
            other.client_kill_filter(_id=tracking[0]["id"])
            await until(lambda: not cache.live, "the cache off")
            reads = gets(own_redis)
            assert await store.authenticate(token) is not None
            assert await store.authenticate(token) is not None
            assert gets(own_redis) == reads + 2
            # It comes back by itself, and caches again.
            await until(lambda: cache.live, "tracking back")
            await store.authenticate(token)
            reads = gets(own_redis)
            await store.authenticate(token)
            assert gets(own_redis) == reads

    asyncio.run(scenario())


def test_a_tracking_connection_gone_silent_turns_the_cache_off(own_redis: str) -> None:
    """A connection dropped without a reset (a NAT, a partition) delivers no invalidation and no
    error: the heartbeat's unanswered PING is what finds it."""
    other = redis.Redis.from_url(own_redis, decode_responses=True)

    async def scenario() -> None:
        async with cached_store(own_redis, heartbeat_s=0.2) as (store, cache):
            await known_token(store)
            await until(lambda: calls(own_redis, "ping") >= 3, "heartbeats answered")
            assert cache.live
            # Redis stops answering anyone for 2 s (its connections stay open).
            other.execute_command("CLIENT", "PAUSE", 2000, "ALL")
            await until(lambda: not cache.live, "the cache off")
            await until(lambda: cache.live, "tracking back after the pause")

    asyncio.run(scenario())


def test_a_read_that_raced_with_a_change_is_not_kept() -> None:
    cache = KeyCache(async_redis("redis://127.0.0.1:1/0"), max_age_s=60)
    cache._live = True  # as after tracking started
    key = ApiKey(id="k", name="k", created_at=0, rate_per_s=1, burst=1, max_active=1)
    before = cache.generation
    cache.invalidate()  # a change arrives while the read is in flight
    cache.put("digest", key, before)
    assert cache.get("digest") is None
    cache.put("digest", key, cache.generation)
    assert cache.get("digest") == key
