"""Window batching (`FLUXGATE_INFERENCE_SCHEDULER=window`): gathers compatible requests into one
engine call that runs all their steps, and streams each its events.

The first waiting request opens a window of at most `max_wait_s`; compatible requests that arrive
in it join, up to `max_batch_size` images. The window closes early once no request has arrived for
`gap_s`, so a lone request waits only `gap_s` while a burst still lands in one batch. While the
engine runs a batch, new requests wait, and the next batch leaves as soon as the engine is free.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Hashable
from concurrent.futures import ThreadPoolExecutor

from apps.common.service.logging import get_logger
from apps.common.wire.inference import BackendLoad, InferenceError, InferenceRequest
from apps.inference.engine import Engine, ItemOutcome
from apps.inference.metrics import BATCH_IMAGES, BATCH_SECONDS, count_answer
from apps.inference.waiting import DONE, InferenceEvent, Waiting

log = get_logger(__name__)


class Batcher:
    def __init__(
        self, engine: Engine, *, max_batch_size: int, max_wait_s: float, gap_s: float | None = None
    ) -> None:
        self._engine = engine
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_wait_s
        self._gap_s = max_wait_s if gap_s is None else min(gap_s, max_wait_s)
        self._last_arrival = 0.0
        # torch work stays on one thread: a device runs one pipeline call at a time anyway.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self._waiting: list[Waiting] = []
        self._arrival = asyncio.Event()
        self._running = 0
        self._avg_batch_s = 0.0
        self._loop_task: asyncio.Task[None] | None = None

    @property
    def models(self) -> list[str]:
        return list(self._engine.models)

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._batch_forever())

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def load(self) -> BackendLoad:
        queued = sum(w.cost for w in self._waiting)
        batches_ahead = -(-queued // self._max_batch_size)
        return BackendLoad(
            queued=queued,
            running=self._running,
            capacity=self._max_batch_size,
            queued_seconds=round(batches_ahead * self._avg_batch_s, 3),
            models=self.models,
            **self._engine.holdings(),
        )

    def check_device(self) -> None:
        self._engine.check_device()

    async def run(self, request: InferenceRequest) -> AsyncIterator[InferenceEvent]:
        """Progress events, then one result or error; leaving early takes the request out of
        its batch at the next step."""
        waiting = Waiting(
            request=request,
            key=self._engine.batch_key(request),
            cost=min(self._engine.cost(request), self._max_batch_size),
            arrived=time.monotonic(),
            loop=asyncio.get_running_loop(),
        )
        self._waiting.append(waiting)
        self._last_arrival = waiting.arrived
        self._arrival.set()
        try:
            async for event in waiting.stream():
                yield event
        finally:
            waiting.left.set()
            if waiting in self._waiting:
                self._waiting.remove(waiting)

    async def _batch_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._waiting:
                self._arrival.clear()
                await self._arrival.wait()
                continue
            first = self._waiting[0]
            while not self._full(first.key):
                closes_at = min(first.arrived + self._max_wait_s, self._last_arrival + self._gap_s)
                remaining = closes_at - time.monotonic()
                if remaining <= 0:
                    break
                self._arrival.clear()
                try:
                    await asyncio.wait_for(self._arrival.wait(), timeout=remaining)
                except TimeoutError:
                    break
                if first not in self._waiting:
                    break  # it left while we waited: start over with the new oldest
            batch = self._take(first.key)
            if batch:
                await loop.run_in_executor(self._executor, self._run_batch, batch)

    def _full(self, key: Hashable) -> bool:
        return sum(w.cost for w in self._waiting if w.key == key) >= self._max_batch_size

    def _take(self, key: Hashable) -> list[Waiting]:
        batch: list[Waiting] = []
        size = 0
        for waiting in list(self._waiting):
            if waiting.key != key or size + waiting.cost > self._max_batch_size:
                continue
            self._waiting.remove(waiting)
            if not waiting.left.is_set():
                batch.append(waiting)
                size += waiting.cost
        return batch

    def _run_batch(self, batch: list[Waiting]) -> None:
        self._running = sum(w.cost for w in batch)
        started = time.perf_counter()
        try:
            outcomes: list[ItemOutcome] = self._engine.run_batch([w.item() for w in batch])
        except Exception as exc:  # the pipeline's own failure goes to every caller, not up
            log.exception("batch failed", size=len(batch))
            error = InferenceError(code="pipeline_error", message=f"{type(exc).__name__}: {exc}")
            outcomes = [error] * len(batch)
        finally:
            self._running = 0
        elapsed = time.perf_counter() - started
        self._avg_batch_s = (
            elapsed if not self._avg_batch_s else (0.8 * self._avg_batch_s + 0.2 * elapsed)
        )
        BATCH_IMAGES.observe(sum(w.cost for w in batch))
        BATCH_SECONDS.observe(elapsed)
        for waiting, outcome in zip(batch, outcomes, strict=True):
            count_answer(outcome)
            if outcome is not None:
                waiting.push(outcome)
            waiting.push(DONE)
