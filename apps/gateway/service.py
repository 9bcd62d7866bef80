"""What the gateway does with tasks: accept, look up, list, cancel. Routes only map HTTP onto it.

Every lookup is scoped to the caller's key: another key's task is "not found", as is a task that
never existed, so ids cannot be probed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import secrets
import time
from datetime import date
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from apps.common.images import ImageInfo
from apps.common.jobs.announce import Announcer
from apps.common.jobs.fairshare import FairQueues
from apps.common.jobs.positions import QueuePositions
from apps.common.jobs.record import JobRecord, new_job
from apps.common.jobs.store import JobStore
from apps.common.jobs.usage import ANONYMOUS_OWNER, UsageMeter
from apps.common.jobs.view import JobViews
from apps.common.redis import keys
from apps.common.security.apikeys import ApiKey
from apps.common.security.url_guard import AllowList, UnsafeUrl, check_url
from apps.common.service.errors import (
    Conflict,
    IdempotencyInProgress,
    InvalidInput,
    ModelNotConfigured,
    NotFound,
    RateLimited,
    TooManyJobs,
    TooMuchWork,
    Unavailable,
)
from apps.common.service.logging import get_logger
from apps.common.service.request_context import bind_ids, current_ids
from apps.common.storage.names import OutputStore
from apps.common.task_types import task_type
from apps.common.wire.contracts import (
    EventKind,
    JobView,
    TaskEvent,
    TaskStatus,
    WebhookAttempt,
    WebhookInfo,
)
from apps.common.wire.inference import WORKER_ONLY_FLUX_FIELDS
from apps.common.wire.model_choice import choice_at_default
from apps.gateway.enqueue import AlreadyBound, JobQueue, NotReplicated, Refusal
from apps.gateway.fingerprint import request_fingerprint
from apps.gateway.idempotency import TTL_S as IDEMPOTENCY_TTL_S
from apps.gateway.idempotency import Claim, IdempotencyKeys
from apps.gateway.job_cost import price_job
from apps.gateway.job_images import JobImages
from apps.gateway.limits import KeyAdmission, retry_after_s
from apps.gateway.model_choice import with_model
from apps.gateway.settings import GatewaySettings
from apps.gateway.submission import Checked, NewJob, SubmitOptions, Submitted

log = get_logger(__name__)
# A key at its cap of active jobs is told to come back after about this long.
TOO_MANY_JOBS_RETRY_S = 5


def _refused(refusal: Refusal) -> RateLimited:
    owner = refusal.admission.owner
    if refusal.reason == "rate":
        return RateLimited(
            f"rate limit of key {owner} exceeded", retry_after_s=retry_after_s(refusal.wait_s)
        )
    if refusal.reason == "cost":
        return TooMuchWork(
            f"key {owner}'s queued and running jobs would cost more than its max_cost of "
            f"{refusal.admission.max_cost:g} with this one; retry when some have ended",
            retry_after_s=TOO_MANY_JOBS_RETRY_S,
        )
    return TooManyJobs(
        f"key {owner} already has {refusal.admission.max_active} jobs queued or running",
        retry_after_s=TOO_MANY_JOBS_RETRY_S,
    )


def owner_of(caller: ApiKey | None) -> str | None:
    return None if caller is None else caller.id


def scope_of(caller: ApiKey | None) -> str:
    """Whose tasks, Idempotency-Keys and usage a caller sees: its key's, or the anonymous ones."""
    return owner_of(caller) or ANONYMOUS_OWNER


