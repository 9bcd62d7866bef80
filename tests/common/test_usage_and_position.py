"""Usage metering counts a job once; queue positions follow kombu's lanes (real redis-server)."""

from __future__ import annotations

import time

import redis

from apps.common.jobs.positions import POSITION_LUA, TAKE_TICKET_LUA, position_keys, ticket_keys
from apps.common.jobs.record import new_job
from apps.common.jobs.usage import (
    SyncUsageMeter,
    compute_share_ms,
    parse_day_hash,
    parse_day_models,
    utc_day,
)
from apps.common.redis import keys
from apps.common.wire.contracts import JobResult, TaskStatus


def test_a_final_state_is_metered_once_with_the_jobs_share_of_its_batch(
    redis_client: redis.Redis,
) -> None:
    meter = SyncUsageMeter(redis_client, job_ttl_s=600)
    record = new_job("flux", {"prompt": "a fox"}, owner=f"key-{time.time_ns()}")
    record.status = TaskStatus.SUCCEEDED
    record.finished_at = time.time()
    record.result = JobResult(images=[], timings={"compute_ms": 400.0, "batch_size": 4})
    assert compute_share_ms(record) == 100.0

    assert meter.meter_final(record) is True
    assert meter.meter_final(record) is False  # a repeated announce counts nothing

    raw = redis_client.hgetall(keys.usage_key(str(record.owner), utc_day(record.finished_at)))
    usage = parse_day_hash(raw)["flux"]  # type: ignore[arg-type]
    assert usage.jobs == 1
    assert usage.by_status == {"succeeded": 1}
    assert abs(usage.compute_seconds - 0.1) < 1e-9
    assert redis_client.sismember(keys.USAGE_OWNERS, str(record.owner))


def test_usage_counts_the_registry_model_a_job_ran_on_beside_its_type(
    redis_client: redis.Redis,
) -> None:
    meter = SyncUsageMeter(redis_client, job_ttl_s=600)
    owner = f"key-{time.time_ns()}"
    jobs = [
        new_job("flux", {"prompt": "a fox", "model": "schnell"}, owner=owner),
        new_job("flux", {"prompt": "a fox", "model": "dev"}, owner=owner),
        new_job("flux", {"prompt": "a fox", "model": "dev"}, owner=owner),
        new_job("upscale", {"image": "store://inputs/x.png"}, owner=owner),  # no model
    ]
    for record in jobs:
        record.status = TaskStatus.SUCCEEDED
        record.finished_at = time.time()
        record.result = JobResult(images=[], timings={"compute_ms": 200.0, "batch_size": 1})
        assert meter.meter_final(record) is True
    raw = redis_client.hgetall(keys.usage_key(owner, utc_day(time.time())))
    by_model = parse_day_models(raw)  # type: ignore[arg-type]
    assert {m: u.jobs for m, u in by_model.items()} == {"schnell": 1, "dev": 2}
    assert abs(by_model["dev"].compute_seconds - 0.4) < 1e-9
    # The model counts stay out of the per-type usage.
    assert {t: u.jobs for t, u in parse_day_hash(raw).items()} == {"flux": 3, "upscale": 1}  # type: ignore[arg-type]


def test_position_counts_higher_lanes_and_the_jobs_ahead_in_its_own(
    redis_client: redis.Redis,
) -> None:
    take = redis_client.register_script(TAKE_TICKET_LUA)
    position = redis_client.register_script(POSITION_LUA)
    queue_ids = f"{time.time_ns()}"
    # Lanes and counters renamed apart, so the running stack's messages don't count.
    jobs = []
    for priority in (5, 5, 5):
        record = new_job("flux", {"prompt": queue_ids}, priority=priority)
        jobs.append(record)
    urgent = new_job("flux", {"prompt": queue_ids}, priority=9)

    def lanes_of(record_keys: list[str]) -> list[str]:
        job = keys.job_key("")
        return [k if k.startswith(job) else f"test-{queue_ids}-{k}" for k in record_keys]

    def enqueue(record: object) -> None:
        ticket = take(keys=lanes_of(ticket_keys(record)))  # type: ignore[arg-type]
        record.queue_ticket = int(ticket)  # type: ignore[attr-defined]
        own_lane = lanes_of(position_keys(record))[-2]  # type: ignore[arg-type]
        redis_client.lpush(own_lane, "message")

    def where(record: object) -> int:
        return int(
            position(
                keys=lanes_of(position_keys(record)),  # type: ignore[arg-type]
                args=[record.queue_ticket],  # type: ignore[attr-defined]
            )
        )

    for record in jobs:
        enqueue(record)
    assert [where(r) for r in jobs] == [0, 1, 2]
    enqueue(urgent)
    assert where(urgent) == 0
    assert [where(r) for r in jobs] == [1, 2, 3]
    # The worker takes the urgent one (lane 0 first), then the oldest of the rest (right end).
    redis_client.rpop(lanes_of(position_keys(urgent))[-2])
    redis_client.rpop(lanes_of(position_keys(jobs[0]))[-2])
    assert [where(r) for r in jobs[1:]] == [0, 1]
