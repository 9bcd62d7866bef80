"""Applies a job's events to its record in Redis and runs what follows (publish, observe, meter,
webhook); terminal events are never dropped.

The worker writes its own events: the job store's atomic script decides what an event changes
(only forward, next `seq`), wherever it runs, and every notifier relays the published view to
its subscribers. An HTTP hop through a notifier cost each event a request on both sides (a third
of a job's platform CPU in `make bench-overhead`) and decided nothing the script does not.
"""

from __future__ import annotations

import time

from redis.exceptions import RedisError
from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from apps.common.jobs.announce import SyncAnnouncer
from apps.common.jobs.followup import follows_up
from apps.common.jobs.store import SyncJobStore
from apps.common.jobs.view import JobViews
from apps.common.service.logging import get_logger
from apps.common.wire.contracts import EventKind, TaskEvent
from apps.worker.settings import WorkerSettings

log = get_logger(__name__)

# Events that a newer one replaces: lost to a Redis hiccup, they cost nothing.
_BEST_EFFORT = (EventKind.PROGRESS, EventKind.WAITING)


class EventSender:
    def __init__(
        self,
        settings: WorkerSettings,
        store: SyncJobStore,
        *,
        announcer: SyncAnnouncer,
    ) -> None:
        self._settings = settings
        self._store = store
        self._announcer = announcer
        self._views = JobViews.of(settings)

    def send(self, event: TaskEvent) -> None:
        """Progress and waiting notes are best effort (a newer one follows); every other event
        is retried while Redis is unreachable (a restart) for `worker_event_retry_s`, then
        raises `RedisError`: the job was not acknowledged and runs again."""
        if event.event not in (EventKind.STARTED, *_BEST_EFFORT) and event.at is None:
            # Stamped here so the job view can tell the work's time from the delivery's.
            event = event.model_copy(update={"at": time.time()})
        if event.event in _BEST_EFFORT:
            try:
                self._apply(event)
            except RedisError as exc:
                log.info("progress event dropped", task_id=event.task_id, error=repr(exc))
            return
        retrying = retry(
            retry=retry_if_exception_type(RedisError),
            wait=wait_exponential_jitter(multiplier=0.1, max=5.0),
            stop=stop_after_delay(self._settings.worker_event_retry_s),
            reraise=True,
        )
        retrying(self._apply)(event)

    def _apply(self, event: TaskEvent) -> None:
        outcome = self._store.apply(event)
        if outcome.record is None:
            log.error("event for a task that no longer exists", task_id=event.task_id)
            return
        if follows_up(outcome, event):
            self._announcer.announce(
                outcome.record, self._views.render(outcome.record, event.event)
            )
