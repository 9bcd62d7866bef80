"""What follows an applied event, decided without I/O: one rule for the notifier, the gateway and
a worker that writes an event itself (`announce.py` runs it, async or blocking)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson

from apps.common.jobs.record import JobRecord
from apps.common.jobs.store import ApplyOutcome
from apps.common.jobs.view import iso_utc
from apps.common.wire.contracts import (
    EventKind,
    JobView,
    TaskEvent,
    WebhookEvent,
    WebhookMessage,
)

# A task's subscriber gets at most one progress webhook per this interval.
PROGRESS_WEBHOOK_INTERVAL_MS = 1000


@dataclass(frozen=True)
class FollowUp:
    """What to do, in this order, once `view` was applied to a record (it is published to
    every subscriber first, always)."""

    # The job just started: observe its time in the queue.
    observe_started: bool
    # The job reached this final state: meter it, and if that metering counted, observe it.
    final: bool
    # The message for the task's webhook, if its subscriber wants this event.
    webhook: WebhookMessage | None
    # The webhook is a progress note: send it only if the task's progress gate opens.
    progress_gated: bool


def follow_up(record: JobRecord, view: JobView) -> FollowUp:
    """The follow-up of `view`, the view of `record` right after an event was applied to it."""
    webhook = plan_webhook(record, view)
    return FollowUp(
        observe_started=view.event == EventKind.STARTED,
        # The event that ended the job, not a later repeat of its view (a snapshot).
        final=record.status.is_terminal and view.event == record.status.value,
        webhook=webhook,
        progress_gated=webhook is not None and view.event == EventKind.PROGRESS,
    )


def follows_up(outcome: ApplyOutcome, event: TaskEvent) -> bool:
    """Whether applying `event` is followed up: when it changed the record, and when a final
    event repeats the state the job already ended in — a retry whose first follow-up may have
    been lost after the apply. Repeating it is harmless: subscribers drop the repeated `seq`, the
    webhook keeps its message id, usage meters a job once."""
    if outcome.record is None:
        return False
    return outcome.applied or (event.event.is_final and event.event == outcome.record.status)


def plan_webhook(record: JobRecord, view: JobView) -> WebhookMessage | None:
    """The message for `view` (an applied event), or None when the task has no subscriber for it.

    Terminal events always go out; `started` and `progress` only when asked for; `waiting` never.
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
