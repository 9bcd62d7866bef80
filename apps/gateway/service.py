"""What the gateway does with tasks: accept, look up, cancel. Routes only map HTTP onto it."""

from __future__ import annotations

import secrets
from typing import Any

from apps.common.contracts import (
    ErrorInfo,
    EventKind,
    FluxRequest,
    JobView,
    TaskEvent,
    TaskStatus,
)
from apps.common.errors import Conflict, NotFound, Unavailable
from apps.common.jobs import JobRecord, JobStore, job_view, new_job
from apps.common.logging import get_logger
from apps.gateway.enqueue import JobQueue
from apps.gateway.settings import GatewaySettings

log = get_logger(__name__)


class TaskService:
    def __init__(self, store: JobStore, queue: JobQueue, settings: GatewaySettings) -> None:
        self._store = store
        self._queue = queue
        self._settings = settings

    def view(self, record: JobRecord, event: str | None = None) -> JobView:
        return job_view(
            record,
            public_base=self._settings.public_base,
            public_ws_base=self._settings.public_ws_base,
            event=event,
        )

    async def submit_flux(self, request: FluxRequest) -> JobRecord:
        """Write the record, then enqueue: a worker never sees a task without its record."""
        task_input = request.task_input()
        if task_input.seed is None:
            # Fixed at submit so a rerun after a crash makes the same image.
            task_input.seed = secrets.randbelow(2**32)
        delivery = request.delivery()
        webhook: dict[str, Any] | None = None
        if delivery.webhook_url is not None:
            webhook = {
                "url": str(delivery.webhook_url),
                "events": [e.value for e in delivery.webhook_events],
            }
        record = new_job(
            "flux", task_input.model_dump(mode="json"), priority=delivery.priority, webhook=webhook
        )
        await self._store.create(record)
        try:
            await self._queue.enqueue(record)
        except Exception as exc:
            log.error("enqueue failed", task_id=record.task_id, error=repr(exc))
            await self._store.apply(
                TaskEvent(
                    task_id=record.task_id,
                    event=EventKind.FAILED,
                    error=ErrorInfo(code="enqueue_failed", message="the job could not be queued"),
                )
            )
            raise Unavailable("the job queue is unavailable; retry later") from exc
        return record

    async def get(self, task_id: str) -> JobRecord:
        record = await self._store.get(task_id)
        if record is None:
            raise NotFound(f"task {task_id} not found")
        return record

    async def cancel(self, task_id: str) -> tuple[JobRecord, bool]:
        """Cancel a task; returns the record and whether this call changed anything."""
        record = await self.get(task_id)
        if record.status is TaskStatus.QUEUED:
            outcome = await self._store.apply(TaskEvent(task_id=task_id, event=EventKind.CANCELED))
            if outcome.applied and outcome.record is not None:
                await self._store.publish(self.view(outcome.record, EventKind.CANCELED))
                return outcome.record, True
            record = await self.get(task_id)  # it started meanwhile: treat it as running
        if record.status is TaskStatus.RUNNING:
            await self._store.request_cancel(task_id)
            return record, True
        if record.status is TaskStatus.CANCELED:
            return record, False
        raise Conflict(
            f"task {task_id} is already {record.status.value}",
            task=self.view(record).model_dump(mode="json"),
        )
