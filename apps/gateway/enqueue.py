"""Accepting a job in Redis: its key's limits, its Idempotency-Key, its record, its listing, its
queue ticket and its Celery message, all in one Lua script and one round trip.

A worker never sees a message without its record, and a refused accept leaves nothing behind. The
message is what kombu would write (`apps.common.wire.celery_message`); a test holds it to what
Celery's `send_task` writes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal, cast

import redis.asyncio as aioredis
from celery import Celery
from starlette.concurrency import run_in_threadpool

from apps.common.jobs.fairshare import FAIR_FN, fair_args, queue_keys
from apps.common.jobs.positions import TAKE_TICKET_FN
from apps.common.jobs.record import JobRecord
from apps.common.redis import keys
from apps.common.service.tracing import inject_trace_context
from apps.common.task_types import job_task
from apps.common.wire.celery_message import task_message
from apps.common.wire.contracts import WebhookMessage
from apps.common.wire.queues import REQUEST_ID_MESSAGE_HEADER, celery_priority, send_webhook
from apps.gateway.idempotency import Claim
from apps.gateway.limits import ACTIVE_CAP_FN, BUCKET_FN, KeyAdmission

# KEYS: job hash, owner's task listing, deadlines, the lane's ticket counter, the lane's list,
# the key's rate bucket, its set of active jobs, the Idempotency-Key's binding (unused without
# one) and the key's active jobs by cost (bucket and both sets unused for anonymous submits);
# under fair share, last, the queue's `fairshare.queue_keys`.
# ARGV: task id, created at, TTL, deadline or '', listing cutoff, message, rate ('' = no
# limits), burst, max active, the binding to claim ('' = none), its TTL, max cost ('' = no
# cap), the job's cost, then fair share's: how many jobs may wait released ('' = fair share
# off: straight onto the lane), the job's key ('' = anonymous), its charge (cost / weight), its
# Celery priority; then the job hash's fields and values.
# Returns {1, ticket}, {0, 'rate', wait_s}, {0, 'cap'}, {0, 'cost'} or {2, binding} (the key is
# bound already): only {1, ticket} writes anything (ticket 0: staged for fair share), and a
# bound key is looked at before any rate is spent, so a replay costs nothing and a refused
# submit never holds the key.
ACCEPT_LUA = (
    BUCKET_FN
    + ACTIVE_CAP_FN
    + TAKE_TICKET_FN
    + FAIR_FN
    + """
if ARGV[10] ~= '' then
  local bound = redis.call('GET', KEYS[8])
  if bound then return {2, bound} end
end
if ARGV[7] ~= '' then
  local room, full = has_room(KEYS[7], KEYS[9], tonumber(ARGV[9]), tonumber(ARGV[12]),
                             tonumber(ARGV[13]), tonumber(ARGV[2]), tonumber(ARGV[3]))
  if not room then return {0, full} end
  local allowed, wait = take_token(KEYS[6], tonumber(ARGV[7]), tonumber(ARGV[8]))
  if allowed == 0 then return {0, 'rate', string.format('%.3f', wait)} end
  start_job(KEYS[7], KEYS[9], ARGV[1], ARGV[13], tonumber(ARGV[2]), tonumber(ARGV[3]))
end
if ARGV[10] ~= '' then redis.call('SET', KEYS[8], ARGV[10], 'EX', ARGV[11]) end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[3])
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1]) end
redis.call('HSET', KEYS[1], unpack(ARGV, 18))
if ARGV[14] == '' then
  local ticket = take_ticket(KEYS[4], KEYS[1])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('LPUSH', KEYS[5], ARGV[6])
  return {1, ticket}
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
local base = #KEYS - PER_LANE * LANES
stage(base, tonumber(ARGV[17]), ARGV[1], ARGV[15], tonumber(ARGV[16]), ARGV[6])
release(base, tonumber(ARGV[14]))
return {1, 0}
"""
)


RefusalReason = Literal["rate", "cap", "cost"]


@dataclass(frozen=True)
class Refusal:
    """Why a key's job was not accepted: `rate` (retry after `wait_s`), `cap` (too many jobs)
    or `cost` (their summed cost)."""

    admission: KeyAdmission
    reason: RefusalReason
    wait_s: float = 0.0


@dataclass(frozen=True)
class AlreadyBound:
    """The Idempotency-Key was bound meanwhile (by a concurrent request): its stored binding."""

    binding: str


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
        *,
        job_ttl_s: int,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 500,
        fair_ready: int | None = None,
    ) -> None:
        """`fair_ready`: stage jobs for fair share, with that many released ahead of the
        workers (`fairshare.py`); None: first come, first served."""
        self._producer = producer
        self._fair_ready = fair_ready
        self._job_ttl_s = job_ttl_s
        self._wait_replicas = wait_replicas
        self._wait_timeout_ms = wait_timeout_ms
        self._accept = client.register_script(ACCEPT_LUA)
        self._redis = client

    async def accept(
        self,
        record: JobRecord,
        listing_key: str,
        admission: KeyAdmission | None = None,
        claim: Claim | None = None,
    ) -> Refusal | AlreadyBound | None:
        """Check the key's limits, claim the Idempotency-Key, write the job and queue it (None);
        or write nothing and say why. Raises (RedisError) with nothing queued."""
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
        fair: list[Any] = ["", "", "", ""]
        fair_keys: tuple[str, ...] = ()
        if self._fair_ready is not None:
            weight = admission.weight if admission else 1.0
            owner = admission.owner if admission else None
            fair = [
                self._fair_ready,
                *fair_args(owner, record.cost, weight),
                celery_priority(record.priority),
            ]
            fair_keys = queue_keys(queue)
        reply, acked = await self._run_accept(
            keys=[
                keys.job_key(record.task_id),
                listing_key,
                keys.DEADLINES,
                keys.queue_ticket_key(lane),
                lane,
                admission.bucket_key if admission else keys.rate_bucket_key(""),
                admission.active_key if admission else keys.active_jobs_key(""),
                claim.redis_key if claim else keys.idempotency_key("", ""),
                admission.cost_key if admission else keys.active_cost_key(""),
                *fair_keys,
            ],
            args=[
                record.task_id,
                record.created_at,
                self._job_ttl_s,
                "" if record.deadline_at is None else record.deadline_at,
                time.time() - self._job_ttl_s,
                message,
                admission.rate_per_s if admission else "",
                admission.burst if admission else "",
                admission.max_active if admission else "",
                claim.binding if claim else "",
                claim.ttl_s if claim else "",
                "" if admission is None or admission.max_cost is None else admission.max_cost,
                # A record made without a cost (none before costs were kept) counts as free.
                record.cost or 0,
                *fair,
                *fields,
            ],
        )
        verdict = int(reply[0])
        if verdict == 2:
            return AlreadyBound(_text(reply[1]))
        if verdict == 0 and admission is not None:
            wait = float(reply[2]) if len(reply) > 2 else 0.0
            return Refusal(admission, cast(RefusalReason, _text(reply[1])), wait)
        # A staged job has no ticket yet: it takes one when it is released.
        record.queue_ticket = int(reply[1]) or None
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


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
