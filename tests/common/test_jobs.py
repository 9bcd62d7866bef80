"""The job-record store against a real redis-server: atomic seq, forward-only, reruns harmless."""

from __future__ import annotations

import asyncio

import pytest
import redis

from apps.common.jobs.record import JobRecord, new_job
from apps.common.jobs.store import SyncJobStore
from apps.common.jobs.view import job_view
from apps.common.redis import keys
from apps.common.wire.contracts import (
    ErrorInfo,
    EventKind,
    ImageOutput,
    JobPreview,
    JobResult,
    TaskEvent,
    TaskStatus,
)

RESULT = JobResult(
    images=[
        ImageOutput(
            url="http://x/files/a.png", content_type="image/png", width=64, height=64, seed=1
        )
    ],
    timings={"compute_ms": 12.5, "batch_size": 1},
)


@pytest.fixture
def store(redis_client: redis.Redis) -> SyncJobStore:
    return SyncJobStore(redis_client, ttl_s=600)


def created(redis_client: redis.Redis) -> JobRecord:
    record = new_job("flux", {"prompt": "a fox"})
    redis_client.hset(keys.job_key(record.task_id), mapping=record.to_hash())  # type: ignore[arg-type]
    return record


def ev(task_id: str, kind: EventKind, **fields: object) -> TaskEvent:
    return TaskEvent(task_id=task_id, event=kind, **fields)  # type: ignore[arg-type]


def test_events_move_forward_and_number_themselves(
    store: SyncJobStore, redis_client: redis.Redis
) -> None:
    task = created(redis_client).task_id
    steps = [
        ev(task, EventKind.STARTED),
        ev(task, EventKind.PROGRESS, progress=40),
        ev(task, EventKind.SUCCEEDED, result=RESULT),
    ]
    seqs = []
    for step in steps:
        outcome = store.apply(step)
        assert outcome.applied and outcome.record is not None
        seqs.append(outcome.record.seq)
    assert seqs == [1, 2, 3]
    final = store.get(task)
    assert final is not None
    assert final.status is TaskStatus.SUCCEEDED and final.progress == 100
    assert final.result == RESULT
    assert final.started_at is not None and final.finished_at is not None
    assert final.finished_at >= final.started_at >= final.created_at - 1


def test_stale_duplicate_and_backward_events_change_nothing(
    store: SyncJobStore, redis_client: redis.Redis
) -> None:
    task = created(redis_client).task_id
    store.apply(ev(task, EventKind.STARTED))
    store.apply(ev(task, EventKind.PROGRESS, progress=60))
    for stale in (
        ev(task, EventKind.STARTED),
        ev(task, EventKind.PROGRESS, progress=30),
        ev(task, EventKind.PROGRESS, progress=60),
        ev(task, EventKind.EXPIRED),
    ):
        outcome = store.apply(stale)
        assert not outcome.applied
        assert outcome.record is not None and outcome.record.seq == 2
        assert outcome.record.progress == 60


def test_a_rerun_after_the_end_is_harmless(store: SyncJobStore, redis_client: redis.Redis) -> None:
    task = created(redis_client).task_id
    store.apply(ev(task, EventKind.STARTED))
    store.apply(ev(task, EventKind.FAILED, error=ErrorInfo(code="pipeline_error", message="boom")))
    before = store.get(task)
    # A second delivery of the same message runs the job again and reports everything again.
    for again in (
        ev(task, EventKind.STARTED),
        ev(task, EventKind.PROGRESS, progress=99),
        ev(task, EventKind.SUCCEEDED, result=RESULT),
        ev(task, EventKind.CANCELED),
    ):
        assert not store.apply(again).applied
    assert store.get(task) == before
    assert before is not None and before.status is TaskStatus.FAILED
    assert before.error is not None and before.error.code == "pipeline_error"


def test_progress_before_start_is_ignored_and_queued_can_expire(
    store: SyncJobStore, redis_client: redis.Redis
) -> None:
    task = created(redis_client).task_id
    assert not store.apply(ev(task, EventKind.PROGRESS, progress=10)).applied
    outcome = store.apply(ev(task, EventKind.EXPIRED))
    assert outcome.applied and outcome.record is not None
    assert outcome.record.status is TaskStatus.EXPIRED


def test_unknown_task_is_reported_not_created(
    store: SyncJobStore, redis_client: redis.Redis
) -> None:
    outcome = store.apply(ev("no-such-task", EventKind.STARTED))
    assert outcome.record is None and not outcome.applied
    assert not redis_client.exists(keys.job_key("no-such-task"))


