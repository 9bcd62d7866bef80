"""kombu's delivered, not yet acknowledged messages, and putting one back at the head of its lane.

kombu's Redis transport keeps each message it delivered to a worker in the hash `unacked` (by
delivery tag: `[message, exchange, routing_key]`) and its delivery time in the sorted set
`unacked_index`, until the worker acknowledges it; on its own it redelivers one only after the
broker visibility timeout. Fluxgate puts one back sooner in two cases: a worker slot hands back a
job that waits for a model server (`capacity`), and a worker reclaims the deliveries of a dead one
(`recovery`). A test checks these key names against kombu's own.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

import redis

from apps.common.wire.queues import lane_name

UNACKED_KEY = "unacked"
UNACKED_INDEX_KEY = "unacked_index"

# Puts a delivered message back at the head of its lane (kombu serves a lane from its right end)
# and forgets the delivery, in one step, only if the delivery is still as read and no live worker
# lists it among those it holds (KEYS[4..]): a worker killed at any point leaves the message
# either delivered or queued, never both, and a live worker's job is never taken from it.
PUT_BACK_LUA = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
for i = 4, #KEYS do
  if redis.call('SISMEMBER', KEYS[i], ARGV[1]) == 1 then return 0 end
end
redis.call('RPUSH', KEYS[3], ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
"""


class Unacked:
    """The unacknowledged deliveries, over one blocking Redis client."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._put_back = client.register_script(PUT_BACK_LUA)

    def delivered_before(self, epoch_s: float) -> list[str]:
        """Delivery tags of messages delivered before `epoch_s` and not acknowledged since."""
        tags = self._redis.zrangebyscore(UNACKED_INDEX_KEY, "-inf", epoch_s)
        return [t.decode() if isinstance(t, bytes) else str(t) for t in tags]

    def put_back(self, delivery_tag: str | None, *, unless_held_in: Sequence[str] = ()) -> bool:
        """Put the message delivered as `delivery_tag` back at the head of its lane; False when
        it is no longer unacknowledged, or one of the sets `unless_held_in` lists it."""
        if not delivery_tag:
            return False
        raw = self._redis.hget(UNACKED_KEY, delivery_tag)
        if raw is None:
            return False
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        message, _exchange, routing_key = json.loads(text)
        properties = message.setdefault("properties", {})
        lane = lane_name(str(routing_key), int(properties.get("priority") or 0))
        # A new tag for the next delivery: a late ack of this one (a slot that handed it back, a
        # worker that comes back) must not remove the next delivery's entry.
        properties["delivery_tag"] = str(uuid.uuid4())
        properties.setdefault("delivery_info", {})["redelivered"] = True
        return bool(
            self._put_back(
                keys=[UNACKED_KEY, UNACKED_INDEX_KEY, lane, *unless_held_in],
                args=[delivery_tag, text, json.dumps(message)],
            )
        )
