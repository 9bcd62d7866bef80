"""Puts accepted jobs on the Celery queues (the job record is written before, by the caller)."""

from __future__ import annotations

from celery import Celery
from starlette.concurrency import run_in_threadpool

from apps.common.jobs import JobRecord
from apps.common.queues import QUEUE_GPU, TASK_FLUX, broker_transport_options, celery_priority
from apps.gateway.settings import GatewaySettings

_TASKS = {"flux": (TASK_FLUX, QUEUE_GPU)}


def make_producer(settings: GatewaySettings) -> Celery:
    """A Celery app used only to publish; the gateway never imports the worker's code."""
    app = Celery("fluxgate-gateway", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        broker_transport_options=broker_transport_options(
            visibility_timeout_s=settings.broker_visibility_timeout_s
        ),
        broker_connection_timeout=3,
        # Fail fast so the client gets a 503 instead of a hung request when Redis is gone.
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
    )
    return app


class JobQueue:
    def __init__(self, producer: Celery) -> None:
        self._producer = producer

    async def enqueue(self, record: JobRecord) -> None:
        """Publish the job's message; only the task id travels, the input stays in the record."""
        name, queue = _TASKS[record.type]
        await run_in_threadpool(
            self._producer.send_task,
            name,
            args=[record.task_id],
            queue=queue,
            priority=celery_priority(record.priority),
            task_id=record.task_id,
        )
