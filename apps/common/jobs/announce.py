"""What follows an applied event, wherever it was applied: publish the view, queue the webhook."""

from __future__ import annotations

import redis.asyncio as aioredis
from celery import Celery
from starlette.concurrency import run_in_threadpool

from apps.common.jobs.metrics import observe_final, observe_started
from apps.common.jobs.record import JobRecord
from apps.common.jobs.store import JobStore
from apps.common.jobs.usage import UsageMeter
from apps.common.jobs.webhook_plan import plan_webhook
from apps.common.redis import keys
from apps.common.service.logging import get_logger
from apps.common.wire.contracts import EventKind, JobView
from apps.common.wire.queues import send_webhook

log = get_logger(__name__)

PROGRESS_WEBHOOK_INTERVAL_MS = 1000
FINAL_EVENTS = (EventKind.SUCCEEDED, EventKind.FAILED, EventKind.CANCELED, EventKind.EXPIRED)


class Announcer:
    def __init__(self, store: JobStore, client: aioredis.Redis, producer: Celery) -> None:
        self._store = store
        self._redis = client
        self._producer = producer
        self._usage = UsageMeter(client, job_ttl_s=store.ttl_s)

    async def announce(self, record: JobRecord, view: JobView) -> None:
        """Tell WebSocket subscribers (every notifier) and the task's webhook about `view`;
        meter and time the job when this is its final state."""
        await self._store.publish(view)
        observe_started(record, view)
        is_final = record.status.value == view.event and view.event in FINAL_EVENTS
        # Metered once: a repeated announce of the same final state counts nothing.
        if is_final and await self._usage.meter_final(record):
            observe_final(record)
            log.info("job finished", task_id=record.task_id, status=record.status.value)
        message = plan_webhook(record, view)
        if message is None:
            return
        if view.event == EventKind.PROGRESS:
            gate = keys.webhook_progress_gate(record.task_id)
            if not await self._redis.set(gate, "1", nx=True, px=PROGRESS_WEBHOOK_INTERVAL_MS):
                return
        await run_in_threadpool(send_webhook, self._producer, message)
