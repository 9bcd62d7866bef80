"""Long-poll wait: hold a request until a task is terminal or the timeout passes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Gauge

from apps.common.jobs.record import JobRecord
from apps.common.jobs.store import JobStore
from apps.common.service.errors import NotFound
from apps.notifier.hub import EventHub, Published

WAITERS = Gauge("fluxgate_notifier_waiters", "Long-poll requests waiting for a task to end")


@dataclass(frozen=True)
class WaitOutcome:
    terminal: bool
    text: str


async def wait_for_terminal(
    hub: EventHub,
    store: JobStore,
    task_id: str,
    *,
    timeout_s: float,
    render: Callable[[JobRecord], str],
) -> WaitOutcome:
    """The terminal view as soon as there is one, else the current view after `timeout_s`."""
    async with hub.subscribe(task_id) as queue:
        record = await store.get(task_id)
        if record is None:
            raise NotFound(f"task {task_id} not found")
        if record.status.is_terminal:
            return WaitOutcome(True, render(record))

        async def next_terminal() -> Published:
            while True:
                message = await queue.get()
                if message is not None and message.terminal:
                    return message

        try:
            with WAITERS.track_inprogress():
                message = await asyncio.wait_for(next_terminal(), timeout=timeout_s)
            return WaitOutcome(True, message.text)
        except TimeoutError:
            pass
    record = await store.get(task_id)
    if record is None:
        raise NotFound(f"task {task_id} not found")
    return WaitOutcome(record.status.is_terminal, render(record))
