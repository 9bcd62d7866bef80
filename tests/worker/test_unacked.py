"""A waiting job's message goes back to the head of its lane, in Redis, under a new delivery tag."""

from __future__ import annotations

import json
import uuid

import pytest
import redis
from kombu.transport.redis import Channel

from apps.common.wire.celery_message import task_message
from apps.common.wire.queues import TASK_FLUX
from apps.worker.unacked import UNACKED_INDEX_KEY, UNACKED_KEY, Unacked


@pytest.fixture
def own_db(redis_url: str) -> redis.Redis:
    """A database of its own: the session stack's worker reclaims and hands back in db 0."""
    return redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/8", decode_responses=True)


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


def test_hand_back_puts_the_message_first_under_a_new_tag(own_db: redis.Redis) -> None:
    task_id = str(uuid.uuid4())
    # A queue no worker of the session's stack consumes.
    queue = f"handback-{task_id[:8]}"
    lane, raw = task_message(TASK_FLUX, task_id, [task_id], queue=queue, api_priority=5)
    own_db.delete(lane)
    own_db.lpush(lane, raw)
    tag, _ = deliver(own_db, lane)
    behind = task_message(TASK_FLUX, "behind", ["behind"], queue=queue, api_priority=5)[1]
    own_db.lpush(lane, behind)

    assert Unacked(own_db).put_back(tag)
    assert not own_db.hexists(UNACKED_KEY, tag)
    assert own_db.zscore(UNACKED_INDEX_KEY, tag) is None
    again_tag, again = deliver(own_db, lane)  # the head of the lane: this job, not `behind`
    assert again["headers"]["id"] == task_id  # type: ignore[index]
    assert again_tag != tag
    # The first delivery's ack arrives late: it must not forget the second delivery.
    own_db.zrem(UNACKED_INDEX_KEY, tag)
    own_db.hdel(UNACKED_KEY, tag)
    assert own_db.hexists(UNACKED_KEY, again_tag)
    assert Unacked(own_db).put_back(again_tag)
    own_db.delete(lane)


def test_a_delivery_that_is_no_longer_ours_is_left_alone(own_db: redis.Redis) -> None:
    unacked = Unacked(own_db)
    assert not unacked.put_back(None)
    assert not unacked.put_back(str(uuid.uuid4()))
