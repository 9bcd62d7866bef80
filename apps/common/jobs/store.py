"""The job-record store: one Redis hash per task, changed only forward by an atomic script."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

from apps.common.jobs.record import CANCEL_BY_CLIENT, JobRecord
from apps.common.redis import keys
from apps.common.wire.contracts import JobView, TaskEvent, TaskStatus

# Applies one event to a job hash in one step. Moves only forward: nothing after a terminal state,
# no state earlier than the current one, no progress lower than the current, no preview of an
# earlier step than the kept one (the record keeps only the latest preview). Returns {-1} for an
# unknown task, {0, hash} when nothing changed and {1, hash} with the new `seq` when it did.
# A job that ends leaves its owner's set of active jobs and their costs (KEYS[2] and KEYS[3],
# keys.active_jobs_key and keys.active_cost_key, given by the caller for a final event of an owned
# job) in the same step.
APPLY_EVENT_LUA = """
local key, active, active_cost = KEYS[1], KEYS[2], KEYS[3]
local event, progress, result, err = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local only_from = ARGV[5]
local done_at = ARGV[6]
local waiting_for = ARGV[7]
local preview = ARGV[8]
local status = redis.call('HGET', key, 'status')
if not status then return {-1} end
-- A caller that decided from what it read earlier (cancel a queued job) applies only from then.
if only_from ~= '' and status ~= only_from then return {0, redis.call('HGETALL', key)} end
local terminal = {succeeded=true, failed=true, canceled=true, expired=true}
local t = redis.call('TIME')
local now = string.format('%d.%06d', t[1], t[2])
local changed = false
if not terminal[status] then
  if event == 'started' then
    if status == 'queued' then
      redis.call('HSET', key, 'status', 'running', 'started_at', now)
      redis.call('HDEL', key, 'waiting_for')
      changed = true
    end
  elseif event == 'waiting' then
    if status == 'queued' and waiting_for ~= ''
       and redis.call('HGET', key, 'waiting_for') ~= waiting_for then
      redis.call('HSET', key, 'waiting_for', waiting_for)
      changed = true
    end
  elseif event == 'progress' and status == 'running' then
    if progress ~= '' then
      local p = tonumber(progress)
      if p > tonumber(redis.call('HGET', key, 'progress') or '0') then
        redis.call('HSET', key, 'progress', math.min(p, 100))
        changed = true
      end
    end
    -- A preview moves forward by its own step: two steps may round to one percent.
    if preview ~= '' then
      local kept = redis.call('HGET', key, 'preview')
      if not kept or cjson.decode(preview).step > cjson.decode(kept).step then
        redis.call('HSET', key, 'preview', preview)
        changed = true
      end
    end
  elseif event == 'expired' then
    if status == 'queued' then
      redis.call('HSET', key, 'status', 'expired', 'finished_at', now)
      if err ~= '' then redis.call('HSET', key, 'error', err) end
      if active then redis.call('ZREM', active, redis.call('HGET', key, 'task_id')) end
      if active_cost then redis.call('ZREM', active_cost, redis.call('HGET', key, 'task_id')) end
      changed = true
    end
  elseif event == 'succeeded' or event == 'failed' or event == 'canceled' then
    redis.call('HSET', key, 'status', event, 'finished_at', now)
    if event ~= 'canceled' and not redis.call('HGET', key, 'started_at') then
      redis.call('HSET', key, 'started_at', now)
    end
    if event == 'succeeded' then redis.call('HSET', key, 'progress', 100) end
    if active then redis.call('ZREM', active, redis.call('HGET', key, 'task_id')) end
    if active_cost then redis.call('ZREM', active_cost, redis.call('HGET', key, 'task_id')) end
    if result ~= '' then redis.call('HSET', key, 'result', result) end
    if err ~= '' then redis.call('HSET', key, 'error', err) end
    if done_at ~= '' then redis.call('HSET', key, 'done_at', done_at) end
    changed = true
  end
