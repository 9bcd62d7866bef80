"""Runs generation requests on the engine's thread and streams their progress back to callers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from apps.common.contracts import (
    BackendLoad,
    InferenceError,
    InferenceProgress,
    InferenceRequest,
    InferenceResult,
)
from apps.common.logging import get_logger
from apps.inference.engine import Engine, GenerationCanceled

log = get_logger(__name__)

InferenceEvent = InferenceProgress | InferenceResult | InferenceError
_DONE = object()


class InferenceScheduler:
    """One request at a time on one device; callers wait in line and may leave at any step."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # torch work stays on one thread: a GPU runs one pipeline call at a time anyway.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self._counts_lock = threading.Lock()
        self._queued = 0
        self._running = 0
        self._avg_compute_s = 0.0

    @property
    def models(self) -> list[str]:
        return list(self._engine.models)

    def load(self) -> BackendLoad:
        return BackendLoad(
            queued=self._queued,
            running=self._running,
            capacity=1,
            queued_seconds=round(self._queued * self._avg_compute_s, 3),
            models=self.models,
        )

    def check_device(self) -> None:
        self._engine.check_device()

    async def run(self, request: InferenceRequest) -> AsyncIterator[InferenceEvent]:
        """Progress events, then one result or error; leaving early cancels the request."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[object] = asyncio.Queue()
        leave = threading.Event()

        def on_step(step: int, total: int) -> bool:
            loop.call_soon_threadsafe(events.put_nowait, InferenceProgress(step=step, total=total))
            return not leave.is_set()

        def work() -> None:
            with self._counts_lock:
                self._queued -= 1
                if leave.is_set():
                    loop.call_soon_threadsafe(events.put_nowait, _DONE)
                    return
                self._running += 1
            started = time.perf_counter()
            outcome: object
            try:
                outcome = self._engine.generate(request, on_step)
                elapsed = time.perf_counter() - started
                self._avg_compute_s = (
                    elapsed
                    if not self._avg_compute_s
                    else (0.8 * self._avg_compute_s + 0.2 * elapsed)
                )
            except GenerationCanceled:
                outcome = _DONE
            except Exception as exc:  # the pipeline's own failure goes to the caller, not up
                log.exception("generation failed", task_id=request.task_id)
                outcome = InferenceError(
                    code="pipeline_error", message=f"{type(exc).__name__}: {exc}"
                )
            finally:
                with self._counts_lock:
                    self._running -= 1
            loop.call_soon_threadsafe(events.put_nowait, outcome)
            if outcome is not _DONE:
                loop.call_soon_threadsafe(events.put_nowait, _DONE)

        with self._counts_lock:
            self._queued += 1
        self._executor.submit(work)
        try:
            while True:
                item = await events.get()
                if item is _DONE:
                    return
                assert isinstance(item, InferenceProgress | InferenceResult | InferenceError)
                yield item
        finally:
            leave.set()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
