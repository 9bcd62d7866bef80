"""Identical requests run once: the one rule for a job the gateway gave a fingerprint
(`JobRecord.dedupe`, for an explicit seed on a deterministic type; `gateway/fingerprint.py`),
applied each time a worker picks the job up.

1. **Answered.** The fingerprint's stored result exists, and the job opted in (`cache: true`) or
   was submitted before that result was written (the two were in flight together): the job
   succeeds at once with that result, marked `cached`, `compute_ms` 0 (usage charges it no
   compute). Its images are copied under its own names: each job's files then live as long as its
   own record, whereas the other job's are swept by their age (and presigned URLs expire).
2. **Leads.** Else it claims the fingerprint's run (`keys.dedupe_running_key`: its task id, for at
   most the job time limit) and runs; its success stores the result (`keys.dedupe_done_key`, kept
   no longer than its own record). The claim is let go when the run ends in any way but a
   hand-back (the job is still the one running it; its next pickup renews the claim).
3. **Follows.** Else another job runs it: this one says it waits (`identical_job`), looks for the
   result for one capacity slice, then goes back to the head of its queue as a job waiting for a
   model server does, so no worker slot is held for long. Once the running job has ended without
   a result (failed, canceled, expired, its record gone) its claim is taken over: this job runs.

"Submitted before the result was written" compares the gateway's clock (the job's `created_at`)
with Redis's (the result's `written_at`): a request that arrives within the clocks' skew after
the result may be answered by it without asking.

A crash loses nothing: a killed leader's rerun finds its claim still its own and keeps it (or,
when its result was stored just before the kill, succeeds with it), while its followers wait on;
a claim whose job never comes back lapses after the job time limit.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import redis
from redis.exceptions import RedisError

from apps.common.jobs.record import JobRecord
from apps.common.redis import keys
from apps.common.service.logging import get_logger
from apps.common.storage.names import OutputStore
from apps.common.wire.contracts import (
    EventKind,
    ImageOutput,
    JobResult,
    OutputFormat,
    TaskEvent,
    WaitReason,
)
from apps.worker.capacity import HandBack

if TYPE_CHECKING:
    from apps.worker.run_job import JobDeps

log = get_logger(__name__)

# How often a waiting job looks again for the running one's result.
POLL_S = 0.2

# What a picked-up job with a fingerprint does, decided in one step so that no result stored and
# no claim let go between two reads is missed. KEYS: the fingerprint's result, its claim, the
# job's record. ARGV: task id, '1' for `cache`, the job's created time, the claim's life in ms.
# Returns {'ended'}, {'own', result}, {'answered', result, task id}, {'lead'} or
# {'follow', task id}; `answered` marks the job `cached` and `lead` clears that mark, with it.
DECIDE_LUA = """
local status = redis.call('HGET', KEYS[3], 'status')
if status ~= 'queued' and status ~= 'running' then return {'ended'} end
local done = redis.call('HMGET', KEYS[1], 'task_id', 'written_at', 'result')
if done[1] then
  if done[1] == ARGV[1] then return {'own', done[3]} end
  if ARGV[2] == '1' or tonumber(ARGV[3]) < tonumber(done[2]) then
    redis.call('HSET', KEYS[3], 'cached', 'True')
    return {'answered', done[3], done[1]}
  end
end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return {'follow', holder} end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[4])
redis.call('HDEL', KEYS[3], 'cached')
return {'lead'}
"""

# The leader's result, written (Redis's clock) to live no longer than the leader's record (KEYS[2];
# ARGV[3] ms when it has no expiry). Returns 0 when that record is gone.
STORE_LUA = """
local left = redis.call('PTTL', KEYS[2])
if left == -2 then return 0 end
if left < 0 then left = tonumber(ARGV[3]) end
local t = redis.call('TIME')
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'task_id', ARGV[1],
           'written_at', string.format('%d.%06d', t[1], t[2]), 'result', ARGV[2])
