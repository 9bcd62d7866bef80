"""Accepting a job in Redis: its record, its listing, its queue ticket and its Celery message.

By default all four are written by one Lua script in one round trip (`direct`): a worker never
sees a message without its record, and a failed accept leaves nothing behind. The message is
what kombu would write (`apps.common.wire.celery_message`). `FLUXGATE_GATEWAY_PUBLISHER=celery`
publishes with Celery's `send_task` instead, after writing the rest; it is kept as the reference
(a test compares the two) and costs about 2 ms of CPU per submit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis
from celery import Celery
from starlette.concurrency import run_in_threadpool

from apps.common.jobs.positions import TAKE_TICKET_FN, QueuePositions
from apps.common.jobs.record import JobRecord
from apps.common.jobs.store import JobStore
from apps.common.redis import keys
from apps.common.service.tracing import inject_trace_context
from apps.common.wire.celery_message import task_message
from apps.common.wire.contracts import ErrorInfo, EventKind, TaskEvent, WebhookMessage
from apps.common.wire.queues import (
    REQUEST_ID_MESSAGE_HEADER,
    celery_priority,
    job_task,
    send_webhook,
)
from apps.gateway.limits import (
    ACTIVE_CAP_FN,
    ACTIVE_CAP_LUA,
    BUCKET_FN,
    KeyAdmission,
    KeyLimits,
)

Publisher = Literal["direct", "celery"]

# KEYS: job hash, owner's task listing, deadlines, the lane's ticket counter, the lane's list,
# the key's rate bucket and its set of active jobs (both unused for anonymous submits).
# ARGV: task id, created at, TTL, deadline or '', listing cutoff, message, rate ('' = do not
# charge), burst, max active ('' = no cap), then the job hash's fields and values.
# Returns {1, ticket}, {0, 'rate', wait_s} or {0, 'cap'}: a refused job writes nothing.
ACCEPT_LUA = (
    BUCKET_FN
    + ACTIVE_CAP_FN
    + TAKE_TICKET_FN
    + """
if ARGV[7] ~= '' then
  local allowed, wait = take_token(KEYS[6], tonumber(ARGV[7]), tonumber(ARGV[8]))
  if allowed == 0 then return {0, 'rate', string.format('%.3f', wait)} end
