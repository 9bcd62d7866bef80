"""Worker leases: a delivery a live worker lists is never taken from it; one nobody lists is put
back at the head of its lane (real Redis, kombu's keys)."""

from __future__ import annotations

import json
import uuid

import pytest
import redis

from apps.common.redis import keys
from apps.common.wire.celery_message import task_message
from apps.common.wire.queues import TASK_FLUX
from apps.worker.recovery import WorkerLease
from apps.worker.unacked import UNACKED_INDEX_KEY, UNACKED_KEY


@pytest.fixture
def own_db(redis_url: str) -> redis.Redis:
    """A database of its own: the session stack's worker reclaims and hands back in db 0."""
    return redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/8", decode_responses=True)


def delivered(client: redis.Redis, queue: str, at: float) -> tuple[str, str]:
    """A message as kombu leaves it once a worker took it at `at`: (lane, delivery tag)."""
    task_id = str(uuid.uuid4())
    lane, raw = task_message(TASK_FLUX, task_id, [task_id], queue=queue, api_priority=5)
    message = json.loads(raw)
    tag = message["properties"]["delivery_tag"]
    client.zadd(UNACKED_INDEX_KEY, {tag: at})
    client.hset(UNACKED_KEY, tag, json.dumps([message, "", queue]))
    return lane, tag


def test_a_held_delivery_stays_and_an_orphan_comes_back(own_db: redis.Redis) -> None:
    queue = f"recovery-{uuid.uuid4().hex[:8]}"
    held: list[str] = []
    alive = WorkerLease(own_db, lambda: held, lease_s=10, heartbeat_s=2)
    other = WorkerLease(own_db, list, lease_s=10, heartbeat_s=2)
    long_ago = 1.0  # delivered long before a lease: only a live holder keeps it
    lane, kept = delivered(own_db, queue, long_ago)
    _, orphan = delivered(own_db, queue, long_ago)
    _, fresh = delivered(own_db, queue, 10**10)  # just delivered: its worker may not
    held.append(kept)  # have listed it yet
    alive.beat()
    other.beat()
    own_db.delete(keys.RECLAIM_LOCK)

    reclaimed = other.reclaim()

    assert reclaimed == [orphan]
    assert own_db.hexists(UNACKED_KEY, kept)
    assert own_db.hexists(UNACKED_KEY, fresh)
    assert not own_db.hexists(UNACKED_KEY, orphan)
    back = json.loads(own_db.rpop(lane))  # type: ignore[arg-type]
    assert back["properties"]["delivery_tag"] != orphan
    assert back["properties"]["delivery_info"]["redelivered"] is True

    # The holder dies: its lease lapses, and what it held comes back.
    own_db.delete(keys.worker_holds_key(alive.worker_id))
    own_db.zrem(keys.WORKERS, alive.worker_id)
    own_db.delete(keys.RECLAIM_LOCK)
    assert other.reclaim() == [kept]
    for tag in (fresh,):
        own_db.hdel(UNACKED_KEY, tag)
        own_db.zrem(UNACKED_INDEX_KEY, tag)
    own_db.delete(lane)


def test_one_worker_reclaims_at_a_time(own_db: redis.Redis) -> None:
    first = WorkerLease(own_db, list, lease_s=10, heartbeat_s=2)
    second = WorkerLease(own_db, list, lease_s=10, heartbeat_s=2)
    own_db.delete(keys.RECLAIM_LOCK)
    first.reclaim()
    assert own_db.get(keys.RECLAIM_LOCK) == first.worker_id
    second.reclaim()
    assert own_db.get(keys.RECLAIM_LOCK) == first.worker_id
