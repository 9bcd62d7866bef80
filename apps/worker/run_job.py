"""Runs one job of any task type and reports its events. Safe to run twice for one task.

Inference types (`flux`, `style_transfer`) stream through the balancer to a model server; worker
types run their handler here. Either way the outputs go to the output store and the result,
failure or stop becomes one event."""

from __future__ import annotations

import base64
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apps.common import images
from apps.common.jobs.record import CANCEL_BY_DEADLINE, DEADLINE_EXCEEDED, JobRecord, deadline_event
from apps.common.jobs.store import OpenedRun, SyncJobStore
from apps.common.service.logging import get_logger
from apps.common.service.request_context import bind_ids
from apps.common.storage.names import OutputStore
from apps.common.task_types import task_type
from apps.common.wire.contracts import (
    ErrorInfo,
    EventKind,
    ImageOutput,
    JobResult,
    OutputFormat,
    TaskEvent,
    TaskStatus,
)
from apps.common.wire.inference import InferenceError, InferenceProgress, InferenceResult
from apps.worker.balancer_client import BalancerClient
from apps.worker.capacity import open_when_ready
from apps.worker.dedupe import IdenticalJobs, share_or_run, store_success
from apps.worker.errors import InvalidImage, JobFailed, Stopped
from apps.worker.event_sender import EventSender
from apps.worker.handlers import HandlerContext, Output, OutputImage, handler_module
from apps.worker.inputs import InputImages
from apps.worker.previews import ProgressGate, store_preview
from apps.worker.settings import WorkerSettings

log = get_logger(__name__)

# How often a running job may ask Redis whether it was canceled: a Redis round trip per step
# cost a fast model's job more than its steps.
_CANCEL_POLL_S = 0.1


class CancelWatch:
    """Whether a running job was asked to stop: Redis is asked at most every _CANCEL_POLL_S, and
    a reason once seen is kept. Handlers and inference streams share it."""

    def __init__(self, store: SyncJobStore, task_id: str) -> None:
        self._store = store
        self._task_id = task_id
        self._polled_at = -math.inf
        self._reason: str | None = None

    def reason(self) -> str | None:
        now = time.monotonic()
        if self._reason is None and now - self._polled_at >= _CANCEL_POLL_S:
            self._polled_at = now
            self._reason = self._store.cancel_reason(self._task_id)
        return self._reason


