"""Continuous batching (`FLUXGATE_INFERENCE_SCHEDULER=continuous`, the default): the server
schedules denoising steps, not whole batches.

Requests of one shape (`StepEngine.shape_key`) form a step group: each model call advances every
row of the group by one step of its own schedule, finished rows leave (decoded, then encoded off
the engine thread) and waiting requests of that shape join before the next call, up to
`max_batch_size` images; a full shape does not hold up requests of other shapes.

Groups take turns call by call so that every running image gets an equal share of the model's
time (start-time fair queueing over groups): at each call a group's virtual time grows by the
call's duration divided by its images, and the group with the smallest virtual time runs next
(ties: the one that ran longest ago). A group that starts takes the smallest virtual time of the
running groups, so a new shape runs at the next call. Between two calls of a group g (r_g images,
calls of c_g seconds) another group h runs at most ceil((c_g / r_g) / (c_h / r_h)) calls: a
one-image request waits at most one call of each other shape between two of its steps when its
own calls take no longer than theirs; a group of r_h images whose calls take as long runs r_h.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from apps.common.service.logging import get_logger
from apps.common.wire.inference import BackendLoad, InferenceError, InferenceRequest
from apps.inference.engine import ItemOutcome, RequestRefused, Retired, StepEngine, StepGroup
from apps.inference.metrics import BATCH_IMAGES, BATCH_SECONDS, count_answer
from apps.inference.waiting import DONE, InferenceEvent, Waiting

log = get_logger(__name__)


@dataclass
class _Active:
    """A step group and its place in the turn order."""

    group: StepGroup
    key: Hashable
    # Its virtual time: the model time each of its images has had (seconds), plus its start.
    pass_: float
    # The call counter at its last call (-1: none yet); ties go to the longest waiting.
    last_run: int = -1


class StepScheduler:
    def __init__(
        self,
        engine: StepEngine,
        *,
        max_batch_size: int,
        preview_interval_s: float = 0.25,
    ) -> None:
        self._engine = engine
        self._max_rows = max_batch_size
        self._preview_interval_s = preview_interval_s
        # Arrivals cross from the event loop to the engine thread under this lock; every other
        # field below it is the engine thread's alone.
        self._lock = threading.Lock()
        self._arrivals: deque[Waiting] = deque()
        self._queued_rows = 0
        self._running_rows = 0
        self._wake = threading.Event()
        self._stopping = False
        self._queue: list[Waiting] = []
        self._groups: list[_Active] = []
        self._owners: dict[int, Waiting] = {}
        self._admitted_at: dict[int, float] = {}
        # Rows a shape may run in one call, lowered when a call of that shape ran out of memory.
        self._row_limits: dict[Hashable, int] = {}
        self._calls = 0
        self._avg_run_s = 0.0
        self._thread: threading.Thread | None = None
        # Image encoding (PNG, JPEG) takes tens of ms at 1024 px: off the engine thread.
        self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode")

    @property
    def models(self) -> list[str]:
        return list(self._engine.models)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def start(self) -> None:
        # torch work stays on this one thread: a device runs one model call at a time anyway.
        self._thread = threading.Thread(target=self._run_forever, name="engine", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        self._encoder.shutdown(wait=True)

    def load(self) -> BackendLoad:
        with self._lock:
            queued, running = self._queued_rows, self._running_rows
        # A queued image starts once enough running ones finish: about one request's run per
        # `max_batch_size` images ahead of it.
        rounds_ahead = math.ceil(queued / self._max_rows)
        return BackendLoad(
            queued=queued,
            running=running,
            capacity=self._max_rows,
            queued_seconds=round(rounds_ahead * self._avg_run_s, 3),
            models=self.models,
            **self._engine.holdings(),
        )

    def check_device(self) -> None:
        self._engine.check_device()

    async def run(self, request: InferenceRequest) -> AsyncIterator[InferenceEvent]:
        """Progress events, then one result or error; leaving early takes the request's rows out
        at the next step."""
        waiting = Waiting(
            request=request,
            key=self._engine.shape_key(request),
            cost=self._engine.cost(request),
            arrived=time.monotonic(),
            loop=asyncio.get_running_loop(),
            preview_interval_s=self._preview_interval_s,
        )
        with self._lock:
            self._arrivals.append(waiting)
            self._queued_rows += waiting.cost
        self._wake.set()
        try:
            async for event in waiting.stream():
                yield event
        finally:
            waiting.left.set()
            self._wake.set()  # a request that leaves while queued is dropped at once

    # --- the engine thread ----------------------------------------------------------------------

    def _run_forever(self) -> None:
        while not self._stopping:
            try:
                self._wake.clear()
                self._admit()
                self._encode_ahead()
                active = self._next_group()
                if active is None:
                    self._wake.wait()
                    continue
                self._step(active)
            except Exception as exc:  # a fault of the loop itself must not leave callers waiting
                log.exception("engine loop failed")
                self._answer_all(self._error(exc))
        self._answer_all(_stopped())

    def _answer_all(self, error: InferenceError) -> None:
        """End every running and waiting request with `error`."""
        groups, self._groups = self._groups, []
        for active in groups:
            self._retire_all(active.group.fail(error))
        queue, self._queue = self._queue, []
        with self._lock:
            queue += self._arrivals
            self._arrivals.clear()
        for waiting in queue:
            self._dequeued(waiting)
            self._answer(waiting, error)

    def _admit(self) -> None:
        """Move arrivals into the queue, then let queued requests join a group of their shape
        with room, oldest first; a request whose shape has no group opens one."""
        with self._lock:
            self._queue.extend(self._arrivals)
            self._arrivals.clear()
        joining: dict[int, tuple[_Active, list[Waiting]]] = {}
        for waiting in list(self._queue):
            if waiting.left.is_set():
                self._queue.remove(waiting)
                self._dequeued(waiting)
                waiting.push(DONE)
                continue
            active = self._room_for(waiting, joining)
            if active is None:
                continue
            self._queue.remove(waiting)
            joining.setdefault(id(active), (active, []))[1].append(waiting)
        for active, newcomers in joining.values():
            self._join(active, newcomers)

    def _encode_ahead(self) -> None:
        """Run the text encoders over requests that wait for room, in one call, up to one batch
        limit of images per shape: one call for many prompts costs little more than for one,
        and joining then costs no encoder call of its own."""
        ahead: dict[Hashable, int] = {}
        for waiting in self._queue:
            if waiting.encoded is not None:
                ahead[waiting.key] = ahead.get(waiting.key, 0) + waiting.cost
        todo = []
        for waiting in self._queue:
            wanted = waiting.encoded is None and not waiting.left.is_set()
            if wanted and ahead.get(waiting.key, 0) < self._max_rows:
                todo.append(waiting)
                ahead[waiting.key] = ahead.get(waiting.key, 0) + waiting.cost
        if not todo:
            return
        try:
            encoded = self._engine.encode_prompts([w.request for w in todo])
        except Exception:
            log.warning("encoding ahead failed; they are encoded when they join", exc_info=True)
            return
        for waiting, prompts in zip(todo, encoded, strict=True):
            waiting.encoded = prompts

    def _room_for(
        self, waiting: Waiting, joining: dict[int, tuple[_Active, list[Waiting]]]
    ) -> _Active | None:
        limit = self._row_limits.get(waiting.key, self._max_rows)
        same_shape = [a for a in self._groups if a.key == waiting.key]
        for active in same_shape:
            rows = active.group.rows + sum(w.cost for w in joining.get(id(active), (active, []))[1])
            # A request bigger than the limit still runs, alone.
            if rows == 0 or rows + waiting.cost <= limit:
                return active
        if same_shape:
            return None  # its shape is full: it waits for rows to finish
        try:
            group = self._engine.open_group(waiting.request)
        except RequestRefused as refused:
            # Its model or an adapter cannot be had here: it fails alone, the rest go on.
            self._queue.remove(waiting)
            self._dequeued(waiting)
            self._answer(waiting, refused.error())
            return None
        active = _Active(
            group=group,
            key=waiting.key,
            pass_=min((a.pass_ for a in self._groups), default=0.0),
        )
        self._groups.append(active)
        return active

    def _join(self, active: _Active, newcomers: list[Waiting]) -> None:
        items = []
        for waiting in newcomers:
            self._dequeued(waiting)
            with self._lock:
                self._running_rows += waiting.cost
            item = waiting.item()
            self._owners[id(item)] = waiting
            self._admitted_at[id(item)] = time.perf_counter()
            items.append(item)
        try:
            self._retire_all(active.group.admit(items))
        except Exception as exc:
            if not self._engine.is_out_of_memory(exc) or len(items) == 1:
                log.exception("admission failed", size=len(items))
                self._retire_all([Retired(item, self._failure(exc)) for item in items])
            else:
                # Their prompts and noise did not fit at once: one request at a time.
                for item in items:
                    try:
                        self._retire_all(active.group.admit([item]))
                    except Exception as one:
                        self._retire(Retired(item, self._failure(one)))
        if not active.group.rows:
            self._groups.remove(active)

    def _error(self, exc: BaseException) -> InferenceError:
        if self._engine.is_out_of_memory(exc):
            return InferenceError(code="out_of_memory", message=str(exc)[:300])
        return InferenceError(code="pipeline_error", message=f"{type(exc).__name__}: {exc}")

    def _failure(self, exc: BaseException) -> Callable[[], ItemOutcome]:
        error = self._error(exc)
        return lambda: error

    def _next_group(self) -> _Active | None:
        """The running group with the smallest virtual time (ties: the one that ran longest ago)."""
        running = [a for a in self._groups if a.group.rows]
        if not running:
            return None
        return min(running, key=lambda a: (a.pass_, a.last_run))

    def _step(self, active: _Active) -> None:
        rows = active.group.rows
        started = time.perf_counter()
        try:
            retired = active.group.step()
        except Exception as exc:
            self._step_failed(active, rows, exc)
            return
        elapsed = time.perf_counter() - started
        BATCH_IMAGES.observe(rows)
        BATCH_SECONDS.observe(elapsed)
        active.pass_ += active.group.last_call_s / rows
        active.last_run = self._calls
        self._calls += 1
        self._retire_all(retired)
        if not active.group.rows:
            self._groups.remove(active)

    def _step_failed(self, active: _Active, rows: int, exc: Exception) -> None:
        if self._engine.is_out_of_memory(exc):
            other = active.group.split()
            if other.rows:
                # Run the halves as two groups of the same shape, and let the shape grow no
                # bigger than a half again: a call of `rows` rows does not fit.
                log.warning("out of memory; splitting the step group", rows=rows)
                self._row_limits[active.key] = max(1, max(active.group.rows, other.rows))
                self._groups.append(_Active(other, active.key, active.pass_, active.last_run))
                return
            log.warning("out of memory on a single request", rows=rows)
        else:
            log.exception("step failed", rows=rows)
        self._retire_all(active.group.fail(self._error(exc)))
        self._groups.remove(active)

    # --- answers --------------------------------------------------------------------------------

    def _retire_all(self, retired: list[Retired]) -> None:
        for one in retired:
            self._retire(one)

    def _retire(self, retired: Retired) -> None:
        waiting = self._owners.pop(id(retired.item))
        admitted = self._admitted_at.pop(id(retired.item))
        self._avg_run_s = _ewma(self._avg_run_s, time.perf_counter() - admitted)
        with self._lock:
            self._running_rows -= waiting.cost
        self._encoder.submit(self._finish, waiting, retired)

    def _finish(self, waiting: Waiting, retired: Retired) -> None:
        """On the encoder thread: make the outcome (encode the images) and answer."""
        try:
            outcome = retired.finish()
        except Exception as exc:
            log.exception("encoding failed", task_id=waiting.request.task_id)
            outcome = InferenceError(code="pipeline_error", message=f"{type(exc).__name__}: {exc}")
        self._answer(waiting, outcome)

    def _answer(self, waiting: Waiting, outcome: ItemOutcome) -> None:
        count_answer(outcome)
        if outcome is not None:
            waiting.push(outcome)
        waiting.push(DONE)

    def _dequeued(self, waiting: Waiting) -> None:
        with self._lock:
            self._queued_rows -= waiting.cost


def _ewma(average: float, sample: float) -> float:
    return sample if not average else 0.8 * average + 0.2 * sample


def _stopped() -> InferenceError:
    return InferenceError(code="unavailable", message="the inference server is shutting down")
