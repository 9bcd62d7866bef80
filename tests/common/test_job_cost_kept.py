"""A job's cost is kept on its record, shown in its view and metered once it ends — charged only
to jobs that started (real redis-server, a database of its own)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from apps.common.jobs.record import JobRecord, new_job
from apps.common.jobs.usage import SyncUsageMeter, TypeUsage, charged_cost, parse_day_hash, utc_day
from apps.common.jobs.view import job_view
from apps.common.redis import keys
from apps.common.wire.contracts import TaskStatus

# Not database 0, where the session stack's services run.
OWN_DB = 12


@pytest.fixture
def own_db(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(f"{redis_url.rsplit('/', 1)[0]}/{OWN_DB}", decode_responses=True)
    yield client
    client.close()


def ended(status: TaskStatus, *, started: bool, owner: str, cost: float | None) -> JobRecord:
    record = new_job("flux", {"prompt": "a fox"}, owner=owner, cost=cost)
    record.status = status
    record.finished_at = time.time()
    record.started_at = record.finished_at - 1 if started else None
    return record


def test_the_cost_goes_from_record_to_hash_to_view_and_old_records_have_none() -> None:
    record = new_job("flux", {"prompt": "a fox"}, cost=117.4405)
    stored = record.to_hash()
    assert stored["cost"] == "117.4405"
    again = JobRecord.from_hash(stored)
    assert again.cost == 117.4405
    view = job_view(again, public_base="http://api", public_ws_base="ws://api")
    assert view.cost == 117.4405
    assert view.model_dump(mode="json")["cost"] == 117.4405
    # A record written before costs were kept has no `cost` field: still readable, cost null.
    del stored["cost"]
    old = JobRecord.from_hash(stored)
    assert old.cost is None
    assert job_view(old, public_base="http://api", public_ws_base="ws://api").cost is None


def test_only_jobs_that_started_are_charged_their_cost(own_db: redis.Redis) -> None:
    owner = f"key-cost-{time.time_ns()}"
    jobs = [
        ended(TaskStatus.SUCCEEDED, started=True, owner=owner, cost=10.5),
        ended(TaskStatus.FAILED, started=True, owner=owner, cost=2.25),
        ended(TaskStatus.CANCELED, started=True, owner=owner, cost=1.0),
        # Never ran: canceled while queued, expired in the queue.
        ended(TaskStatus.CANCELED, started=False, owner=owner, cost=100.0),
        ended(TaskStatus.EXPIRED, started=False, owner=owner, cost=100.0),
        # Accepted before costs were kept.
        ended(TaskStatus.SUCCEEDED, started=True, owner=owner, cost=None),
    ]
    assert [charged_cost(job) for job in jobs] == [10.5, 2.25, 1.0, 0.0, 0.0, 0.0]
    # Answered from an identical job's result: it started and succeeded, but used no GPU.
    answered = ended(TaskStatus.SUCCEEDED, started=True, owner=owner, cost=10.5)
    answered.cached = True
    assert charged_cost(answered) == 0.0
    meter = SyncUsageMeter(own_db, job_ttl_s=600)
    for job in jobs:
        assert meter.meter_final(job) is True
    assert meter.meter_final(jobs[0]) is False  # metered once: a repeat adds nothing
    raw = own_db.hgetall(keys.usage_key(owner, utc_day(time.time())))
    usage = parse_day_hash(raw)["flux"]  # type: ignore[arg-type]
    assert usage.jobs == 6
    assert usage.cost == pytest.approx(13.75)
    assert usage.as_json()["cost"] == 13.75


def test_a_day_metered_before_costs_were_kept_reads_as_cost_zero() -> None:
    usage = parse_day_hash({"flux:jobs": "2", "flux:succeeded": "2", "flux:compute_ms": "300"})
    assert usage["flux"].as_json()["cost"] == 0
    total = TypeUsage()
    total.add(parse_day_hash({"flux:jobs": "1", "flux:cost": "1.23456"})["flux"])
    total.add(usage["flux"])
    assert total.as_json()["cost"] == 1.2346