def test_concurrent_events_get_distinct_seqs(redis_url: str, redis_client: redis.Redis) -> None:
    from redis.asyncio import Redis as AsyncRedis

    from apps.common.jobs.store import JobStore

    task = created(redis_client).task_id
    SyncJobStore(redis_client, ttl_s=600).apply(ev(task, EventKind.STARTED))

    async def race() -> list[int]:
        client = AsyncRedis.from_url(redis_url)
        store = JobStore(client, ttl_s=600)
        outcomes = await asyncio.gather(
            *(store.apply(ev(task, EventKind.PROGRESS, progress=p)) for p in range(1, 51))
        )
        await client.aclose()
        return [o.record.seq for o in outcomes if o.applied and o.record is not None]

    seqs = asyncio.run(race())
    assert len(seqs) == len(set(seqs))
    final = SyncJobStore(redis_client, ttl_s=600).get(task)
    assert final is not None and final.progress == 50 and final.seq == 1 + len(seqs)


def preview(step: int, total: int = 8) -> JobPreview:
    return JobPreview(
        url=f"http://x/files/t/p{step}.webp",
        content_type="image/webp",
        step=step,
        total=total,
        width=32,
        height=32,
    )


def test_the_latest_preview_is_kept_by_its_step_and_shown_only_while_running(
    store: SyncJobStore, redis_client: redis.Redis
) -> None:
    task = created(redis_client).task_id
    store.apply(ev(task, EventKind.STARTED))
    first = store.apply(ev(task, EventKind.PROGRESS, progress=25, preview=preview(2)))
    assert first.applied and first.record is not None
    assert first.record.preview == preview(2) and first.record.progress == 25
    # Two steps may round to one percent: a later step's preview is news on its own.
    same_percent = store.apply(ev(task, EventKind.PROGRESS, progress=25, preview=preview(3)))
    assert same_percent.applied and same_percent.record is not None
    assert same_percent.record.preview == preview(3)
    # An event that arrives late (or a rerun's early steps) never takes the preview back.
    late = store.apply(ev(task, EventKind.PROGRESS, progress=50, preview=preview(1)))
    assert late.applied and late.record is not None
    assert late.record.progress == 50 and late.record.preview == preview(3)
    assert not store.apply(ev(task, EventKind.PROGRESS, progress=50, preview=preview(3))).applied
    # Progress without a preview keeps the one there is.
    plain = store.apply(ev(task, EventKind.PROGRESS, progress=60))
    assert plain.record is not None and plain.record.preview == preview(3)
    running = job_view(plain.record, public_base="http://x", public_ws_base="ws://x")
    assert running.preview == preview(3)
    done = store.apply(ev(task, EventKind.SUCCEEDED, result=RESULT)).record
    assert done is not None and done.preview == preview(3)
    final = job_view(done, public_base="http://x", public_ws_base="ws://x")
    assert final.preview is None and final.result == RESULT


def test_a_preview_before_start_or_after_the_end_changes_nothing(
    store: SyncJobStore, redis_client: redis.Redis
) -> None:
    task = created(redis_client).task_id
    assert not store.apply(ev(task, EventKind.PROGRESS, progress=10, preview=preview(1))).applied
    store.apply(ev(task, EventKind.CANCELED))
    assert not store.apply(ev(task, EventKind.PROGRESS, progress=10, preview=preview(1))).applied
    record = store.get(task)
    assert record is not None and record.preview is None


def test_view_renders_the_public_shape(store: SyncJobStore, redis_client: redis.Redis) -> None:
    record = created(redis_client)
    view = job_view(record, public_base="https://api.example", public_ws_base="wss://ws.example")
    assert view.urls.status == f"https://api.example/tasks/{record.task_id}"
    assert view.urls.ws == f"wss://ws.example/ws/tasks/{record.task_id}"
    assert view.created_at is not None and view.created_at.endswith("Z")
    assert view.started_at is None and view.result is None and view.timings.queued_ms is None


def test_cancel_of_a_queued_job_does_not_hit_one_that_just_started(
    redis_url: str, redis_client: redis.Redis
) -> None:
    from redis.asyncio import Redis as AsyncRedis

    from apps.common.jobs.store import JobStore

    task = created(redis_client).task_id
    SyncJobStore(redis_client, ttl_s=600).apply(ev(task, EventKind.STARTED))

    async def cancel_if_queued() -> bool:
        client = AsyncRedis.from_url(redis_url)
        outcome = await JobStore(client, ttl_s=600).apply(
            ev(task, EventKind.CANCELED), only_from=TaskStatus.QUEUED
        )
        await client.aclose()
        return outcome.applied

    assert asyncio.run(cancel_if_queued()) is False
    record = SyncJobStore(redis_client, ttl_s=600).get(task)
    assert record is not None and record.status is TaskStatus.RUNNING
