"""Waiting for a model server without failing and without holding the queue.

A job that finds no ready model server (cold start, scale from zero, all ejected) or all of them
busy stays `queued`: the worker slot that took it asks the balancer again and again, each request
held there until a backend has room (so it starts the moment one has), and says on the job what it
waits for. It spends none of the job's retry budget. After `worker_capacity_slice_s` the slot puts
the message back at the head of its lane (`Unacked.put_back`), then takes the most urgent: the jobs
behind it never leave Redis, a more urgent job is not stuck behind a waiting one, and the wait
never counts against the job's time limits by more than one slice. The wait ends with the job's
`Cancel-After` deadline (`expired`, `deadline_exceeded`) or once no model server has been ready for
`max_capacity_wait_s` of it (`expired`, `no_capacity`).
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import TYPE_CHECKING

from apps.common.jobs.record import JobRecord, deadline_event
from apps.common.service.logging import get_logger
from apps.common.wire.contracts import ErrorInfo, EventKind, TaskEvent, TaskStatus, WaitReason
from apps.common.wire.inference import BalancerRefusal, InferenceLine, InferenceRequest
from apps.worker.balancer_client import InferenceBusy, InferenceRetryable

if TYPE_CHECKING:
    from apps.worker.run_job import JobDeps

log = get_logger(__name__)

# Never ask the balancer to hold a request for less than this: no busy loop near a limit.
_MIN_HOLD_S = 0.1


class HandBack(Exception):
    """The job waited one slice: put its message back at the head of its lane."""


def no_capacity_error(waited_s: float) -> ErrorInfo:
    return ErrorInfo(
        code="no_capacity",
        message=(
            f"no model server became ready within {waited_s:.0f} s "
            "(FLUXGATE_MAX_CAPACITY_WAIT_S); the job was not run"
        ),
    )


def open_when_ready(
    record: JobRecord, model: str, request: InferenceRequest, deps: JobDeps
) -> tuple[InferenceLine, Generator[InferenceLine, None, None]] | None:
    """The first line and the rest of the job's inference stream once a model server took it;
    None when the job ended while it waited (canceled, expired). Raises `HandBack`."""
    settings = deps.settings
    slice_end = time.monotonic() + settings.worker_capacity_slice_s
    capacity_left = settings.max_capacity_wait_s
    refused_before = False
    while True:
        hold = min(settings.worker_capacity_poll_s, slice_end - time.monotonic(), capacity_left)
        if record.deadline_at is not None:
            hold = min(hold, record.deadline_at - time.time())
        lines = deps.balancer.stream(model, request, wait_s=max(hold, _MIN_HOLD_S))
        try:
            first = next(lines)
        except InferenceBusy as exc:
            lines.close()
            refused = exc
        except StopIteration:
            raise InferenceRetryable("the inference stream ended before a result") from None
        else:
            if refused_before and _ended(deps, record.task_id):
                # Canceled (or expired) while it waited: the model server drops it on close.
                lines.close()
                return None
            return first, lines
        refused_before = True
        current = deps.store.get(record.task_id)
        if current is None or current.status.is_terminal:
            log.info("job ended while it waited for a model server", task_id=record.task_id)
            return None
        record = current
        now = time.time()
        if (ended := deadline_event(record, now)) is not None:
            deps.events.send(ended)
            return None
        no_server = refused.reason is BalancerRefusal.NO_BACKEND
        reason = WaitReason.MODEL_SERVER if no_server else WaitReason.CAPACITY
        if reason is WaitReason.MODEL_SERVER:
            # The wait that counts is the part of this job's queueing with no server ready.
            waited = min(now - record.created_at, refused.unready_s)
            if waited >= settings.max_capacity_wait_s:
                log.warning("no model server became ready", task_id=record.task_id, waited=waited)
                # Expired while queued; a rerun already running (its worker died) fails instead.
                queued = record.status is TaskStatus.QUEUED
                kind = EventKind.EXPIRED if queued else EventKind.FAILED
                error = no_capacity_error(waited)
                deps.events.send(TaskEvent(task_id=record.task_id, event=kind, error=error))
                return None
            capacity_left = settings.max_capacity_wait_s - waited
        else:
            capacity_left = settings.max_capacity_wait_s
        if record.waiting_for is not reason:
            log.info("job waits", task_id=record.task_id, waiting_for=reason.value)
            deps.events.send(
                TaskEvent(task_id=record.task_id, event=EventKind.WAITING, waiting_for=reason)
            )
            record = record.model_copy(update={"waiting_for": reason})
        if time.monotonic() >= slice_end:
            raise HandBack


def _ended(deps: JobDeps, task_id: str) -> bool:
    current = deps.store.get(task_id)
    return current is None or current.status.is_terminal
