"""Fair share: which waiting job the workers get next, when several API keys wait in one lane.

Celery serves each lane (a queue at one priority) first in, first out: a key that queued 1,000
jobs would put every other key behind all of them. So an accepted job does not go straight onto
its Celery lane. It is *staged* in its lane's fair queue, and jobs are *released* from there onto
the Celery lanes only as workers need them: a job while fewer than `ready` messages at least as
urgent as it wait on the queue's lanes. Releases happen at submit, when a worker slot starts a
job, and on every worker heartbeat (which also drains the fair queue when fair share is off, so
turning it off strands nothing).

The order within a lane is start-time fair queuing (Goyal et al., SFQ), weighted by cost: a job
of key `k` gets the start tag `S = max(V, F_k)` where `V` is the start tag of the job released
last and `F_k` the finish tag of `k`'s previous job; `k`'s finish tag becomes `S + cost / weight`.
The lane releases the smallest start tag first. A key that comes back after a quiet while starts
at `V` (no credit saved up), a key's own jobs keep their order, and over any busy period each key
gets GPU time in proportion to its weight. Priorities still win: the most urgent lane with a
staged job releases first, and the workers serve the Celery lanes in priority order.

Everything lives in Redis and changes in one Lua step (the accept script, the release script),
so it holds across any number of gateway and worker replicas, and a staged job is as durable as a
queued Celery message. Per lane: the fair queue (sorted set of task ids by start tag), its state
(hash: `v`, `t:<key>` finish tags, `m:<task id>` messages), and the released set (task ids
released onto the Celery lane, by ticket) that keeps `queue_position` true.
"""

from __future__ import annotations

import functools
from typing import Any

import redis
import redis.asyncio as aioredis

from apps.common.jobs.record import JobRecord
from apps.common.redis import keys
from apps.common.task_types import task_type
from apps.common.task_types._cost import MIN_COST
from apps.common.wire.queues import PRIORITY_LANES, celery_priority, lane_name

# Keys per lane, in this order, for each lane of a queue from the most urgent (Celery priority 0).
LANE_LIST, LANE_COUNTER, LANE_STAGED, LANE_STATE, LANE_RELEASED = range(5)
KEYS_PER_LANE = 5
# A queue's keys: its lanes', then the list that counts its staged jobs (for autoscalers).
QUEUE_KEY_COUNT = KEYS_PER_LANE * PRIORITY_LANES + 1
# How many released messages may wait when fair share is off: all of them (a drain).
DRAIN_ALL = 1 << 30

# Lua functions over one queue's keys, found at KEYS[base], KEYS[base + 1], ... (see
# `queue_keys`); lane `p` (Celery priority, 0 the most urgent) starts at `base + p * 5`, and the
# queue's depth list (one entry per staged job: KEDA's Redis scaler can only count a list) is
# last.
FAIR_FN = f"""
local PER_LANE, LANES = {KEYS_PER_LANE}, {PRIORITY_LANES}
local function fmt(x) return string.format('%.17g', x) end
-- Stage a message in its lane's fair queue: start tag max(V, the key's finish tag).
local function stage(base, p, task_id, owner, charge, message)
  local lane = base + p * PER_LANE
  redis.call('LPUSH', KEYS[base + PER_LANE * LANES], '1')
  local state = KEYS[lane + {LANE_STATE}]
  local v = tonumber(redis.call('HGET', state, 'v') or '0')
  local last = tonumber(redis.call('HGET', state, 't:' .. owner) or '0')
  local start = math.max(v, last)
  redis.call('HSET', state, 't:' .. owner, fmt(start + charge), 'm:' .. task_id, message)
  redis.call('ZADD', KEYS[lane + {LANE_STAGED}], fmt(start), task_id)
end
-- Release staged jobs, most urgent lane first, smallest start tag first: a lane's job while
-- fewer than `ready` messages at least as urgent wait on the queue's Celery lanes (so an urgent
-- job is never held back by less urgent ones released before it). Returns how many it released.
local function release(base, ready)
  local waiting = 0
  local released = 0
  for p = 0, LANES - 1 do
    local lane = base + p * PER_LANE
    local list, staged = KEYS[lane + {LANE_LIST}], KEYS[lane + {LANE_STAGED}]
    waiting = waiting + redis.call('LLEN', list)
    while waiting < ready do
      local popped = redis.call('ZPOPMIN', staged)
      if popped[1] == nil then break end
      local task_id, start = popped[1], popped[2]
      redis.call('RPOP', KEYS[base + PER_LANE * LANES])
      local state = KEYS[lane + {LANE_STATE}]
      local message = redis.call('HGET', state, 'm:' .. task_id)
      redis.call('HDEL', state, 'm:' .. task_id)
      -- Start tags leave in increasing order, so V only grows.
      redis.call('HSET', state, 'v', start)
      if message then
        local ticket = redis.call('INCR', KEYS[lane + {LANE_COUNTER}])
        redis.call('LPUSH', list, message)
        local taken = KEYS[lane + {LANE_RELEASED}]
        redis.call('ZADD', taken, ticket, task_id)
        -- Jobs released before the lane's current messages were taken by workers already.
        redis.call('ZREMRANGEBYSCORE', taken, '-inf', ticket - redis.call('LLEN', list))
        waiting = waiting + 1
        released = released + 1
      end
    end
  end
  return released
end
"""

RELEASE_LUA = FAIR_FN + "return release(1, tonumber(ARGV[1]))\n"

