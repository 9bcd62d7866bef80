"""A request's place in the inference server while it waits and runs: the events its HTTP
response streams, whether its caller left, and when its progress carries a preview."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass, field
from typing import Protocol

from apps.common.wire.inference import (
    BackendLoad,
    InferenceError,
    InferenceProgress,
    InferenceRequest,
    InferenceResult,
)
from apps.inference.engine import BatchItem
from apps.inference.metrics import STEP_SECONDS

InferenceEvent = InferenceProgress | InferenceResult | InferenceError
# Pushed after a request's last event: its stream ends.
DONE = object()


@dataclass
class Waiting:
    request: InferenceRequest
    key: Hashable
    cost: int
    arrived: float
    loop: asyncio.AbstractEventLoop
    # Previews of one request at least this far apart, whatever it asked (a few per second).
    preview_interval_s: float = 0.25
    events: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    left: threading.Event = field(default_factory=threading.Event)
    last_step_at: float | None = None
    last_preview_at: float | None = None
    # Its prompts through the text encoders while it waited (continuous scheduler), or None.
    encoded: object | None = None

    def push(self, item: object) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, item)

    def on_step(self, step: int, total: int, preview_b64: str | None = None) -> bool:
        now = time.perf_counter()
        if self.last_step_at is not None:
            STEP_SECONDS.observe(now - self.last_step_at)
        self.last_step_at = now
        self.push(InferenceProgress(step=step, total=total, preview_b64=preview_b64))
        return not self.left.is_set()

    def preview_due(self, step: int, total: int) -> bool:
        """Whether step `step`'s progress should carry a preview: asked for, not the last step
        (the image itself follows), every n-th step when n was given, and never sooner than
        `preview_interval_s` after the previous one (or after the first step)."""
        spec = self.request.input
        every = spec.preview_every_n_steps
        if not (spec.preview or every) or step >= total or (every and step % every):
            return False
        now = time.perf_counter()
        since = self.last_preview_at if self.last_preview_at is not None else self.last_step_at
        if since is not None and now - since < self.preview_interval_s:
            return False
        self.last_preview_at = now
        return True

    def item(self) -> BatchItem:
        return BatchItem(
            self.request, self.on_step, preview_due=self.preview_due, encoded=self.encoded
        )

    async def stream(self) -> AsyncIterator[InferenceEvent]:
        """The events pushed for this request, until its last one."""
        while True:
            item = await self.events.get()
            if item is DONE:
                return
            assert isinstance(item, InferenceProgress | InferenceResult | InferenceError)
            yield item


class Scheduler(Protocol):
    """What the HTTP layer serves requests through (the window batcher or the step scheduler)."""

    @property
    def models(self) -> list[str]: ...

    def start(self) -> None: ...

    async def stop(self) -> None: ...

    def load(self) -> BackendLoad: ...

    def check_device(self) -> None: ...

    def run(self, request: InferenceRequest) -> AsyncIterator[InferenceEvent]:
        """Progress events, then one result or error; leaving early takes the request out at
        the next step."""
        ...
