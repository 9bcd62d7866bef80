"""A job as stored: its record, how a new one starts and how a deadline ends it."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from pydantic import BaseModel

from apps.common.wire.contracts import (
    ErrorInfo,
    EventKind,
    JobPreview,
    JobResult,
    TaskEvent,
    TaskStatus,
    WaitReason,
)

# Why a running job was asked to stop; a deadline ends it `canceled` with `deadline_exceeded`.
CANCEL_BY_CLIENT = "client"
CANCEL_BY_DEADLINE = "deadline"
DEADLINE_EXCEEDED = ErrorInfo(
    code="deadline_exceeded", message="the job's Cancel-After deadline passed"
)


class JobRecord(BaseModel):
    """A job as stored: the view's fields plus what only the services need."""

    task_id: str
    type: str
    status: TaskStatus
    progress: int = 0
    seq: int = 0
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    input: dict[str, Any]
    result: JobResult | None = None
    error: ErrorInfo | None = None
    priority: int = 5
    owner: str | None = None
    webhook: dict[str, Any] | None = None
    deadline_at: float | None = None
    # When the worker finished the work, by its clock (set with the terminal event).
    done_at: float | None = None
    # The submit request's id, so logs of every service can be joined on it.
    request_id: str | None = None
    # Place in the order of its queue lane (set at enqueue), for `queue_position`.
    queue_ticket: int | None = None
    # What a worker holding this queued job found it waiting for (cleared when it starts).
    waiting_for: WaitReason | None = None
    # Identical requests share one run (`apps/worker/dedupe.py`): the request's fingerprint, set
    # at submit only for an explicit seed on a deterministic type; `cache` is the request's
    # opt-in to a stored result; `cached` is set when the job is answered from another's.
    dedupe: str | None = None
    cache: bool = False
    cached: bool = False
    # What the job costs in megapixel-steps (`TaskType.cost`), fixed at submit; None in records
    # written before costs were kept.
    cost: float | None = None
    # The latest preview of a job that asked for them (set by `progress` events, by step).
    preview: JobPreview | None = None

    def to_hash(self) -> dict[str, str]:
        data = self.model_dump(mode="json", exclude_none=True)
        return {
            name: orjson.dumps(value).decode() if isinstance(value, dict | list) else str(value)
            for name, value in data.items()
        }

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> JobRecord:
        data: dict[str, Any] = dict(raw)
        for name in ("input", "result", "error", "webhook", "preview"):
            if name in data:
                data[name] = orjson.loads(data[name])
        return cls.model_validate(data)


def new_job(
    task_type: str,
    task_input: dict[str, Any],
    *,
    priority: int = 5,
    owner: str | None = None,
    webhook: dict[str, Any] | None = None,
    deadline_at: float | None = None,
    request_id: str | None = None,
    dedupe: str | None = None,
    cache: bool = False,
    cost: float | None = None,
) -> JobRecord:
    """A fresh `queued` record with a random task id."""
    return JobRecord(
        task_id=str(uuid.uuid4()),
        type=task_type,
        status=TaskStatus.QUEUED,
        created_at=time.time(),
        input=task_input,
        priority=priority,
        owner=owner,
        webhook=webhook,
        deadline_at=deadline_at,
        request_id=request_id,
        dedupe=dedupe,
        cache=cache,
        cost=cost,
    )


def deadline_event(record: JobRecord, now: float) -> TaskEvent | None:
    """The event that ends a job whose `Cancel-After` deadline has passed by `now`: `expired`
    while it is queued, `canceled` once it runs (both `deadline_exceeded`); None before it."""
    if record.deadline_at is None or now < record.deadline_at:
        return None
    kind = EventKind.EXPIRED if record.status is TaskStatus.QUEUED else EventKind.CANCELED
    return TaskEvent(task_id=record.task_id, event=kind, error=DEADLINE_EXCEEDED)
