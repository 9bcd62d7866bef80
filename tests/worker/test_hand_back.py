"""A waiting job's message goes back to the head of its lane, in Redis, under a new delivery tag."""

from __future__ import annotations

import json
import uuid

import redis
from kombu.transport.redis import Channel

from apps.common.celery_wire import task_message
from apps.common.queues import TASK_FLUX
from apps.worker.capacity import UNACKED_INDEX_KEY, UNACKED_KEY, HandBackScript


def test_the_unacked_keys_are_kombus() -> None:
    assert Channel.unacked_key == UNACKED_KEY
    assert Channel.unacked_index_key == UNACKED_INDEX_KEY


def deliver(client: redis.Redis, lane: str) -> tuple[str, dict[str, object]]:
    """What kombu does when a worker takes the message at the head of `lane`."""
    raw = client.rpop(lane)
    assert isinstance(raw, str)
    message = json.loads(raw)
    tag = message["properties"]["delivery_tag"]
    queue = message["properties"]["delivery_info"]["routing_key"]
    client.zadd(UNACKED_INDEX_KEY, {tag: 1.0})
    client.hset(UNACKED_KEY, tag, json.dumps([message, "", queue]))
    return tag, message


def test_hand_back_puts_the_message_first_under_a_new_tag(redis_client: redis.Redis) -> None:
    task_id = str(uuid.uuid4())
    # A queue no worker of the session's stack consumes.
    queue = f"handback-{task_id[:8]}"
    lane, raw = task_message(TASK_FLUX, task_id, [task_id], queue=queue, api_priority=5)
    redis_client.delete(lane)
    redis_client.lpush(lane, raw)
    tag, _ = deliver(redis_client, lane)
    behind = task_message(TASK_FLUX, "behind", ["behind"], queue=queue, api_priority=5)[1]
    redis_client.lpush(lane, behind)

    assert HandBackScript(redis_client).hand_back(tag)
    assert not redis_client.hexists(UNACKED_KEY, tag)
    assert redis_client.zscore(UNACKED_INDEX_KEY, tag) is None
    again_tag, again = deliver(redis_client, lane)  # the head of the lane: this job, not `behind`
    assert again["headers"]["id"] == task_id  # type: ignore[index]
    assert again_tag != tag
    # The first delivery's ack arrives late: it must not forget the second delivery.
    redis_client.zrem(UNACKED_INDEX_KEY, tag)
    redis_client.hdel(UNACKED_KEY, tag)
    assert redis_client.hexists(UNACKED_KEY, again_tag)
    assert HandBackScript(redis_client).hand_back(again_tag)
    redis_client.delete(lane)


def test_a_delivery_that_is_no_longer_ours_is_left_alone(redis_client: redis.Redis) -> None:
    script = HandBackScript(redis_client)
    assert not script.hand_back(None)
    assert not script.hand_back(str(uuid.uuid4()))
