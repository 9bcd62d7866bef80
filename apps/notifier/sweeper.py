"""Acts on what is due: expires or stops jobs past their `Cancel-After` deadline, and puts webhook
retries back on the `webhooks` queue. A loop here, not a Celery task: a stuck queue must not hold
up the deadlines of the jobs stuck in it. One notifier replica at a time holds the lease.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import redis.asyncio as aioredis
from celery import Celery
from starlette.concurrency import run_in_threadpool

from apps.common.jobs.announce import Announcer
from apps.common.jobs.fairshare import FairQueues
from apps.common.jobs.record import CANCEL_BY_DEADLINE, DEADLINE_EXCEEDED, JobRecord
from apps.common.jobs.store import JobStore
from apps.common.redis import keys
from apps.common.redis.leases import LEASE_LUA
from apps.common.service.logging import get_logger
from apps.common.wire.contracts import EventKind, TaskEvent, TaskStatus, WebhookMessage
from apps.common.wire.queues import send_webhook
from apps.notifier.events import EventIngest

log = get_logger(__name__)

# Takes the due members of a sorted set and removes them in one step, so no two sweeps share one.
POP_DUE_LUA = """
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #items > 0 then redis.call('ZREM', KEYS[1], unpack(items)) end
return items
"""
BATCH = 200


class Sweeper:
    def __init__(
        self,
        client: aioredis.Redis,
        store: JobStore,
        ingest: EventIngest,
        announcer: Announcer,
        producer: Celery,
        *,
        interval_s: float,
    ) -> None:
        self._redis = client
        self._store = store
        self._ingest = ingest
        self._announcer = announcer
        self._producer = producer
        self._interval_s = interval_s
        self._instance = uuid.uuid4().hex
        self._pop_due = client.register_script(POP_DUE_LUA)
        self._lease = client.register_script(LEASE_LUA)
        self._fair = FairQueues(client)

    async def run_forever(self) -> None:
        lease_ms = int(max(self._interval_s * 5, 2) * 1000)
        while True:
            try:
                if await self._lease(keys=[keys.SWEEPER_LOCK], args=[self._instance, lease_ms]):
                    await self.sweep_once()
            except Exception as exc:  # the loop must outlive any one bad sweep
                log.warning("sweep failed; will retry", error=repr(exc))
            await asyncio.sleep(self._interval_s)

    async def sweep_once(self) -> None:
        now = time.time()
        later = now + self._interval_s
        # Items are taken out before they are handled: one that fails goes back, alone.
        for task_id in await self._pop_due(keys=[keys.DEADLINES], args=[now, BATCH]):
            try:
                await self._deadline_passed(str(task_id))
            except Exception as exc:
                log.warning("deadline not applied; will retry", task_id=task_id, error=repr(exc))
                await self._redis.zadd(keys.DEADLINES, {task_id: later})
        for raw in await self._pop_due(keys=[keys.WEBHOOK_RETRIES], args=[now, BATCH]):
            try:
                message = WebhookMessage.model_validate_json(raw)
            except ValueError:
                log.error("dropping an unreadable webhook retry", raw=str(raw)[:200])
                continue
            try:
                await run_in_threadpool(send_webhook, self._producer, message)
            except Exception as exc:
                log.warning("webhook retry not queued; will retry", error=repr(exc))
                await self._redis.zadd(keys.WEBHOOK_RETRIES, {raw: later})

    async def _deadline_passed(self, task_id: str) -> None:
        record: JobRecord | None = await self._store.get(task_id)
        if record is None or record.status.is_terminal:
            return
        if record.status is TaskStatus.QUEUED:
            event = TaskEvent(task_id=task_id, event=EventKind.EXPIRED, error=DEADLINE_EXCEEDED)
            outcome = await self._store.apply(event)
            if outcome.applied and outcome.record is not None:
                await self._fair.unstage(outcome.record)
                view = self._ingest.views.render(outcome.record, EventKind.EXPIRED)
                await self._announcer.announce(outcome.record, view)
                log.info("job expired before it started", task_id=task_id)
                return
        # Running (or it started just now): the worker stops it at its next step.
        await self._store.request_cancel(task_id, CANCEL_BY_DEADLINE)
        log.info("running job past its deadline; stopping it", task_id=task_id)
