"""Where a queued job stands in its queue: the `queue_position` of the job view.

kombu's Redis transport keeps one list per queue and priority ("lane": `gpu`, `gpu:1`, ...
`gpu:9`), LPUSHes new messages and serves lanes in order, each from its right end. Each job takes
a ticket from its lane's counter when it is enqueued, so the jobs ahead of it are every message in
the lanes served before its own, plus those in its own lane that are not behind it:
`LLEN(own) - (tickets issued - own ticket) - 1`. That is a handful of O(1) reads per lookup,
whatever the queue's length, and counts across one queue only (not across every queue).

Under fair share a job has no ticket until it is released onto its lane; while it is staged its
place is its rank in its lane's fair order (`fairshare.FAIR_POSITION_LUA`, O(log n)).
"""

from __future__ import annotations

import redis.asyncio as aioredis

from apps.common.jobs.fairshare import FairQueues
from apps.common.jobs.record import JobRecord
from apps.common.redis import keys
from apps.common.task_types import task_type
from apps.common.wire.queues import celery_priority, lane_name

# Takes a ticket for a job about to be published; stored on its record if the record exists.
TAKE_TICKET_FN = """
local function take_ticket(counter, job)
  local ticket = redis.call('INCR', counter)
  if redis.call('EXISTS', job) == 1 then
    redis.call('HSET', job, 'queue_ticket', ticket)
  end
  return ticket
end
"""
TAKE_TICKET_LUA = TAKE_TICKET_FN + "return take_ticket(KEYS[1], KEYS[2])\n"

# KEYS: the lanes served before the job's own, then its own lane, then its lane's counter.
POSITION_LUA = """
local n = #KEYS
local ahead = 0
for i = 1, n - 2 do ahead = ahead + redis.call('LLEN', KEYS[i]) end
local own = redis.call('LLEN', KEYS[n - 1])
local issued = tonumber(redis.call('GET', KEYS[n]) or '0')
local behind = issued - tonumber(ARGV[1])
local before = own - behind - 1
if before < 0 then before = 0 end
return ahead + before
"""


def _lanes(record: JobRecord) -> tuple[list[str], str]:
    queue = task_type(record.type).queue
    own = celery_priority(record.priority)
    return [lane_name(queue, p) for p in range(own + 1)], lane_name(queue, own)


def ticket_keys(record: JobRecord) -> list[str]:
    _, own = _lanes(record)
    return [keys.queue_ticket_key(own), keys.job_key(record.task_id)]


def position_keys(record: JobRecord) -> list[str]:
    lanes, own = _lanes(record)
    return [*lanes, keys.queue_ticket_key(own)]


class QueuePositions:
    """Tickets and positions over an asyncio Redis client (gateway, notifier)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._take = client.register_script(TAKE_TICKET_LUA)
        self._position = client.register_script(POSITION_LUA)
        self._fair = FairQueues(client)

    async def take_ticket(self, record: JobRecord) -> int:
        ticket = int(await self._take(keys=ticket_keys(record)))
        record.queue_ticket = ticket
        return ticket

    async def of(self, record: JobRecord) -> int | None:
        """Jobs ahead of this one (0: it starts next); None unless it is queued."""
        if record.status != "queued":
            return None
        if record.queue_ticket is None:  # staged for fair share, or released from there
            queue = task_type(record.type).queue
            return await self._fair.position(
                queue, celery_priority(record.priority), record.task_id
            )
        return int(await self._position(keys=position_keys(record), args=[record.queue_ticket]))
