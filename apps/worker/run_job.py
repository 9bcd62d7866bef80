"""Runs one FLUX job: balancer stream -> output store -> events. Safe to run twice for one task."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

from apps.common.contracts import (
    ErrorInfo,
    EventKind,
    FluxInput,
    ImageOutput,
    InferenceError,
    InferenceProgress,
    InferenceRequest,
    InferenceResult,
    JobResult,
    TaskEvent,
    TaskStatus,
)
from apps.common.jobs import CANCEL_BY_DEADLINE, DEADLINE_EXCEEDED, SyncJobStore
from apps.common.logging import get_logger
from apps.common.request_context import bind_ids
from apps.worker.balancer_client import BalancerClient
from apps.worker.event_sender import EventSender
from apps.worker.outputs import OutputStore

log = get_logger(__name__)

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


@dataclass
class JobDeps:
    """What a job needs, built once per worker process."""

    store: SyncJobStore
    events: EventSender
    balancer: BalancerClient
    outputs: OutputStore
    progress_interval_s: float


def stop_event(task_id: str, reason: str) -> TaskEvent:
    """The `canceled` event for a stop asked by the client or by the job's deadline."""
    error = DEADLINE_EXCEEDED if reason == CANCEL_BY_DEADLINE else None
    return TaskEvent(task_id=task_id, event=EventKind.CANCELED, error=error)


def run_flux_job(task_id: str, deps: JobDeps) -> None:
    """Run the job unless it is gone, finished, canceled or past its deadline; report events."""
    bind_ids(task_id=task_id)
    record = deps.store.get(task_id)
    if record is None:
        log.warning("job record missing (expired?); dropping message")
        return
    bind_ids(request_id=record.request_id)
    log.info("job picked up", status=record.status.value)
    if record.status.is_terminal:
        log.info("job already finished; skipping", task_id=task_id, status=record.status.value)
        return
    if reason := deps.store.cancel_reason(task_id):
        deps.events.send(stop_event(task_id, reason))
        return
    if record.deadline_at is not None and time.time() >= record.deadline_at:
        kind = EventKind.EXPIRED if record.status is TaskStatus.QUEUED else EventKind.CANCELED
        deps.events.send(TaskEvent(task_id=task_id, event=kind, error=DEADLINE_EXCEEDED))
        return
    if record.status is TaskStatus.QUEUED:
        deps.events.send(TaskEvent(task_id=task_id, event=EventKind.STARTED))

    request = InferenceRequest(task_id=task_id, input=FluxInput.model_validate(record.input))
    last_progress_at = 0.0
    lines = deps.balancer.stream("flux", request)
    try:
        for line in lines:
            if isinstance(line, InferenceProgress):
                if reason := deps.store.cancel_reason(task_id):
                    lines.close()  # the inference server drops the request at its next step
                    deps.events.send(stop_event(task_id, reason))
                    return
                now = time.monotonic()
                if now - last_progress_at >= deps.progress_interval_s:
                    last_progress_at = now
                    # 100 belongs to success; a finished last step still has decoding to do.
                    percent = min(99, line.step * 100 // max(line.total, 1))
                    deps.events.send(
                        TaskEvent(task_id=task_id, event=EventKind.PROGRESS, progress=percent)
                    )
            elif isinstance(line, InferenceResult):
                result = _store_images(task_id, line, deps.outputs)
                log.info(
                    "job succeeded",
                    task_id=task_id,
                    images=len(result.images),
                    compute_ms=line.compute_ms,
                )
                deps.events.send(
                    TaskEvent(task_id=task_id, event=EventKind.SUCCEEDED, result=result)
                )
            elif isinstance(line, InferenceError):
                fail(deps, task_id, line.code, line.message)
    finally:
        lines.close()


def fail(deps: JobDeps, task_id: str, code: str, message: str) -> None:
    """End the job as failed with a code that names the cause."""
    log.warning("job failed", task_id=task_id, code=code, message=message)
    deps.events.send(
        TaskEvent(
            task_id=task_id, event=EventKind.FAILED, error=ErrorInfo(code=code, message=message)
        )
    )


def _store_images(task_id: str, result: InferenceResult, outputs: OutputStore) -> JobResult:
    images = []
    for index, image in enumerate(result.images):
        url = outputs.put(
            task_id,
            index,
            base64.b64decode(image.data_b64),
            extension=_EXTENSIONS.get(image.content_type, "bin"),
        )
        images.append(
            ImageOutput(
                url=url,
                content_type=image.content_type,
                width=image.width,
                height=image.height,
                seed=image.seed,
            )
        )
    return JobResult(
        images=images, timings={"compute_ms": result.compute_ms, "batch_size": result.batch_size}
    )