def progress_percent(done: float, total: float = 1) -> int:
    """A running job's progress (`done` of `total`: steps, or a fraction of 1) as the event's
    percent: 100 belongs to success, since a finished last step still has decoding and storing
    to do. Integers stay integer arithmetic (29 of 100 steps is 29, not 28.99...)."""
    return max(0, min(99, int(done * 100 // total)))


@dataclass
class JobDeps:
    """What a job needs, built once per worker process."""

    store: SyncJobStore
    events: EventSender
    balancer: BalancerClient
    outputs: OutputStore
    inputs: InputImages
    settings: WorkerSettings
    progress_interval_s: float
    # A job that asked for previews sends one at most this often (each one is stored).
    preview_interval_s: float
    # Where identical jobs meet (dedupe.py); None runs every job itself.
    identical: IdenticalJobs | None = None


def stop_event(task_id: str, reason: str) -> TaskEvent:
    """The `canceled` event for a stop asked by the client or by the job's deadline."""
    error = DEADLINE_EXCEEDED if reason == CANCEL_BY_DEADLINE else None
    return TaskEvent(task_id=task_id, event=EventKind.CANCELED, error=error)


def run_job(task_id: str, deps: JobDeps, opened: OpenedRun | None = None) -> None:
    """Run the job unless it is gone, finished, canceled or past its deadline, or an identical
    job's result answers it; report events. `opened`: what the delivery read as it opened the
    run (`SyncJobStore.open_run`), else read here."""
    bind_ids(task_id=task_id)
    if opened is None:
        opened = deps.store.open_run(task_id)
    record = opened.record
    if record is None:
        log.warning("job record missing (expired?); dropping message")
        return
    bind_ids(request_id=record.request_id)
    log.info("job picked up", status=record.status.value, type=record.type)
    if record.status.is_terminal:
        log.info("job already finished; skipping", task_id=task_id, status=record.status.value)
        return
    if reason := opened.cancel_reason:
        deps.events.send(stop_event(task_id, reason))
        return
    if (ended := deadline_event(record, time.time())) is not None:
        deps.events.send(ended)
        return
    # Identical requests share one run: this job may be answered, lead or wait (dedupe.py).
    share_or_run(record, deps, lambda: _run(record, deps))


def _run(record: JobRecord, deps: JobDeps) -> None:
    task_id = record.task_id
    spec = task_type(record.type)
    # An inference job starts when a model server takes it; until then it waits, queued.
    if record.status is TaskStatus.QUEUED and spec.runs_on != "inference":
        deps.events.send(TaskEvent(task_id=task_id, event=EventKind.STARTED))

    ctx = _context(record, deps)
    task_input = spec.input_model.model_validate(record.input)
    module = handler_module(record.type)
    try:
        if spec.runs_on == "inference":
            prepared = module.prepare(task_input, ctx)
            _run_on_inference(record, prepared.model, prepared.request, prepared.extra, deps)
            return
        started = time.perf_counter()
        output: Output = module.run(task_input, ctx)
        compute_ms = round((time.perf_counter() - started) * 1000, 2)
    except Stopped:
        deps.events.send(stop_event(task_id, deps.store.cancel_reason(task_id) or "client"))
        return
    except JobFailed as exc:
        fail(deps, task_id, exc.code, str(exc))
        return
    result = _store_output(task_id, output, compute_ms, deps.outputs)
    log.info("job succeeded", task_id=task_id, images=len(result.images), compute_ms=compute_ms)
    _succeeded(record, result, deps)


def _succeeded(record: JobRecord, result: JobResult, deps: JobDeps) -> None:
    # Kept for identical jobs before the job ends: one that waits for it finds it once it has.
    store_success(record, result, deps)
    deps.events.send(TaskEvent(task_id=record.task_id, event=EventKind.SUCCEEDED, result=result))


def _context(record: JobRecord, deps: JobDeps) -> HandlerContext:
    task_id = record.task_id
    gate = ProgressGate(deps.progress_interval_s, deps.preview_interval_s)
    watch = CancelWatch(deps.store, task_id)

    def progress(fraction: float) -> None:
        if gate.admit(time.monotonic(), has_preview=False).send:
            deps.events.send(
                TaskEvent(
                    task_id=task_id, event=EventKind.PROGRESS, progress=progress_percent(fraction)
                )
            )

    def should_stop() -> bool:
        return watch.reason() is not None

    def image(field: str) -> Any:
        ref = record.input.get(field)
        if not isinstance(ref, str):
            raise InvalidImage("is missing", field=field)
        return deps.inputs.open(field, ref)

    return HandlerContext(
        task_id=task_id,
        settings=deps.settings,
        progress=progress,
        should_stop=should_stop,
        image=image,
    )


def _run_on_inference(
    record: JobRecord, model: str, request: Any, extra: dict[str, Any], deps: JobDeps
) -> None:
    task_id = record.task_id
    gate = ProgressGate(deps.progress_interval_s, deps.preview_interval_s)
    watch = CancelWatch(deps.store, task_id)
    opened = open_when_ready(record, model, request, deps)
    if opened is None:
        return
    first, lines = opened
    try:
        # Inside the try: a `started` that cannot be written closes the stream on its way out.
        if record.status is TaskStatus.QUEUED:
            deps.events.send(TaskEvent(task_id=task_id, event=EventKind.STARTED))
        for line in itertools.chain([first], lines):
            if isinstance(line, InferenceProgress):
                if reason := watch.reason():
                    lines.close()  # the inference server drops the request at its next step
                    deps.events.send(stop_event(task_id, reason))
                    return
                if line.step == 0:
                    continue  # the server took the job: `started` says so
                admitted = gate.admit(time.monotonic(), has_preview=line.preview_b64 is not None)
                if admitted.send:
                    preview = (
                        store_preview(task_id, line, deps.outputs)
                        if admitted.with_preview
                        else None
                    )
                    deps.events.send(
                        TaskEvent(
                            task_id=task_id,
                            event=EventKind.PROGRESS,
                            progress=progress_percent(line.step, max(line.total, 1)),
                            preview=preview,
                        )
                    )
            elif isinstance(line, InferenceResult):
                result = _store_inference_images(task_id, line, deps.outputs, extra)
                log.info(
                    "job succeeded",
                    task_id=task_id,
                    images=len(result.images),
                    compute_ms=line.compute_ms,
                )
                _succeeded(record, result, deps)
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


def _store_inference_images(
    task_id: str, result: InferenceResult, outputs: OutputStore, extra: dict[str, Any]
) -> JobResult:
    stored = []
    for index, image in enumerate(result.images):
        url = outputs.put(
            task_id,
            index,
            base64.b64decode(image.data_b64),
            extension=_extension(image.content_type),
        )
        stored.append(
            ImageOutput(
                url=url,
                content_type=image.content_type,
                width=image.width,
                height=image.height,
                seed=image.seed,
            )
        )
    return JobResult(
        images=stored,
        timings={"compute_ms": result.compute_ms, "batch_size": result.batch_size},
        **extra,
    )


def _extension(content_type: str) -> str:
    fmt = OutputFormat.of_content_type(content_type)
    return "bin" if fmt is None else fmt.extension


def _store_output(
    task_id: str, output: Output, compute_ms: float, outputs: OutputStore
) -> JobResult:
    counter = iter(range(1_000_000))

    def put(item: OutputImage) -> ImageOutput:
        data, content_type = images.encode(item.image, item.format)
        url = outputs.put(task_id, next(counter), data, extension=_extension(content_type))
        return ImageOutput(
            url=url,
            content_type=content_type,
            width=item.image.width,
            height=item.image.height,
            seed=item.seed,
        )

    stored = [put(item) for item in output.images]
    extra = _outputs_in(output.extra, put)
    return JobResult(images=stored, timings={"compute_ms": compute_ms, "batch_size": 1}, **extra)


def _outputs_in(value: Any, put: Callable[[OutputImage], ImageOutput]) -> Any:
    """The extra result keys with every OutputImage stored and replaced by its ImageOutput."""
    if isinstance(value, OutputImage):
        return put(value).model_dump()
    if isinstance(value, dict):
        return {k: _outputs_in(v, put) for k, v in value.items()}
    if isinstance(value, list):
        return [_outputs_in(v, put) for v in value]
    return value