redis.call('PEXPIRE', KEYS[1], left)
return 1
"""

# Deletes KEYS[1] only while it still names ARGV[1] (in field ARGV[2] of a hash, or as a string):
# a claim or a result that another job has replaced meanwhile is left alone.
FORGET_LUA = """
local value
if ARGV[2] ~= '' then value = redis.call('HGET', KEYS[1], ARGV[2])
else value = redis.call('GET', KEYS[1]) end
if value == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Decision(StrEnum):
    ENDED = "ended"  # the job already ended: nothing to do
    OWN = "own"  # its own result was stored by an earlier run of it: report it
    ANSWERED = "answered"  # an identical job's result answers it
    LEAD = "lead"  # it runs
    FOLLOW = "follow"  # another job runs it


@dataclass(frozen=True)
class Found:
    decision: Decision
    result: JobResult | None = None
    # The job whose result answers it (`answered`), or which runs it (`follow`).
    other: str | None = None


class IdenticalJobs:
    """The Redis side of the rule: per fingerprint, the stored result and the running job."""

    def __init__(self, client: redis.Redis, *, claim_s: float, record_ttl_s: int) -> None:
        self._claim_ms = int(claim_s * 1000)
        self._record_ttl_ms = record_ttl_s * 1000
        self._decide = client.register_script(DECIDE_LUA)
        self._store = client.register_script(STORE_LUA)
        self._forget = client.register_script(FORGET_LUA)

    def decide(self, record: JobRecord, fingerprint: str) -> Found:
        reply = self._decide(
            keys=[
                keys.dedupe_done_key(fingerprint),
                keys.dedupe_running_key(fingerprint),
                keys.job_key(record.task_id),
            ],
            args=[
                record.task_id,
                "1" if record.cache else "0",
                f"{record.created_at:.6f}",
                self._claim_ms,
            ],
        )
        items = [item.decode() if isinstance(item, bytes) else str(item) for item in reply]
        decision = Decision(items[0])
        if decision in (Decision.OWN, Decision.ANSWERED):
            other = items[2] if decision is Decision.ANSWERED else None
            return Found(decision, JobResult.model_validate_json(items[1]), other)
        return Found(decision, other=items[1] if decision is Decision.FOLLOW else None)

    def store_result(self, record: JobRecord, fingerprint: str, result: JobResult) -> None:
        """Keep the leader's result for identical jobs (those in flight, and `cache: true`)."""
        self._store(
            keys=[keys.dedupe_done_key(fingerprint), keys.job_key(record.task_id)],
            args=[record.task_id, result.model_dump_json(), self._record_ttl_ms],
        )

    def let_go(self, fingerprint: str, task_id: str) -> None:
        """End `task_id`'s claim on the fingerprint's run, if it still holds it."""
        self._forget(keys=[keys.dedupe_running_key(fingerprint)], args=[task_id, ""])

    def forget_result(self, fingerprint: str, task_id: str) -> None:
        """Drop the stored result, if it is still `task_id`'s (its files are gone)."""
        self._forget(keys=[keys.dedupe_done_key(fingerprint)], args=[task_id, "task_id"])