# Takes a staged job out of its fair queue (a queued job canceled by its client): KEYS are its
# lane's staged set and state and its queue's depth list, ARGV its task id. Returns 1 when it
# was staged.
UNSTAGE_LUA = """
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], 'm:' .. ARGV[1])
if removed == 1 then redis.call('RPOP', KEYS[3]) end
return removed
"""

# Jobs ahead of a queued job under fair share. KEYS: for each lane of its queue from the most
# urgent, its Celery list and its staged set; then the job's own lane's released set and
# counter. ARGV: task id, its lane's index (its Celery priority).
# Ahead of a staged job: every message and staged job of the more urgent lanes, every message of
# its own lane and the staged jobs of its lane with a smaller start tag (releases keep fewer
# than `ready` messages at least as urgent waiting, so no less urgent job starts before it).
# Ahead of a released job: the messages and staged jobs of the more urgent lanes, and the
# messages released before it on its own lane.
FAIR_POSITION_LUA = f"""
local own = tonumber(ARGV[2])
local ahead = 0
for p = 0, own - 1 do
  ahead = ahead + redis.call('LLEN', KEYS[2 * p + 1]) + redis.call('ZCARD', KEYS[2 * p + 2])
end
local own_list, own_staged = KEYS[2 * own + 1], KEYS[2 * own + 2]
local released, counter = KEYS[{2 * PRIORITY_LANES + 1}], KEYS[{2 * PRIORITY_LANES + 2}]
local rank = redis.call('ZRANK', own_staged, ARGV[1])
if rank then return ahead + redis.call('LLEN', own_list) + rank end
local ticket = redis.call('ZSCORE', released, ARGV[1])
if ticket then
  local issued = tonumber(redis.call('GET', counter) or '0')
  ahead = ahead + math.max(0, redis.call('LLEN', own_list) - (issued - tonumber(ticket)) - 1)
end
-- Neither staged nor on its lane: a worker holds it (it waits for a model server and goes back
-- to the head of its lane), so only the more urgent lanes are ahead of it.
return ahead
"""


def lane_keys(lane: str) -> list[str]:
    """One lane's keys, in the `LANE_*` order."""
    return [
        lane,
        keys.queue_ticket_key(lane),
        keys.fair_staged_key(lane),
        keys.fair_state_key(lane),
        keys.fair_released_key(lane),
    ]


@functools.cache
def queue_keys(queue: str) -> tuple[str, ...]:
    """Every lane's keys of `queue`, from the most urgent lane to the least, then its depth
    (made once per queue: the accept script gets them on every submit)."""
    lanes = [k for p in range(PRIORITY_LANES) for k in lane_keys(lane_name(queue, p))]
    return (*lanes, keys.fair_depth_key(queue))


@functools.cache
def position_keys(queue: str, celery_priority: int) -> tuple[str, ...]:
    """`FAIR_POSITION_LUA`'s keys for a job waiting in `queue` at `celery_priority`."""
    lanes = [lane_name(queue, p) for p in range(PRIORITY_LANES)]
    found = [k for lane in lanes for k in (lane, keys.fair_staged_key(lane))]
    own = lanes[celery_priority]
    return (*found, keys.fair_released_key(own), keys.queue_ticket_key(own))


def unstage_keys(queue: str, lane: str) -> list[str]:
    return [keys.fair_staged_key(lane), keys.fair_state_key(lane), keys.fair_depth_key(queue)]


def charge(cost: float | None, weight: float) -> float:
    """How far a job moves its key's finish tag: its cost over the key's weight. A job always
    moves it a little (a record made before costs were kept counts the least cost), so a key's
    own jobs keep their order."""
    return max(cost or 0.0, MIN_COST) / weight


class FairRelease:
    """Releases staged jobs onto a queue's Celery lanes, over a blocking client (workers)."""

    def __init__(self, client: redis.Redis) -> None:
        self._release = client.register_script(RELEASE_LUA)

    def release(self, queue: str, ready: int) -> int:
        """Release jobs until `ready` messages wait on `queue`'s lanes; how many it released."""
        return int(self._release(keys=list(queue_keys(queue)), args=[ready]))


class FairQueues:
    """Reads and unstages under fair share, over an asyncio client (gateway, notifier)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._position = client.register_script(FAIR_POSITION_LUA)
        self._unstage = client.register_script(UNSTAGE_LUA)
        self._release = client.register_script(RELEASE_LUA)

    async def position(self, queue: str, celery_priority: int, task_id: str) -> int:
        """Jobs that start before this one (see `FAIR_POSITION_LUA`)."""
        return int(
            await self._position(
                keys=list(position_keys(queue, celery_priority)), args=[task_id, celery_priority]
            )
        )

    async def unstage(self, record: JobRecord) -> bool:
        """Take a job that ended while queued (canceled, expired) out of its fair queue, so the
        jobs behind it move up now; False when it was not staged (a released one is skipped by
        the worker that takes it)."""
        if record.queue_ticket is not None:  # queued with fair share off: never staged
            return False
        queue = task_type(record.type).queue
        lane = lane_name(queue, celery_priority(record.priority))
        return bool(await self._unstage(keys=unstage_keys(queue, lane), args=[record.task_id]))

    async def release(self, queue: str, ready: int) -> int:
        return int(await self._release(keys=list(queue_keys(queue)), args=[ready]))


def fair_args(owner: str | None, cost: float | None, weight: float) -> list[Any]:
    """The accept script's fair-share arguments for one job: its key and its charge."""
    return [owner or "", f"{charge(cost, weight):.17g}"]
