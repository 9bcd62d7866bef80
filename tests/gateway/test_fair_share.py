"""Fair share across keys, on a real redis-server with the gateway's own accept script and the
worker's own release script: the order jobs start in, weights, priorities above fairness,
`queue_position` telling the truth, cancel, and the drain when fair share is turned off.

A "worker" here does what a Celery worker slot does with kombu's Redis transport: take the next
message from the queue's lanes, most urgent first, from the right end; then (as `tasks.py` does
at a job's start) release the next job in fair order."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio as aioredis

from apps.common.jobs.fairshare import DRAIN_ALL, FairQueues, FairRelease
from apps.common.jobs.positions import QueuePositions
from apps.common.jobs.record import JobRecord, new_job
from apps.common.jobs.store import JobStore
from apps.common.redis import keys
from apps.common.wire.queues import PRIORITY_LANES, lane_name, make_producer
from apps.gateway.enqueue import JobQueue
from apps.gateway.limits import KeyAdmission

QUEUE = "gpu"  # the queue of `flux` jobs


@pytest.fixture
def own_db(redis_url: str) -> Iterator[str]:
    # A database of its own: the session stack's workers consume the `gpu` lanes of database 0.
    url = redis_url.rsplit("/", 1)[0] + "/11"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


class Lanes:
    """The gateway's accept and a worker slot's take, over one database."""

    def __init__(self, url: str, ready: int | None) -> None:
        self.url = url
        self.ready = ready
        self.sync = redis.Redis.from_url(url, decode_responses=True)
        self.release = FairRelease(self.sync)

    async def __aenter__(self) -> Lanes:
        self.client = aioredis.Redis.from_url(self.url, decode_responses=True)
        self.producer = make_producer(self.url, visibility_timeout_s=60)
        self.queue = JobQueue(self.client, self.producer, job_ttl_s=600, fair_ready=self.ready)
        self.store = JobStore(self.client, ttl_s=600)
        self.positions = QueuePositions(self.client)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.producer.close()
        await self.client.aclose()
        self.sync.close()

    async def submit(
        self, owner: str, *, priority: int = 5, weight: float = 1.0, cost: float = 1.0
    ) -> JobRecord:
        record = new_job("flux", {"prompt": owner}, owner=owner, priority=priority, cost=cost)
        admission = KeyAdmission(
            owner=owner, rate_per_s=1000.0, burst=1000, max_active=1000, weight=weight
        )
        assert await self.queue.accept(record, keys.owner_tasks_key(owner), admission) is None
        return record

    def take(self) -> str | None:
        """The task id a free worker slot gets next, or None when nothing is on the lanes."""
        for priority in range(PRIORITY_LANES):
            raw = self.sync.rpop(lane_name(QUEUE, priority))
            if raw is not None:
                if self.ready is not None:
                    self.release.release(QUEUE, self.ready)
                return str(json.loads(raw)["headers"]["id"])
        return None

    def take_all(self) -> list[str]:
        started = []
        while (task_id := self.take()) is not None:
            started.append(task_id)
        return started

    async def positions_of(self, records: list[JobRecord]) -> dict[str, int | None]:
        found = {}
        for record in records:
            stored = await self.store.get(record.task_id)
            assert stored is not None
            found[record.task_id] = await self.positions.of(stored)
        return found

    def staged_depth(self) -> int:
        return int(self.sync.llen(keys.fair_depth_key(QUEUE)))

    def waiting_on_lanes(self) -> int:
        return sum(self.sync.llen(lane_name(QUEUE, p)) for p in range(PRIORITY_LANES))


def test_a_key_with_one_job_starts_it_next_to_a_key_with_many_and_positions_say_so(
    own_db: str,
) -> None:
    async def scenario() -> None:
        async with Lanes(own_db, ready=1) as lanes:
            many = [await lanes.submit("key-a") for _ in range(6)]
            few = [await lanes.submit("key-b") for _ in range(2)]
            everyone = many + few
            # Only `ready` jobs wait on the Celery lanes; the rest wait in fair order, counted
            # for autoscalers in the queue's depth list.
            assert lanes.waiting_on_lanes() == 1
            assert lanes.staged_depth() == len(everyone) - 1
            before = await lanes.positions_of(everyone)
            started = lanes.take_all()
            assert lanes.staged_depth() == 0

        assert sorted(started) == sorted(r.task_id for r in everyone)
        # B's two jobs start among the first four, not after A's six (first come, first served).
        assert {r.task_id for r in few} <= set(started[:4])
        # A's own jobs keep their order.
        assert [t for t in started if t in {r.task_id for r in many}] == [r.task_id for r in many]
        # queue_position counted exactly the jobs that started before each one.
        assert before == {task_id: started.index(task_id) for task_id in started}

    asyncio.run(scenario())


def test_first_come_first_served_when_fair_share_is_off(own_db: str) -> None:
    async def scenario() -> None:
        async with Lanes(own_db, ready=None) as lanes:
            records = [await lanes.submit("key-a") for _ in range(3)]
            records += [await lanes.submit("key-b") for _ in range(2)]
            before = await lanes.positions_of(records)
            started = lanes.take_all()
        assert started == [r.task_id for r in records]
        assert before == {r.task_id: i for i, r in enumerate(records)}

    asyncio.run(scenario())


def test_weights_share_the_lane_in_proportion(own_db: str) -> None:
    async def scenario() -> None:
        async with Lanes(own_db, ready=1) as lanes:
            heavy = [await lanes.submit("key-a", weight=3.0) for _ in range(8)]
            light = [await lanes.submit("key-b", weight=1.0) for _ in range(8)]
            started = lanes.take_all()
        first_eight = started[:8]
        # Start tags: A at 0, 1/3, 2/3, 1, ...; B at 0, 1, 2, ...: three of A's per one of B's.
        assert sum(t in {r.task_id for r in heavy} for t in first_eight) == 6
        assert sum(t in {r.task_id for r in light} for t in first_eight) == 2

    asyncio.run(scenario())


def test_a_key_pays_for_a_costly_job_with_its_next_turns(own_db: str) -> None:
    async def scenario() -> None:
        async with Lanes(own_db, ready=1) as lanes:
            big = await lanes.submit("key-a", cost=50.0)
            small_a = [await lanes.submit("key-a", cost=1.0) for _ in range(3)]
            small_b = [await lanes.submit("key-b", cost=1.0) for _ in range(5)]
            started = lanes.take_all()
        # A's big job started first (alone on the lanes); its next jobs are tagged 50 units later,
        # so all five of B's start before any of A's small ones.
        assert started[0] == big.task_id
        assert set(started[1:6]) == {r.task_id for r in small_b}
        assert started[6:] == [r.task_id for r in small_a]

    asyncio.run(scenario())


def test_priority_wins_over_fairness(own_db: str) -> None:
    async def scenario() -> None:
        async with Lanes(own_db, ready=1) as lanes:
            busy = [await lanes.submit("key-a") for _ in range(3)]
            other = await lanes.submit("key-b")
            urgent = await lanes.submit("key-a", priority=9)
            before = await lanes.positions_of([*busy, other, urgent])
            started = lanes.take_all()
        # The urgent job (of the busier key) starts first, before the one released already.
        assert started[:3] == [urgent.task_id, busy[0].task_id, other.task_id]
        assert before[urgent.task_id] == 0
        assert before == {task_id: started.index(task_id) for task_id in started}

    asyncio.run(scenario())


def test_a_canceled_staged_job_leaves_the_fair_order(own_db: str) -> None:
    async def scenario() -> None:
        async with Lanes(own_db, ready=1) as lanes:
            records = [await lanes.submit("key-a") for _ in range(4)]
            gone = records[1]
            assert await FairQueues(lanes.client).unstage(gone)
            assert not await FairQueues(lanes.client).unstage(gone)
            assert lanes.staged_depth() == 2
            stored = await lanes.store.get(records[3].task_id)
            assert stored is not None and await lanes.positions.of(stored) == 2
            started = lanes.take_all()
        assert started == [records[0].task_id, records[2].task_id, records[3].task_id]

    asyncio.run(scenario())


def test_turning_fair_share_off_drains_what_was_staged(own_db: str) -> None:
    async def scenario() -> None:
        async with Lanes(own_db, ready=1) as lanes:
            records = [await lanes.submit("key-a") for _ in range(5)]
            assert lanes.waiting_on_lanes() == 1
            # What a worker's heartbeat does with FLUXGATE_FAIR_SHARE=false.
            assert lanes.release.release(QUEUE, DRAIN_ALL) == 4
            assert lanes.waiting_on_lanes() == 5
            lanes.ready = None  # a worker that no longer releases
            assert lanes.take_all() == [r.task_id for r in records]

    asyncio.run(scenario())
