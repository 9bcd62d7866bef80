"""The Celery application of the worker: broker-only (no result backend), at-least-once delivery."""

from __future__ import annotations

import functools
import os

import redis
import structlog
from celery import Celery, Task
from celery.signals import (
    setup_logging,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)
from celery.worker import state as worker_state
from kombu import Queue
from kombu.transport import redis as kombu_redis

from apps.common.jobs.fairshare import DRAIN_ALL, FairRelease
from apps.common.service.logging import configure_logging
from apps.common.service.request_context import bind_ids
from apps.common.service.settings import get_settings
from apps.common.service.tracing import instrument_celery, setup_tracing
from apps.common.wire.queues import (
    ALL_QUEUES,
    JOB_QUEUES,
    QUEUE_GPU,
    REQUEST_ID_MESSAGE_HEADER,
    broker_transport_options,
)
from apps.worker import metrics
from apps.worker.recovery import WorkerLease
from apps.worker.settings import WorkerSettings

settings = get_settings(WorkerSettings)

# The workers' leases put back the messages of a worker that died or lost Redis, within seconds
# (apps/worker/recovery.py). kombu's own restore of a closing channel's messages runs while the
# connection is being lost, cannot reach Redis then, and took the whole consumer down with it
# ("Unrecoverable error" after a Redis restart): leave that to the leases.
kombu_redis.QoS.restore_at_shutdown = False

app = Celery("fluxgate", broker=settings.redis_url, include=["apps.worker.tasks"])
app.conf.update(
    # Results travel as events to the notifier; a result backend would only duplicate them.
    task_ignore_result=True,
    result_backend=None,
    # At least once: a message is acked only after its job ran; a killed worker's job runs again.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_cancel_long_running_tasks_on_connection_loss=True,
    task_soft_time_limit=settings.job_soft_time_limit_s,
    task_time_limit=settings.job_time_limit_s,
    broker_transport_options=broker_transport_options(
        visibility_timeout_s=settings.broker_visibility_timeout_s
    ),
    broker_connection_retry_on_startup=True,
    task_queues=[Queue(name) for name in ALL_QUEUES],
    task_default_queue=QUEUE_GPU,
    task_serializer="json",
    accept_content=["json"],
    worker_concurrency=settings.worker_concurrency,
    worker_hijack_root_logger=False,
    # Celery's task events are three Redis publishes per job on the consumer's own loop, for
    # Flower alone; Flower turns them on when it runs (its `enable_events`, a remote control
    # command), so nothing pays for them without it.
    worker_send_task_events=False,
    task_send_sent_event=False,
)


@task_prerun.connect
def _task_started(task_id: str = "", task: Task | None = None, **_kwargs: object) -> None:
    # Pool processes run task after task: ids bound for one job must not leak into the next.
    structlog.contextvars.clear_contextvars()
    request_id = getattr(task.request, REQUEST_ID_MESSAGE_HEADER, None) if task else None
    bind_ids(request_id=request_id if isinstance(request_id, str) else None)
    metrics.task_started(task_id)


@task_postrun.connect
def _task_finished(
    task_id: str = "", task: Task | None = None, state: str | None = None, **_kwargs: object
) -> None:
    metrics.task_finished(task.name if task is not None else "unknown", task_id, state)


@worker_init.connect
def _serve_metrics(**_kwargs: object) -> None:
    if settings.worker_metrics_port:
        metrics.serve(
            settings.worker_metrics_host, settings.worker_metrics_port, settings.redis_url
        )


_lease: WorkerLease | None = None


def _held_delivery_tags() -> list[str]:
    """The deliveries this worker holds: reserved (prefetched) and running requests."""
    for _ in range(10):
        try:  # the consumer thread may change the sets while they are copied
            requests = [*worker_state.active_requests, *worker_state.reserved_requests]
            break
        except RuntimeError:
            continue
    else:
        raise RuntimeError("the worker's request sets kept changing; beat skipped")
    tags = (getattr(getattr(r, "message", None), "delivery_tag", None) for r in requests)
    return [str(tag) for tag in tags if tag]


@worker_ready.connect
def _start_lease(**_kwargs: object) -> None:
    global _lease
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
    _lease = WorkerLease(
        client,
        _held_delivery_tags,
        lease_s=settings.worker_lease_s,
        heartbeat_s=settings.worker_heartbeat_s,
        each_beat=functools.partial(_release_staged, FairRelease(client)),
    )
    _lease.start()


def _release_staged(fair: FairRelease) -> None:
    """Release staged jobs that no start released (a slot that died before it could); with
    fair share off, drain what an earlier setting staged, so turning it off strands nothing."""
    ready = settings.fair_share_ready if settings.fair_share else DRAIN_ALL
    for queue in JOB_QUEUES:
        fair.release(queue, ready)


@worker_shutdown.connect
def _stop_lease(**_kwargs: object) -> None:
    if _lease is not None:
        _lease.stop()


@worker_process_init.connect
def _trace_pool_process(**_kwargs: object) -> None:
    # The exporter's thread does not survive a fork: each pool process sets up its own.
    if setup_tracing("worker", settings):
        instrument_celery()


@worker_process_shutdown.connect
def _pool_process_exited(pid: int | None = None, **_kwargs: object) -> None:
    metrics.process_exited(pid or os.getpid())


@setup_logging.connect
def _configure_logging(**_kwargs: object) -> None:
    configure_logging(settings.log_level, json=settings.log_json)
