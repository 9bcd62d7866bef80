"""Puts accepted jobs on the Celery queues (the job record is written before, by the caller)."""

from __future__ import annotations

from celery import Celery
from starlette.concurrency import run_in_threadpool

from apps.common.contracts import WebhookMessage
from apps.common.jobs import JobRecord
from apps.common.queues import QUEUE_GPU, TASK_FLUX, celery_priority, send_webhook

_TASKS = {"flux": (TASK_FLUX, QUEUE_GPU)}


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

    async def redeliver(self, raw_message: str) -> str:
        """Queue a stored webhook message again from its first attempt; returns its id."""
        message = WebhookMessage.model_validate_json(raw_message).model_copy(update={"attempt": 0})
        await run_in_threadpool(send_webhook, self._producer, message)
        return message.message_id
