"""Which webhook message an applied event produces for a task's subscriber, if any."""

from __future__ import annotations

import time

import orjson

from apps.common.jobs.record import JobRecord
from apps.common.jobs.view import iso_utc
from apps.common.wire.contracts import EventKind, JobView, WebhookEvent, WebhookMessage


def plan_webhook(record: JobRecord, view: JobView) -> WebhookMessage | None:
    """The message for `view` (an applied event), or None when the task has no subscriber for it.

    Terminal events always go out; `started` and `progress` only when asked for; `waiting` never.
    The caller keeps progress to one per second.
    """
    if not record.webhook or view.event is None or view.event == "snapshot":
        return None
    kind = EventKind(view.event)
    if kind is EventKind.WAITING:
        return None  # a note on a queued job, for those watching it live; not a webhook type
    wanted = set(record.webhook.get("events", []))
    if kind is EventKind.STARTED and WebhookEvent.STARTED not in wanted:
        return None
    if kind is EventKind.PROGRESS and WebhookEvent.PROGRESS not in wanted:
        return None
    body = {
        "type": f"task.{kind.value}",
        "timestamp": iso_utc(time.time()),
        "data": view.model_dump(mode="json", exclude={"event", "webhook"}),
    }
    return WebhookMessage(
        # One message per applied event: `seq` is unique per task, so the id is stable across
        # retries and a receiver can deduplicate on it.
        message_id=f"msg_{record.task_id}_{view.seq}",
        task_id=record.task_id,
        url=str(record.webhook["url"]),
        body=orjson.dumps(body).decode(),
        owner=record.owner,
    )
