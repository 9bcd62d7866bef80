"""Per-key limits in Redis, as Lua functions: a token bucket for submits, and a cap on the jobs a
key has queued or running. The accept script (`enqueue.py`) runs both for every submit of a key
and writes the job in the same step."""

from __future__ import annotations

from dataclasses import dataclass

from apps.common.redis import keys
from apps.common.security.apikeys import ApiKey

# Refills `rate` tokens per second up to `burst`; a submit takes one. Returns allowed, wait_s.
BUCKET_FN = """
local function take_token(key, rate, burst)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(state[1]) or burst
  local ts = tonumber(state[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
  local allowed, wait = 1, 0
  if tokens >= 1 then tokens = tokens - 1 else allowed, wait = 0, (1 - tokens) / rate end
  -- Numbers passed to redis.call become integers: keep the fractions as strings.
  redis.call('HSET', key, 'tokens', string.format('%.6f', tokens), 'ts',
             string.format('%.6f', now))
  redis.call('EXPIRE', key, math.ceil(burst / rate) + 60)
  return allowed, wait
end
"""

# The owner's set of active jobs: `has_room` says whether one more fits (entries older than the
# job TTL, records that expired without ending, are dropped first, so the count heals itself);
# `start_job` adds one. Checked before the rate is charged, so a refusal for the cap spends no
# token of the key's bucket.
ACTIVE_CAP_FN = """
local function has_room(key, max_active, now, ttl)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - ttl)
  return redis.call('ZCARD', key) < max_active
end
local function start_job(key, task_id, now, ttl)
  redis.call('ZADD', key, now, task_id)
  redis.call('EXPIRE', key, ttl)
end
"""


def retry_after_s(wait_s: float) -> int:
    """Whole seconds for `Retry-After`, never 0 (a client must not retry at once)."""
    return max(1, int(wait_s + 0.999))


@dataclass(frozen=True)
class KeyAdmission:
    """What the accept script checks for a caller's key before it writes the job."""

    owner: str
    rate_per_s: float
    burst: int
    max_active: int
    # The key's fair share relative to other keys' (apps/common/jobs/fairshare.py).
    weight: float = 1.0

    @classmethod
    def of(cls, key: ApiKey) -> KeyAdmission:
        return cls(key.id, key.rate_per_s, key.burst, key.max_active, getattr(key, "weight", 1.0))

    @property
    def bucket_key(self) -> str:
        return keys.rate_bucket_key(self.owner)

    @property
    def active_key(self) -> str:
        return keys.active_jobs_key(self.owner)
