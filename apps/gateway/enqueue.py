"""Puts accepted jobs on the Celery queues (the job record is written before, by the caller)."""

from __future__ import annotations

from celery import Celery
from starlette.concurrency import run_in_threadpool

from apps.common.contracts import WebhookMessage
from apps.common.jobs import JobRecord
from apps.common.queue_position import QueuePositions
from apps.common.queues import (
    JOB_TASKS,
    REQUEST_ID_MESSAGE_HEADER,
    celery_priority,
    send_webhook,
)


class JobQueue:
    def __init__(self, producer: Celery, positions: QueuePositions) -> None:
        self._producer = producer
        self._positions = positions

    async def enqueue(self, record: JobRecord) -> None:
        """Publish the job's message; only the task id travels, the input stays in the record."""
        name, queue = JOB_TASKS[record.type]
        # The ticket is taken just before the publish: two submits racing in the same lane may
        # swap their positions by one, never more.
        await self._positions.take_ticket(record)
        await run_in_threadpool(
            self._producer.send_task,
            name,
            args=[record.task_id],
            queue=queue,
            priority=celery_priority(record.priority),
            task_id=record.task_id,
            # The worker binds it to its log lines before it even reads the record.
            headers={REQUEST_ID_MESSAGE_HEADER: record.request_id} if record.request_id else None,
        )

    async def redeliver(self, raw_message: str) -> str:
        """Queue a stored webhook message again from its first attempt; returns its id."""
        message = WebhookMessage.model_validate_json(raw_message).model_copy(update={"attempt": 0})
        await run_in_threadpool(send_webhook, self._producer, message)
        return message.message_id