end
if ARGV[9] ~= '' then
  if not start_job(KEYS[7], ARGV[1], tonumber(ARGV[9]), tonumber(ARGV[2]), tonumber(ARGV[3]))
  then return {0, 'cap'} end
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[3])
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1]) end
redis.call('HSET', KEYS[1], unpack(ARGV, 10))
local ticket = take_ticket(KEYS[4], KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('LPUSH', KEYS[5], ARGV[6])
return {1, ticket}
"""
)


@dataclass(frozen=True)
class Refusal:
    """Why a key's job was not accepted: `rate` (retry after `wait_s`) or `cap`."""

    reason: Literal["rate", "cap"]
    wait_s: float = 0.0


class NotReplicated(Exception):
    """The job was accepted on the primary, but fewer replicas than asked have it yet."""

    def __init__(self, acked: int, wanted: int) -> None:
        super().__init__(f"{acked} of {wanted} Redis replicas acknowledged the job in time")
        self.acked = acked
        self.wanted = wanted


class JobQueue:
    def __init__(
        self,
        client: aioredis.Redis,
        producer: Celery,
        store: JobStore,
        positions: QueuePositions,
        *,
        job_ttl_s: int,
        publisher: Publisher = "direct",
        wait_replicas: int = 0,
        wait_timeout_ms: int = 500,
    ) -> None:
        self._producer = producer
        self._store = store
        self._positions = positions
        self._job_ttl_s = job_ttl_s
        self._publisher = publisher
        self._wait_replicas = wait_replicas
        self._wait_timeout_ms = wait_timeout_ms
        self._accept = client.register_script(ACCEPT_LUA)
        self._limits = KeyLimits(client)
        self._start_job = client.register_script(ACTIVE_CAP_LUA)
        self._redis = client

    async def accept(
        self, record: JobRecord, listing_key: str, admission: KeyAdmission | None = None
    ) -> Refusal | None:
        """Check the key's limits, write the job and queue it, or refuse it having written
        nothing. Raises (RedisError, kombu errors) with nothing queued."""
        if self._publisher == "celery":
            return await self._accept_with_celery(record, listing_key, admission)
        name, queue = job_task(record.type)
        lane, message = task_message(
            name,
            record.task_id,
            [record.task_id],
            queue=queue,
            api_priority=record.priority,
            headers=self._message_headers(record),
        )
        fields = [item for pair in record.to_hash().items() for item in pair]
        reply, acked = await self._run_accept(
            keys=[
                keys.job_key(record.task_id),
                listing_key,
                keys.DEADLINES,
                keys.queue_ticket_key(lane),
                lane,
                admission.bucket_key if admission else keys.rate_bucket_key(""),
                admission.active_key if admission else keys.active_jobs_key(""),
            ],
            args=[
                record.task_id,
                record.created_at,
                self._job_ttl_s,
                "" if record.deadline_at is None else record.deadline_at,
                time.time() - self._job_ttl_s,
                message,
                admission.rate_per_s if admission and admission.charge_rate else "",
                admission.burst if admission else "",
                admission.max_active if admission else "",
                *fields,
            ],
        )
        if int(reply[0]) == 0:
            reason = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
            wait = float(reply[2]) if len(reply) > 2 else 0.0
            return Refusal("rate" if reason == "rate" else "cap", wait)
        record.queue_ticket = int(reply[1])
        if acked is not None and acked < self._wait_replicas:
            raise NotReplicated(acked, self._wait_replicas)
        return None

    async def _run_accept(self, *, keys: list[str], args: list[Any]) -> tuple[Any, int | None]:
        """The accept script's reply, and with `wait_replicas` how many replicas have it: WAIT
        counts the writes of its own connection, so both go down one connection (a pipeline)."""
        if not self._wait_replicas:
            return await self._accept(keys=keys, args=args), None
        async with self._redis.pipeline(transaction=False) as pipe:
            await self._accept(keys=keys, args=args, client=pipe)
            pipe.wait(self._wait_replicas, self._wait_timeout_ms)
            reply, acked = await pipe.execute()
        return reply, int(acked)

    async def _accept_with_celery(
        self, record: JobRecord, listing_key: str, admission: KeyAdmission | None
    ) -> Refusal | None:
        if admission is not None:
            if admission.charge_rate:
                verdict = await self._limits.take_token(
                    admission.owner, rate_per_s=admission.rate_per_s, burst=admission.burst
                )
                if not verdict.allowed:
                    return Refusal("rate", float(verdict.retry_after_s))
            started = await self._start_job(
                keys=[admission.active_key],
                args=[record.task_id, admission.max_active, record.created_at, self._job_ttl_s],
            )
            if not started:
                return Refusal("cap")
        # Index first: an index entry without its record is skipped by every reader, while a
        # record without its index entries would be a job nobody can list or expire.
        async with self._redis.pipeline(transaction=False) as pipe:
            if record.deadline_at is not None:
                pipe.zadd(keys.DEADLINES, {record.task_id: record.deadline_at})
            pipe.zadd(listing_key, {record.task_id: record.created_at})
            pipe.zremrangebyscore(listing_key, "-inf", time.time() - self._job_ttl_s)
            pipe.expire(listing_key, self._job_ttl_s)
            await pipe.execute()
        await self._store.create(record)
        # The ticket is taken just before the publish: two submits racing in the same lane may
        # swap their positions by one, never more.
        await self._positions.take_ticket(record)
        name, queue = job_task(record.type)
        try:
            await run_in_threadpool(
                self._producer.send_task,
                name,
                args=[record.task_id],
                queue=queue,
                priority=celery_priority(record.priority),
                task_id=record.task_id,
                headers=self._message_headers(record) or None,
            )
        except Exception:
            # The record exists but no message will run it: end it visibly (this also takes
            # it out of its key's active jobs).
            await self._store.apply(
                TaskEvent(
                    task_id=record.task_id,
                    event=EventKind.FAILED,
                    error=ErrorInfo(code="enqueue_failed", message="the job could not be queued"),
                )
            )
            raise
        return None

    @staticmethod
    def _message_headers(record: JobRecord) -> dict[str, Any]:
        headers: dict[str, Any] = {}
        if record.request_id:
            # The worker binds it to its log lines before it even reads the record.
            headers[REQUEST_ID_MESSAGE_HEADER] = record.request_id
        inject_trace_context(headers)
        return headers

    async def redeliver(self, raw_message: str) -> str:
        """Queue a stored webhook message again from its first attempt; returns its id."""
        message = WebhookMessage.model_validate_json(raw_message).model_copy(update={"attempt": 0})
        await run_in_threadpool(send_webhook, self._producer, message)
        return message.message_id
