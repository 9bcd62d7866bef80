"""Thin Celery tasks: each one hands its job to `run_job` and maps failures to retries."""

from __future__ import annotations

import contextlib
import random
from functools import lru_cache

import httpx
import redis
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from redis.exceptions import RedisError

from apps.common.jobs.announce import SyncAnnouncer
from apps.common.jobs.fairshare import FairRelease
from apps.common.jobs.store import SyncJobStore
from apps.common.security.url_guard import AllowList
from apps.common.service.logging import get_logger
from apps.common.service.request_context import bind_ids
from apps.common.storage import make_output_store
from apps.common.wire.contracts import WebhookMessage
from apps.common.wire.queues import (
    JOB_QUEUES,
    QUEUE_WEBHOOKS,
    TASK_FLUX,
    TASK_JOB,
    TASK_WEBHOOK,
)
from apps.worker.balancer_client import BalancerClient, InferenceRetryable
from apps.worker.capacity import HandBack
from apps.worker.celery_app import app, settings
from apps.worker.dedupe import IdenticalJobs
from apps.worker.event_sender import EventSender
from apps.worker.inputs import FETCH_TIMEOUT, InputImages
from apps.worker.run_job import JobDeps, fail, run_job
from apps.worker.unacked import Unacked
from apps.worker.webhooks import WebhookDelivery

log = get_logger(__name__)
MAX_RETRY_DELAY_S = 300.0


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    """This worker process's Redis client, made on first use (after the prefork fork)."""
    return redis.Redis.from_url(settings.redis_url, decode_responses=True)


@lru_cache(maxsize=1)
def job_deps() -> JobDeps:
    store = SyncJobStore(redis_client(), ttl_s=settings.job_ttl_s)
    outputs = make_output_store(settings)
    return JobDeps(
        store=store,
        events=EventSender(settings, store, announcer=SyncAnnouncer(store, redis_client(), app)),
        balancer=BalancerClient(
            settings.balancer_url,
            read_timeout_s=settings.job_time_limit_s,
            default_model=settings.model_registry().default,
        ),
        outputs=outputs,
        inputs=InputImages(
            store=outputs,
            allow=AllowList.parse(settings.webhook_allow),
            max_bytes=settings.input_image_max_bytes,
            max_pixels=settings.input_image_max_pixels,
            http=httpx.Client(timeout=FETCH_TIMEOUT, headers={"user-agent": "Fluxgate/1"}),
        ),
        settings=settings,
        progress_interval_s=settings.worker_progress_interval_ms / 1000,
        preview_interval_s=settings.worker_preview_interval_ms / 1000,
        # A claim on a run lasts one delivery at most: the hard time limit ends it.
        identical=IdenticalJobs(
            redis_client(), claim_s=settings.job_time_limit_s, record_ttl_s=settings.job_ttl_s
        ),
    )


@lru_cache(maxsize=1)
def unacked() -> Unacked:
    return Unacked(redis_client())


@lru_cache(maxsize=1)
def webhook_delivery() -> WebhookDelivery:
    return WebhookDelivery(settings, redis_client())


@lru_cache(maxsize=1)
def fair_release() -> FairRelease:
    return FairRelease(redis_client())


def release_next(queue: object) -> None:
    """A slot took a job: release the next one in fair order for the next free slot
    (apps/common/jobs/fairshare.py). A miss is harmless: the heartbeat releases too."""
    if not settings.fair_share or queue not in JOB_QUEUES:
        return
    try:
        fair_release().release(str(queue), settings.fair_share_ready)
    except RedisError as exc:
        log.warning("could not release the next job; the heartbeat will", error=repr(exc))


def retry_delay_s(retries: int) -> float:
    """Exponential backoff with full jitter, so retrying workers do not stampede together."""
    return random.uniform(0, min(MAX_RETRY_DELAY_S, settings.worker_retry_backoff_s * 2**retries))


@app.task(name=TASK_FLUX, bind=True, max_retries=None)
def flux(self: Task, task_id: str, failures: int = 0) -> None:
    """Run one FLUX job; `failures` counts the retries that used up the retry budget."""
    run_with_retries(self, task_id, failures)


@app.task(name=TASK_JOB, bind=True, max_retries=None)
def job(self: Task, task_id: str, failures: int = 0) -> None:
    """Run one job of any other task type (the record says which)."""
    run_with_retries(self, task_id, failures)


def run_with_retries(self: Task, task_id: str, failures: int) -> None:
    """Run the job; map what went wrong onto a retry, a failed job, or nothing lost."""
    deps = job_deps()
    release_next((self.request.delivery_info or {}).get("routing_key"))
    try:
        opened = deps.store.open_run(task_id)
        if opened.crashes >= settings.worker_max_crashes:
            # Each delivery killed its worker process: stop feeding it to the next one.
            fail(
                deps,
                task_id,
                "worker_crashed",
                f"the worker process died {opened.crashes} times while running this job "
                "(out of memory, or killed); it was not run again",
            )
            return
        run_job(task_id, deps, opened)
    except HandBack:
        # Waited a slice for a model server: back to the head of its lane, in Redis, not as an
        # ETA message in this worker's memory; the ack that follows finds nothing left to remove.
        tag = (self.request.properties or {}).get("delivery_tag")
        if unacked().put_back(tag):
            log.info("job handed back to its queue while it waits", task_id=task_id)
        else:
            log.warning("waiting job's delivery not found; not handed back", task_id=task_id)
    except InferenceRetryable as exc:
        if failures >= settings.worker_max_retries:
            fail(deps, task_id, "inference_unavailable", str(exc))
            return
        raise self.retry(
            args=[task_id, failures + 1], exc=exc, countdown=retry_delay_s(failures)
        ) from exc
    except SoftTimeLimitExceeded:
        fail(
            deps,
            task_id,
            "timeout",
            f"the job ran over {settings.job_soft_time_limit_s} s and was stopped",
        )
    except RedisError as exc:
        # The job store is unreachable: nothing was lost, run the job again once it is back.
        raise self.retry(
            args=[task_id, failures + 1], exc=exc, countdown=retry_delay_s(failures)
        ) from exc
    except Exception as exc:
        # A bug must end the job visibly, not leave it `running` forever.
        log.exception("job crashed", task_id=task_id)
        # The client gets the kind of error, not its text: that may name server paths or hosts.
        # The log line above has it all under this task id.
        fail(
            deps,
            task_id,
            "internal_error",
            f"the job hit an internal error ({type(exc).__name__}); the worker's log has the "
            "details under this task id",
        )
    finally:
        with contextlib.suppress(RedisError):  # Redis down: the retry above reopens it
            deps.store.close_attempt(task_id)


@app.task(name=TASK_WEBHOOK, queue=QUEUE_WEBHOOKS)
def webhook(message: dict[str, object]) -> None:
    """One delivery attempt; the next one, if any, is scheduled by `WebhookDelivery`."""
    parsed = WebhookMessage.model_validate(message)
    bind_ids(task_id=parsed.task_id)
    webhook_delivery().deliver(parsed)
