"""What follows an applied event: the pure decision, its async and blocking runners, and the
worker's fallback that runs it when the notifier is down (real redis-server, no HTTP servers)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from apps.common.jobs.announce import Announcer, SyncAnnouncer
from apps.common.jobs.followup import follow_up
from apps.common.jobs.record import JobRecord, new_job
from apps.common.jobs.store import JobStore, SyncJobStore
from apps.common.jobs.usage import utc_day
from apps.common.jobs.view import JobViews
from apps.common.redis import keys
from apps.common.wire.contracts import (
    EventKind,
    ImageOutput,
    JobPreview,
    JobResult,
    TaskEvent,
    TaskStatus,
)
from apps.common.wire.queues import QUEUE_WEBHOOKS, make_producer
from apps.worker.event_sender import EventSender
from apps.worker.settings import WorkerSettings
from devtools.procs import poll_until

VIEWS = JobViews(public_base="https://api.example", public_ws_base="wss://ws.example")
HOOK = "https://hooks.example/in"
RESULT = JobResult(
    images=[
        ImageOutput(
            url="http://x/files/a.png", content_type="image/png", width=64, height=64, seed=1
        )
    ],
    timings={"compute_ms": 400.0, "batch_size": 2},
)


def job(*events: str, status: TaskStatus = TaskStatus.QUEUED) -> JobRecord:
    webhook = {"url": HOOK, "events": sorted({*events, "completed"})} if events else None
    record = new_job("flux", {"prompt": "a fox"}, owner=f"key-{uuid.uuid4().hex[:8]}")
    record.webhook = webhook
    record.status = status
    return record


# --- the decision -------------------------------------------------------------------------------


def test_a_start_observes_the_queue_wait_and_is_sent_only_when_asked_for() -> None:
    record = job(status=TaskStatus.RUNNING)
    record.started_at = time.time()
    plan = follow_up(record, VIEWS.render(record, EventKind.STARTED))
    assert plan.observe_started and not plan.final and plan.webhook is None

    subscribed = job("started", status=TaskStatus.RUNNING)
    plan = follow_up(subscribed, VIEWS.render(subscribed, EventKind.STARTED))
    assert plan.webhook is not None and not plan.progress_gated
    assert json.loads(plan.webhook.body)["type"] == "task.started"


def test_progress_is_sent_gated_and_only_to_a_subscriber() -> None:
    for events, wanted in (((), False), (("completed",), False), (("progress",), True)):
        record = job(*events, status=TaskStatus.RUNNING)
        plan = follow_up(record, VIEWS.render(record, EventKind.PROGRESS))
        assert (plan.webhook is not None) is wanted
        assert plan.progress_gated is wanted
        assert not plan.observe_started and not plan.final


def test_a_progress_webhook_carries_the_preview_and_the_final_one_does_not() -> None:
    record = job("progress", status=TaskStatus.RUNNING)
    record.preview = JobPreview(
        url="http://x/files/t/p.webp",
        content_type="image/webp",
        step=3,
        total=8,
        width=32,
        height=32,
    )
    plan = follow_up(record, VIEWS.render(record, EventKind.PROGRESS))
    assert plan.webhook is not None
    assert json.loads(plan.webhook.body)["data"]["preview"] == record.preview.model_dump()
    record.status, record.result = TaskStatus.SUCCEEDED, RESULT
    final = follow_up(record, VIEWS.render(record, EventKind.SUCCEEDED))
    assert final.webhook is not None
    assert json.loads(final.webhook.body)["data"]["preview"] is None


def test_a_final_state_is_final_only_as_the_records_own() -> None:
    for kind in (EventKind.SUCCEEDED, EventKind.FAILED, EventKind.CANCELED, EventKind.EXPIRED):
        record = job("completed", status=TaskStatus(kind.value))
        plan = follow_up(record, VIEWS.render(record, kind))
        assert plan.final and not plan.observe_started and not plan.progress_gated
        assert plan.webhook is not None, "terminal events always go to a webhook"
        assert plan.webhook.message_id == f"msg_{record.task_id}_{record.seq}"
    # A canceled event that lost the race to `succeeded`, a snapshot, a plain read: not final.
    record = job("completed", status=TaskStatus.SUCCEEDED)
    for event in (EventKind.CANCELED, "snapshot", None):
        plan = follow_up(record, VIEWS.render(record, event))
        assert not plan.final
    assert follow_up(record, VIEWS.render(record, "snapshot")).webhook is None


def test_waiting_never_makes_a_webhook() -> None:
    record = job("started", "progress")
    plan = follow_up(record, VIEWS.render(record, EventKind.WAITING))
    assert plan.webhook is None and not plan.final and not plan.observe_started


# --- the runners --------------------------------------------------------------------------------


@pytest.fixture
def own_db(redis_url: str) -> str:
    # A database of its own: the session stack's worker consumes the `webhooks` queue of db 0.
    return redis_url.rsplit("/", 1)[0] + "/6"


@pytest.fixture
def client(own_db: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(own_db, decode_responses=True)
    yield client
    client.close()


def create(client: redis.Redis, record: JobRecord) -> None:
    client.hset(keys.job_key(record.task_id), mapping=record.to_hash())  # type: ignore[arg-type]


def queued_webhooks(client: redis.Redis, task_id: str) -> list[dict[str, Any]]:
    """The webhook messages waiting in the `webhooks` queue for `task_id`, oldest first."""
    found = []
    for raw in reversed(client.lrange(QUEUE_WEBHOOKS, 0, -1)):  # type: ignore[arg-type]
        args = json.loads(base64.b64decode(json.loads(raw)["body"]))[0]
        if args[0]["task_id"] == task_id:
            found.append(args[0])
    return found


def published(pubsub: Any, count: int) -> list[dict[str, Any]]:
    views: list[dict[str, Any]] = []

    def more() -> bool:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None:
            views.append(json.loads(message["data"]))
        return len(views) >= count

    poll_until(more, timeout=5, what=f"{count} published views")
    return views


def metered(client: redis.Redis, record: JobRecord) -> str | None:
    day = utc_day(record.finished_at or record.created_at)
    return client.hget(keys.usage_key(str(record.owner), day), "flux:jobs")  # type: ignore[return-value]


def queued_seconds_count() -> float:
    sample = REGISTRY.get_sample_value("fluxgate_job_queued_seconds_count", {"type": "flux"})
    return sample or 0.0


def scenario(record: JobRecord) -> list[TaskEvent]:
    task_id = record.task_id
    return [
        TaskEvent(task_id=task_id, event=EventKind.STARTED),
        TaskEvent(task_id=task_id, event=EventKind.PROGRESS, progress=10),
        TaskEvent(task_id=task_id, event=EventKind.PROGRESS, progress=20),
        TaskEvent(task_id=task_id, event=EventKind.SUCCEEDED, result=RESULT),
    ]


def run_sync(own_db: str, client: redis.Redis, record: JobRecord) -> list[int]:
    """Apply and announce each event as the notifier's ingest does, then the final one again;
    the `seq` of each announced view."""
    producer = make_producer(own_db, visibility_timeout_s=60)
    store = SyncJobStore(client, ttl_s=600)
    announcer = SyncAnnouncer(store, client, producer)
    seqs = []
    try:
        for event in [*scenario(record), scenario(record)[-1]]:
            outcome = store.apply(event)
            assert outcome.record is not None
            announcer.announce(outcome.record, VIEWS.render(outcome.record, event.event))
            seqs.append(outcome.record.seq)
    finally:
        producer.close()
    return seqs


def run_async(own_db: str, client: redis.Redis, record: JobRecord) -> list[int]:
    """`run_sync` through `Announcer` over an asyncio client."""

    async def run() -> list[int]:
        producer = make_producer(own_db, visibility_timeout_s=60)
        aclient = aioredis.Redis.from_url(own_db, decode_responses=True)
        store = JobStore(aclient, ttl_s=600)
        announcer = Announcer(store, aclient, producer)
        seqs = []
        try:
            for event in [*scenario(record), scenario(record)[-1]]:
                outcome = await store.apply(event)
                assert outcome.record is not None
                await announcer.announce(outcome.record, VIEWS.render(outcome.record, event.event))
                seqs.append(outcome.record.seq)
        finally:
            producer.close()
            await aclient.aclose()
        return seqs

    return asyncio.run(run())


@pytest.mark.parametrize("run", [run_sync, run_async], ids=["sync", "async"])
def test_both_runners_publish_gate_progress_and_meter_once(
    run: Any, own_db: str, client: redis.Redis
) -> None:
    record = job("started", "progress")
    create(client, record)
    pubsub = client.pubsub()
    pubsub.subscribe(keys.events_channel(record.task_id))
    started = queued_seconds_count()
    try:
        seqs = run(own_db, client, record)
        # Every announce publishes, the repeated final one too (subscribers drop its `seq`).
        assert seqs == [1, 2, 3, 4, 4]
        assert [v["seq"] for v in published(pubsub, len(seqs))] == seqs
    finally:
        pubsub.close()
    # The second progress came within the gate's second: one progress webhook, not two; the
    # repeated final announce keeps its message id.
    sent = queued_webhooks(client, record.task_id)
    assert [(json.loads(m["body"])["type"], m["message_id"]) for m in sent] == [
        ("task.started", f"msg_{record.task_id}_1"),
        ("task.progress", f"msg_{record.task_id}_2"),
        ("task.succeeded", f"msg_{record.task_id}_4"),
        ("task.succeeded", f"msg_{record.task_id}_4"),
    ]
    assert client.pttl(keys.webhook_progress_gate(record.task_id)) > 0
    assert queued_seconds_count() == started + 1
    final = SyncJobStore(client, ttl_s=600).get(record.task_id)
    assert final is not None and metered(client, final) == "1"


# --- the worker writes its own events -----------------------------------------------------------


def test_a_worker_follows_up_its_events_as_the_notifier_would(
    own_db: str, client: redis.Redis
) -> None:
    settings = WorkerSettings(worker_event_retry_s=0.2)
    producer = make_producer(own_db, visibility_timeout_s=60)
    store = SyncJobStore(client, ttl_s=600)
    sender = EventSender(settings, store, announcer=SyncAnnouncer(store, client, producer))
    record = job("started")
    create(client, record)
    pubsub = client.pubsub()
    pubsub.subscribe(keys.events_channel(record.task_id))
    started = queued_seconds_count()
    try:
        sender.send(TaskEvent(task_id=record.task_id, event=EventKind.STARTED))
        sender.send(TaskEvent(task_id=record.task_id, event=EventKind.SUCCEEDED, result=RESULT))

        final = store.get(record.task_id)
        assert final is not None and final.status is TaskStatus.SUCCEEDED and final.seq == 2
        views = published(pubsub, 2)
        assert [(v["event"], v["status"]) for v in views] == [
            ("started", "running"),
            ("succeeded", "succeeded"),
        ]
        assert metered(client, final) == "1"
        assert queued_seconds_count() == started + 1
        sent = queued_webhooks(client, record.task_id)
        assert [m["message_id"] for m in sent] == [
            f"msg_{record.task_id}_1",
            f"msg_{record.task_id}_2",
        ]
        last = sent[-1]
        assert (last["url"], last["owner"]) == (HOOK, record.owner)
        body = json.loads(last["body"])
        assert body["type"] == "task.succeeded"
        # The webhook carries the published view, as the notifier's would.
        assert body["data"] == {k: v for k, v in views[-1].items() if k not in ("event", "webhook")}
    finally:
        pubsub.close()
        producer.close()


def test_a_final_event_applied_but_not_followed_up_is_followed_up_by_its_retry(
    own_db: str, client: redis.Redis
) -> None:
    """A worker applied the final event and died before its follow-up: the rerun's send of that
    event changes nothing in the record, yet publishes, meters and queues the webhook."""
    settings = WorkerSettings(worker_event_retry_s=0.2)
    producer = make_producer(own_db, visibility_timeout_s=60)
    store = SyncJobStore(client, ttl_s=600)
    sender = EventSender(settings, store, announcer=SyncAnnouncer(store, client, producer))
    record = job("started")
    create(client, record)
    succeeded = TaskEvent(task_id=record.task_id, event=EventKind.SUCCEEDED, result=RESULT)
    assert store.apply(succeeded).applied  # the first run's apply, with no follow-up
    pubsub = client.pubsub()
    pubsub.subscribe(keys.events_channel(record.task_id))
    try:
        sender.send(succeeded)

        final = store.get(record.task_id)
        assert final is not None and final.seq == 1  # the retry itself changed nothing
        assert [v["event"] for v in published(pubsub, 1)] == ["succeeded"]
        assert metered(client, final) == "1"
        sent = queued_webhooks(client, record.task_id)
        assert [m["message_id"] for m in sent] == [f"msg_{record.task_id}_1"]
    finally:
        pubsub.close()
        producer.close()
