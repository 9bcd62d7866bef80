"""Per-key limits in Redis, each one atomic script: a token bucket for submits, and a cap on the
jobs a key has queued or running."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from apps.common import keys

# Refills `rate` tokens per second up to `burst`; a submit takes one. Returns {1} or {0, wait_s}.
BUCKET_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed, wait = 1, 0
if tokens >= 1 then tokens = tokens - 1 else allowed, wait = 0, (1 - tokens) / rate end
-- Numbers passed to redis.call become integers: keep the fractions as strings.
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts',
           string.format('%.6f', now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return {allowed, string.format('%.3f', wait)}
"""

# Adds a task to the owner's active set unless it is full; entries older than the job TTL
# (records that expired without ending) are dropped first, so the count heals itself.
ACTIVE_CAP_LUA = """
local now, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('EXPIRE', KEYS[1], ttl)
return 1
"""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: int = 0


class KeyLimits:
    def __init__(self, client: aioredis.Redis, *, job_ttl_s: int) -> None:
        self._redis = client
        self._job_ttl_s = job_ttl_s
        self._bucket = client.register_script(BUCKET_LUA)
        self._cap = client.register_script(ACTIVE_CAP_LUA)

    async def take_token(self, owner: str, *, rate_per_s: float, burst: int) -> Verdict:
        allowed, wait = await self._bucket(
            keys=[keys.rate_bucket_key(owner)], args=[rate_per_s, burst]
        )
        return Verdict(bool(int(allowed)), max(1, int(float(wait) + 0.999)))

    async def start_job(
        self, owner: str, task_id: str, *, created_at: float, max_active: int
    ) -> bool:
        return bool(
            await self._cap(
                keys=[keys.active_jobs_key(owner)],
                args=[task_id, max_active, created_at, self._job_ttl_s],
            )
        )

    async def forget_job(self, owner: str, task_id: str) -> None:
        await self._redis.zrem(keys.active_jobs_key(owner), task_id)