class TaskService:
    def __init__(
        self,
        store: JobStore,
        queue: JobQueue,
        client: aioredis.Redis,
        announcer: Announcer,
        settings: GatewaySettings,
        outputs: OutputStore,
    ) -> None:
        self._store = store
        self._queue = queue
        self._redis = client
        self._announcer = announcer
        self._settings = settings
        self._positions = QueuePositions(client)
        self._fair = FairQueues(client)
        self._usage = UsageMeter(client, job_ttl_s=settings.job_ttl_s)
        self._idempotency = IdempotencyKeys(client)
        self._allow = AllowList.parse(settings.webhook_allow)
        self._inputs = JobImages(outputs, settings, self._allow)
        self.views = JobViews.of(settings)
        self._models = settings.model_registry()

    async def with_base64(self, view: dict[str, Any]) -> dict[str, Any]:
        """A dumped view whose result images carry `base64` (`?include=base64`)."""
        return await self._inputs.with_base64(view)

    async def live_view(self, record: JobRecord) -> JobView:
        """The view with the job's current place in its queue (while queued)."""
        return self.views.render(record, queue_position=await self._positions.of(record))

    async def owner_view(self, record: JobRecord) -> JobView:
        """The live view plus the owner-only `webhook` block with its delivery attempts."""
        view = await self.live_view(record)
        if record.webhook:
            raw = await self._redis.lrange(keys.webhook_attempts_key(record.task_id), 0, -1)
            view.webhook = WebhookInfo(
                url=record.webhook["url"],
                events=record.webhook["events"],
                attempts=[WebhookAttempt.model_validate_json(item) for item in raw],
            )
        return view

    # --- submit -------------------------------------------------------------------------------

    async def submit(self, job: NewJob, options: SubmitOptions, caller: ApiKey | None) -> Submitted:
        """Check the job, then accept it in one step (the key's limits, the Idempotency-Key, the
        record and the message): a worker never sees a task without its record, a refused submit
        leaves nothing behind and holds no key, and a replay spends no rate."""
        job = dataclasses.replace(job, input=with_model(job.input, job.input_path, self._models))
        checked = await self._check(job, caller)
        scope = scope_of(caller)
        key = options.idempotency_key
        if key is not None:
            # Before anything is stored: the usual replay costs a single read.
            bound = await self._idempotency.bound_task(scope, key, body=job.idempotency_body)
            if bound is not None:
                return Submitted(await self._wait_for_record(bound), replayed=True)
        record = self._new_record(
            job, checked, options, owner_of(caller), await self._fingerprint(job, scope)
        )
        bind_ids(task_id=record.task_id)
        claim = None
        if key is not None:
            claim = IdempotencyKeys.claim(
                scope,
                key,
                body=job.idempotency_body,
                task_id=record.task_id,
                # Not past the job's own life: a replay of an expired job would find no record.
                ttl_s=min(IDEMPOTENCY_TTL_S, self._settings.job_ttl_s),
            )
        admission = None if caller is None else KeyAdmission.of(caller)
        outcome = await self._accept(record, job, checked.uploads, scope, admission, claim)
        if isinstance(outcome, AlreadyBound):
            # A concurrent request with the same key got there first: answer its task.
            bound = IdempotencyKeys.task_of(outcome.binding, body=job.idempotency_body)
            return Submitted(await self._wait_for_record(bound), replayed=True)
        if isinstance(outcome, Refusal):
            raise _refused(outcome)
        return Submitted(record, replayed=False)

    async def _check(self, job: NewJob, caller: ApiKey | None) -> Checked:
        """The pure checks (setting, images, cost, webhook URL), before anything is spent or
        stored."""
        spec = task_type(job.type)
        if spec.requires_setting and not getattr(self._settings, spec.requires_setting, ""):
            raise ModelNotConfigured(
                f"task type {job.type} needs FLUXGATE_{spec.requires_setting.upper()} to be set",
                field="type",
            )
        uploads = await self._inputs.check(job.images)
        cost = price_job(
            spec,
            job.input,
            uploads,
            input_path=job.input_path,
            caller=caller,
            settings=self._settings,
        )
        delivery = job.delivery
        if delivery.webhook_url is None:
            return Checked(None, uploads, cost)
        await self._check_webhook_url(str(delivery.webhook_url))
        events = sorted({e.value for e in delivery.webhook_events} | {"completed"})
        return Checked({"url": str(delivery.webhook_url), "events": events}, uploads, cost)

    @staticmethod
    async def _fingerprint(job: NewJob, scope: str) -> str | None:
        """The request's fingerprint (identical requests share a run), from its input as given:
        the seed `_new_record` fills in is no request's own."""
        fingerprint = functools.partial(request_fingerprint, job.type, job.input, job.images, scope)
        if any(isinstance(value, bytes) for value in job.images.values()):
            return await run_in_threadpool(fingerprint)  # hashing uploads takes a while
        return fingerprint()

    async def _accept(
        self,
        record: JobRecord,
        job: NewJob,
        uploads: dict[str, ImageInfo],
        scope: str,
        admission: KeyAdmission | None,
        claim: Claim | None,
    ) -> Refusal | AlreadyBound | None:
        """Store the job's input images and accept it; the images are forgotten again when the
        job is refused or could not be queued (the one cleanup of a submit)."""
        # None while unknown: an interrupted accept may have run, and its job needs its images.
        accepted: bool | None = None
        try:
            if job.images:
                await self._inputs.store(record, job.images, uploads)
            outcome = await self._queue.accept(
                record, keys.owner_tasks_key(scope), admission, claim
            )
            accepted = outcome is None
            return outcome
        except NotReplicated as exc:
            accepted = True
            # Queued on the primary: it will run. Say so, so a retry asks for this task again.
            raise Unavailable(
                f"task {record.task_id} was accepted but is not yet durable ({exc}); retry with "
                "the same Idempotency-Key to get this task",
                task=self.views.render(record).model_dump(mode="json"),
            ) from exc
        except Exception as exc:
            log.error("accept failed", error=repr(exc))
            if isinstance(exc, RedisError):
                # The script may have run before the answer was lost: its job, and a retry with
                # the same Idempotency-Key, need the images. Kept; the output sweep removes them
                # by age when no job was queued.
                raise
            accepted = False
            raise Unavailable("the job queue is unavailable; retry later") from exc
        finally:
            if accepted is False:
                await self._inputs.forget(record, job.images)

    def _new_record(
        self,
        job: NewJob,
        checked: Checked,
        options: SubmitOptions,
        owner: str | None,
        dedupe: str | None,
    ) -> JobRecord:
        task_input = job.input.model_dump(mode="json")
        for name in WORKER_ONLY_FLUX_FIELDS:
            # Left out at their defaults, so a worker one release older reads the record.
            if task_input.get(name) is False:
                del task_input[name]
        for name in choice_at_default(task_input, self._models.default):
            del task_input[name]
        if "seed" in task_input and task_input["seed"] is None:
            # Fixed at submit so a rerun after a crash makes the same image.
            task_input["seed"] = secrets.randbelow(2**32)
        deadline_at = None
        if options.cancel_after_s is not None:
            deadline_at = time.time() + options.cancel_after_s
        return new_job(
            job.type,
            task_input,
            request_id=current_ids().get("request_id"),
            priority=job.delivery.priority,
            owner=owner,
            webhook=checked.webhook,
            deadline_at=deadline_at,
            dedupe=dedupe,
            cache=dedupe is not None and job.delivery.cache,
            cost=checked.cost,
        )

    async def _check_webhook_url(self, url: str) -> None:
        try:
            # Resolving a name blocks: keep it off the event loop.
            await run_in_threadpool(check_url, url, self._allow)
        except UnsafeUrl as exc:
            raise InvalidInput(f"webhook_url {exc}", field="webhook_url") from exc

    async def _wait_for_record(self, task_id: str) -> JobRecord:
        # The first request with this key may still be between its claim and its record write.
        for _ in range(50):
            record = await self._store.get(task_id)
            if record is not None:
                return record
            await asyncio.sleep(0.02)
        raise IdempotencyInProgress(
            "a request with this Idempotency-Key is still being accepted; retry",
            field="Idempotency-Key",
        )

    # --- read ---------------------------------------------------------------------------------

    async def get(self, task_id: str, caller: ApiKey | None) -> JobRecord:
        bind_ids(task_id=task_id)
        record = await self._store.get(task_id)
        if record is None or (caller is not None and record.owner != caller.id):
            raise NotFound(f"task {task_id} not found")
        return record

    async def list_tasks(
        self, caller: ApiKey | None, *, status: TaskStatus | None, limit: int, cursor: float | None
    ) -> tuple[list[JobRecord], str | None]:
        """The caller's tasks, newest first; the cursor is the created time to continue below."""
        tasks_key = keys.owner_tasks_key(scope_of(caller))
        found: list[JobRecord] = []
        upper = "+inf" if cursor is None else f"({cursor}"
        while len(found) < limit:
            page = await self._redis.zrevrangebyscore(
                tasks_key, upper, "-inf", start=0, num=limit * 2, withscores=True
            )
            if not page:
                return found, None
            for task_id, score in page:  # type: ignore[str-unpack]
                upper = f"({score}"
                record = await self._store.get(str(task_id))
                if record is not None and (status is None or record.status is status):
                    found.append(record)
                    if len(found) == limit:
                        return found, repr(score)
        return found, None

    # --- change -------------------------------------------------------------------------------

    async def cancel(self, task_id: str, caller: ApiKey | None) -> tuple[JobRecord, bool]:
        """Cancel a task; returns the record and whether this call changed anything."""
        record = await self.get(task_id, caller)
        if record.status is TaskStatus.QUEUED:
            outcome = await self._store.apply(
                TaskEvent(task_id=task_id, event=EventKind.CANCELED), only_from=TaskStatus.QUEUED
            )
            if outcome.applied and outcome.record is not None:
                await self._fair.unstage(outcome.record)
                await self._announcer.announce(
                    outcome.record, self.views.render(outcome.record, EventKind.CANCELED)
                )
                return outcome.record, True
            record = await self.get(task_id, caller)  # it started meanwhile: treat it as running
        if record.status is TaskStatus.RUNNING:
            await self._store.request_cancel(task_id)
            return record, True
        if record.status is TaskStatus.CANCELED:
            return record, False
        raise Conflict(
            f"task {task_id} is already {record.status.value}",
            task=self.views.render(record).model_dump(mode="json"),
        )

    async def redeliver_webhook(self, task_id: str, caller: ApiKey | None) -> str:
        """Send the task's last dead-lettered (else last) webhook message again; its id."""
        record = await self.get(task_id, caller)
        if not record.webhook:
            raise NotFound(f"task {task_id} has no webhook", field="webhook_url")
        raw = await self._redis.rpop(keys.webhook_dead_key(task_id))
        if raw is None:
            raw = await self._redis.get(keys.webhook_last_key(task_id))
        if raw is None:
            raise Conflict(f"task {task_id} has sent no webhook message yet")
        return await self._queue.redeliver(str(raw))

    # --- usage --------------------------------------------------------------------------------

    async def usage(self, owner: str, since: date, until: date) -> dict[str, Any]:
        return await self._usage.report(owner, since, until)

    async def usage_owners(self) -> list[str]:
        return await self._usage.owners()