end
if changed then redis.call('HINCRBY', key, 'seq', 1) end
return {changed and 1 or 0, redis.call('HGETALL', key)}
"""


@dataclass(frozen=True)
class ApplyOutcome:
    """What applying an event did: `record` is None for an unknown task."""

    applied: bool
    record: JobRecord | None


def _event_args(event: TaskEvent, only_from: TaskStatus | None = None) -> list[str]:
    return [
        event.event.value,
        "" if event.progress is None else str(event.progress),
        "" if event.result is None else event.result.model_dump_json(),
        "" if event.error is None else event.error.model_dump_json(),
        "" if only_from is None else only_from.value,
        "" if event.at is None else f"{event.at:.6f}",
        "" if event.waiting_for is None else event.waiting_for.value,
        "" if event.preview is None else event.preview.model_dump_json(),
    ]


def _outcome(reply: list[Any]) -> ApplyOutcome:
    if reply[0] == -1:
        return ApplyOutcome(applied=False, record=None)
    flat = [item.decode() if isinstance(item, bytes) else item for item in reply[1]]
    record = JobRecord.from_hash(dict(zip(flat[::2], flat[1::2], strict=True)))
    return ApplyOutcome(applied=reply[0] == 1, record=record)


def _active_keys(owner: str) -> list[str]:
    """What a final event of `owner`'s job leaves: its active jobs and their costs."""
    return [keys.active_jobs_key(owner), keys.active_cost_key(owner)]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode(raw: dict[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}


class JobStore:
    """Job records over an asyncio Redis client (gateway, notifier)."""

    def __init__(self, client: aioredis.Redis, *, ttl_s: int) -> None:
        self._redis = client
        self._ttl_s = ttl_s
        self._apply = client.register_script(APPLY_EVENT_LUA)

    @property
    def ttl_s(self) -> int:
        return self._ttl_s

    async def create(self, record: JobRecord) -> None:
        key = keys.job_key(record.task_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=record.to_hash())  # type: ignore[arg-type]
            pipe.expire(key, self._ttl_s)
            await pipe.execute()

    async def get(self, task_id: str) -> JobRecord | None:
        raw = await self._redis.hgetall(keys.job_key(task_id))
        return JobRecord.from_hash(_decode(raw)) if raw else None

    async def apply(self, event: TaskEvent, *, only_from: TaskStatus | None = None) -> ApplyOutcome:
        """Apply `event`; with `only_from`, only if the job is still in that state."""
        script_keys = [keys.job_key(event.task_id)]
        # The owner of a job never changes, so reading it before the script (to name its set of
        # active jobs in KEYS) races with nothing; only a final event needs it.
        if event.event.is_final and (owner := await self._redis.hget(script_keys[0], "owner")):
            script_keys += _active_keys(_text(owner))
        return _outcome(await self._apply(keys=script_keys, args=_event_args(event, only_from)))

    async def publish(self, view: JobView) -> None:
        await self._redis.publish(keys.events_channel(view.task_id), view.model_dump_json())

    async def request_cancel(self, task_id: str, reason: str = CANCEL_BY_CLIENT) -> None:
        """Ask the worker running `task_id` to stop it at its next step."""
        await self._redis.set(keys.cancel_key(task_id), reason, ex=self._ttl_s)


# Opens a run of a job; a run still open from before means that run's process died (OOM,
# SIGKILL, hard time limit): it is counted. Returns the count of such deaths.
OPEN_ATTEMPT_LUA = """
local crashes = tonumber(redis.call('HGET', KEYS[1], 'crashes') or '0')
if redis.call('HGET', KEYS[1], 'open') == '1' then
  crashes = crashes + 1
  redis.call('HSET', KEYS[1], 'crashes', crashes)
end
redis.call('HSET', KEYS[1], 'open', '1')
redis.call('EXPIRE', KEYS[1], ARGV[1])
return crashes
"""


@dataclass(frozen=True)
class OpenedRun:
    """What a worker reads as it starts a delivery of a job, in one round trip."""

    # How many earlier runs of the job died without finishing (their process was killed).
    crashes: int
    record: JobRecord | None
    # Why the job must stop (`client` or `deadline`), or None.
    cancel_reason: str | None


class SyncJobStore:
    """Job records over a blocking Redis client (Celery workers)."""

    def __init__(self, client: redis.Redis, *, ttl_s: int) -> None:
        self._redis = client
        self._ttl_s = ttl_s
        self._apply = client.register_script(APPLY_EVENT_LUA)
        self._open_attempt = client.register_script(OPEN_ATTEMPT_LUA)

    @property
    def ttl_s(self) -> int:
        return self._ttl_s

    def open_run(self, task_id: str) -> OpenedRun:
        """Start a run of the job: count it open, read its record and whether it must stop."""
        pipe = self._redis.pipeline(transaction=False)
        self._open_attempt(keys=[keys.attempt_key(task_id)], args=[self._ttl_s], client=pipe)
        pipe.hgetall(keys.job_key(task_id))
        pipe.get(keys.cancel_key(task_id))
        crashes, raw, reason = pipe.execute()
        return OpenedRun(
            crashes=int(crashes),
            record=JobRecord.from_hash(_decode(raw)) if raw else None,
            cancel_reason=_text(reason) if reason is not None else None,
        )

    def close_attempt(self, task_id: str) -> None:
        """The run ended on its own terms (success, failure, retry, stop)."""
        self._redis.hset(keys.attempt_key(task_id), "open", "0")

    def get(self, task_id: str) -> JobRecord | None:
        raw = self._redis.hgetall(keys.job_key(task_id))
        return JobRecord.from_hash(_decode(raw)) if raw else None

    def apply(self, event: TaskEvent) -> ApplyOutcome:
        script_keys = [keys.job_key(event.task_id)]
        if event.event.is_final and (owner := self._redis.hget(script_keys[0], "owner")):
            script_keys += _active_keys(_text(owner))
        return _outcome(self._apply(keys=script_keys, args=_event_args(event)))

    def publish(self, view: JobView) -> None:
        self._redis.publish(keys.events_channel(view.task_id), view.model_dump_json())

    def cancel_reason(self, task_id: str) -> str | None:
        """Why the job must stop (`client` or `deadline`), or None to carry on."""
        reason = self._redis.get(keys.cancel_key(task_id))
        return reason.decode() if isinstance(reason, bytes) else reason
