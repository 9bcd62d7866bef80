"""Accepting a job writes its record, listing, ticket and message in one step, and a key over its
cap gets nothing written (real redis-server, the gateway's own JobQueue). The message itself is
held to Celery's `send_task` in test_celery_wire.py."""

from __future__ import annotations

import asyncio
import json
import uuid

import redis.asyncio as aioredis

from apps.common.jobs.record import new_job
from apps.common.jobs.store import JobStore
from apps.common.redis import keys
from apps.common.wire.queues import celery_priority, lane_name, make_producer
from apps.gateway.enqueue import JobQueue, Refusal
from apps.gateway.limits import KeyAdmission


def test_accept_writes_record_listing_ticket_and_message_or_refuses_over_cap(
    redis_url: str,
) -> None:
    # A database of its own: the session stack's worker consumes the `gpu` lanes of database 0.
    own_db = redis_url.rsplit("/", 1)[0] + "/9"

    async def scenario() -> None:
        client = aioredis.Redis.from_url(own_db, decode_responses=True)
        producer = make_producer(own_db, visibility_timeout_s=60)
        store = JobStore(client, ttl_s=600)
        queue = JobQueue(client, producer, job_ttl_s=600)
        owner = f"key-{uuid.uuid4().hex[:8]}"
        admission = KeyAdmission(owner=owner, rate_per_s=100.0, burst=100, max_active=1)
        listing = keys.owner_tasks_key(owner)
        try:
            first = new_job("flux", {"prompt": "a fox"}, owner=owner, priority=1)
            assert await queue.accept(first, listing, admission) is None
            stored = await store.get(first.task_id)
            assert stored is not None and stored.queue_ticket == first.queue_ticket
            assert await client.zscore(listing, first.task_id) is not None
            lane = lane_name("gpu", celery_priority(1))
            message = json.loads(await client.rpop(lane))  # type: ignore[arg-type]
            assert message["headers"]["id"] == first.task_id
            assert message["headers"]["task"] == "fluxgate.flux"

            second = new_job("flux", {"prompt": "a fox"}, owner=owner, priority=1)
            refusal = await queue.accept(second, listing, admission)
            assert isinstance(refusal, Refusal) and refusal.reason == "cap"
            assert await store.get(second.task_id) is None
            assert await client.llen(lane) == 0
        finally:
            producer.close()
            await client.aclose()

    asyncio.run(scenario())