def share_or_run(record: JobRecord, deps: JobDeps, run: Callable[[], None]) -> None:
    """Answer `record`'s job from an identical job's result, or `run` it as the one that runs
    it, or wait for the one running it (the module's rule). Raises `HandBack`."""
    fingerprint, identical = record.dedupe, deps.identical
    if fingerprint is None or identical is None:
        run()
        return
    task_id = record.task_id
    slice_end = time.monotonic() + deps.settings.worker_capacity_slice_s
    said_waiting = record.waiting_for is WaitReason.IDENTICAL_JOB
    while True:
        found = identical.decide(record, fingerprint)
        if found.decision is Decision.ENDED:
            return
        if found.decision is Decision.OWN:
            assert found.result is not None
            log.info("job's own stored result reported", task_id=task_id)
            deps.events.send(
                TaskEvent(task_id=task_id, event=EventKind.SUCCEEDED, result=found.result)
            )
            return
        if found.decision is Decision.ANSWERED:
            assert found.result is not None and found.other is not None
            if _answer(task_id, found.result, found.other, deps):
                return
            identical.forget_result(fingerprint, found.other)
            continue
        if found.decision is Decision.LEAD:
            _lead(fingerprint, task_id, identical, run)
            return
        assert found.other is not None
        running = deps.store.get(found.other)
        if running is None or running.status.is_terminal:
            # It ended without a result for this job (failed, canceled, expired, gone).
            log.info(
                "identical job ended without a result; taking over",
                task_id=task_id,
                other=found.other,
            )
            identical.let_go(fingerprint, found.other)
            continue
        if not said_waiting:
            log.info("job waits for an identical job", task_id=task_id, other=found.other)
            deps.events.send(
                TaskEvent(
                    task_id=task_id, event=EventKind.WAITING, waiting_for=WaitReason.IDENTICAL_JOB
                )
            )
            said_waiting = True
        if time.monotonic() >= slice_end:
            raise HandBack
        time.sleep(POLL_S)


def _lead(
    fingerprint: str, task_id: str, identical: IdenticalJobs, run: Callable[[], None]
) -> None:
    try:
        run()
    except HandBack:
        raise  # still the job running it: the next pickup renews the claim
    except BaseException:
        _let_go(identical, fingerprint, task_id)
        raise
    _let_go(identical, fingerprint, task_id)


def _let_go(identical: IdenticalJobs, fingerprint: str, task_id: str) -> None:
    try:
        identical.let_go(fingerprint, task_id)
    except RedisError as exc:
        # The claim lapses by itself within the job time limit; the job's own end matters more.
        log.warning("claim on an identical run not let go", task_id=task_id, error=repr(exc))


def _answer(task_id: str, result: JobResult, other: str, deps: JobDeps) -> bool:
    """Succeed with a copy of `other`'s result; False when its files are gone."""
    try:
        copied = copy_result(result, task_id, deps.outputs)
    except FileNotFoundError:
        log.warning(
            "identical job's outputs are gone; not answered by it", task_id=task_id, other=other
        )
        return False
    log.info("job answered by an identical job", task_id=task_id, other=other)
    deps.events.send(TaskEvent(task_id=task_id, event=EventKind.SUCCEEDED, result=copied))
    return True


def copy_result(result: JobResult, task_id: str, outputs: OutputStore) -> JobResult:
    """`result` as `task_id`'s own: every image in it (`images`, and images among the type's own
    result keys) copied under that task's names, and no compute."""
    counter = itertools.count()

    def copy(image: ImageOutput) -> ImageOutput:
        fmt = OutputFormat.of_content_type(image.content_type)
        url = outputs.put(
            task_id,
            next(counter),
            outputs.read_output(image.url),
            extension="bin" if fmt is None else fmt.extension,
        )
        return image.model_copy(update={"url": url})

    def copy_in(value: Any) -> Any:
        if isinstance(value, dict):
            if {"url", "content_type", "width", "height"} <= value.keys():
                return copy(ImageOutput.model_validate(value)).model_dump()
            return {k: copy_in(v) for k, v in value.items()}
        if isinstance(value, list):
            return [copy_in(v) for v in value]
        return value

    images = [copy(image) for image in result.images]
    extra = copy_in(result.model_extra or {})
    return JobResult(images=images, timings={**result.timings, "compute_ms": 0.0}, **extra)


def store_success(record: JobRecord, result: JobResult, deps: JobDeps) -> None:
    """Keep a job's result for the identical jobs, when it has a fingerprint; never fails it."""
    if record.dedupe is None or deps.identical is None:
        return
    try:
        deps.identical.store_result(record, record.dedupe, result)
    except RedisError as exc:
        # Sharing saves work; the job's own success must not hang on it.
        log.warning("result not kept for identical jobs", task_id=record.task_id, error=repr(exc))
