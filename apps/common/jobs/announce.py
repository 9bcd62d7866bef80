"""What follows an applied event, wherever it was applied: the two runners of `follow_up`, one
over asyncio Redis (notifier, gateway), one blocking (a worker writing an event itself)."""

from __future__ import annotations

import redis
import redis.asyncio as aioredis
from celery import Celery
from starlette.concurrency import run_in_threadpool

from apps.common.jobs.followup import PROGRESS_WEBHOOK_INTERVAL_MS, follow_up
from apps.common.jobs.metrics import observe_final, observe_started
from apps.common.jobs.record import JobRecord
from apps.common.jobs.store import JobStore, SyncJobStore
from apps.common.jobs.usage import SyncUsageMeter, UsageMeter
from apps.common.redis import keys
from apps.common.service.logging import get_logger
from apps.common.wire.contracts import JobView
from apps.common.wire.queues import send_webhook

log = get_logger(__name__)


def _finished(record: JobRecord) -> None:
    observe_final(record)
    log.info("job finished", task_id=record.task_id, status=record.status.value)


class Announcer:
    """Runs the follow-up of an applied event over an asyncio Redis client."""

    def __init__(self, store: JobStore, client: aioredis.Redis, producer: Celery) -> None:
        self._store = store
        self._redis = client
        self._producer = producer
        self._usage = UsageMeter(client, job_ttl_s=store.ttl_s)

    async def announce(self, record: JobRecord, view: JobView) -> None:
        """Tell WebSocket subscribers (every notifier) and the task's webhook about `view`;
        meter and time the job when this is its final state."""
        plan = follow_up(record, view)
        await self._store.publish(view)
        if plan.observe_started:
            observe_started(record)
        # Metered once: a repeated announce of the same final state counts nothing.
        if plan.final and await self._usage.meter_final(record):
            _finished(record)
        if plan.webhook is None:
            return
        if plan.progress_gated and not await self._redis.set(
            keys.webhook_progress_gate(record.task_id),
            "1",
            nx=True,
            px=PROGRESS_WEBHOOK_INTERVAL_MS,
        ):
            return
        await run_in_threadpool(send_webhook, self._producer, plan.webhook)


class SyncAnnouncer:
    """`Announcer` over a blocking Redis client, for a worker that applied an event itself."""

    def __init__(self, store: SyncJobStore, client: redis.Redis, producer: Celery) -> None:
        self._store = store
        self._redis = client
        self._producer = producer
        self._usage = SyncUsageMeter(client, job_ttl_s=store.ttl_s)

    def announce(self, record: JobRecord, view: JobView) -> None:
        """As `Announcer.announce`, blocking."""
        plan = follow_up(record, view)
        self._store.publish(view)
        if plan.observe_started:
            observe_started(record)
        if plan.final and self._usage.meter_final(record):
            _finished(record)
        if plan.webhook is None:
            return
        if plan.progress_gated and not self._redis.set(
            keys.webhook_progress_gate(record.task_id),
            "1",
            nx=True,
            px=PROGRESS_WEBHOOK_INTERVAL_MS,
        ):
            return
        send_webhook(self._producer, plan.webhook)
