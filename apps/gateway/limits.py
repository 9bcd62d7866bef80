"""Per-key limits in Redis, as Lua functions: a token bucket for submits, and caps on the jobs a
key has queued or running (their number and their summed cost). The accept script (`enqueue.py`)
runs both for every submit of a key and writes the job in the same step."""

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

# The owner's active jobs: a set of task ids scored by created time (`key`) and its companion of
# the same ids scored by cost (`cost_key`; the job store removes an ending job from both).
# `has_room` says whether one more job of `cost` fits: true, or false and why, 'cap' (the number)
# or 'cost' (the sum, with `max_cost` nil for no cap). Entries older than the job TTL, records that
# expired without ending, are dropped from both first, so both heal themselves. Its cost is that of
# the entries it drops (none, nearly always), not of the set's size: it runs on every submit, and a
# key with thousands of jobs queued made an intersection of both sets cost a millisecond of
# Redis's one thread per submit. Only a cost cap sums the costs (at most `max_active` of them).
# `start_job` adds one to both (`cost` as given, a string, since numbers passed to redis.call
# become integers). Checked before the rate is charged, so a refusal for a cap spends no token of
# the key's bucket.
ACTIVE_CAP_FN = """
local function has_room(key, cost_key, max_active, max_cost, cost, now, ttl)
  while true do
    local stale = redis.call('ZRANGEBYSCORE', key, '-inf', now - ttl, 'LIMIT', 0, 500)
    if #stale == 0 then break end
    redis.call('ZREM', key, unpack(stale))
    redis.call('ZREM', cost_key, unpack(stale))
  end
  local active = redis.call('ZCARD', key)
  if active >= max_active then return false, 'cap' end
  if max_cost then
    local total = 0
    if active > 0 then
      local costs = redis.call('ZRANGE', cost_key, 0, -1, 'WITHSCORES')
      for i = 2, #costs, 2 do total = total + tonumber(costs[i]) end
    else
      redis.call('DEL', cost_key)
    end
    -- A hair of slack: sums of decimal costs are not exact in binary.
    if total + cost > max_cost + 1e-9 then return false, 'cost' end
  end
  return true
end
local function start_job(key, cost_key, task_id, cost, now, ttl)
  redis.call('ZADD', key, now, task_id)
  redis.call('EXPIRE', key, ttl)
  redis.call('ZADD', cost_key, cost, task_id)
  redis.call('EXPIRE', cost_key, ttl)
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
    # The most its queued and running jobs may cost together; None: no cap.
    max_cost: float | None = None
    # The key's fair share relative to other keys' (apps/common/jobs/fairshare.py).
    weight: float = 1.0

    @classmethod
    def of(cls, key: ApiKey) -> KeyAdmission:
        return cls(key.id, key.rate_per_s, key.burst, key.max_active, key.max_cost, key.weight)

    @property
    def bucket_key(self) -> str:
        return keys.rate_bucket_key(self.owner)

    @property
    def active_key(self) -> str:
        return keys.active_jobs_key(self.owner)

    @property
    def cost_key(self) -> str:
        return keys.active_cost_key(self.owner)
