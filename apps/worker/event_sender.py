"""Sends a job's events to the notifier, signed; terminal events are never dropped."""

from __future__ import annotations

import time

import httpx
from tenacity import (
    RetryCallState,
    RetryError,
    retry,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from apps.common.jobs.announce import SyncAnnouncer
from apps.common.jobs.followup import follows_up
from apps.common.jobs.store import SyncJobStore
from apps.common.jobs.view import JobViews
from apps.common.security.signing import sign_internal
from apps.common.service.logging import get_logger
from apps.common.service.request_context import outgoing_headers
from apps.common.wire.contracts import EventKind, TaskEvent
from apps.worker.settings import WorkerSettings

log = get_logger(__name__)


class _NotifierDown(Exception):
    def __init__(self, message: str, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(30.0, max(0.0, float(response.headers.get("retry-after", "0"))))
    except ValueError:
        return 0.0


class _NotifierRefused(Exception):
    pass


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
        self._client = httpx.Client(
            base_url=settings.notifier_url.rstrip("/"), timeout=httpx.Timeout(5.0, connect=2.0)
        )

    def send(self, event: TaskEvent) -> None:
        """Progress and waiting notes are best effort (a newer one follows); every other event
        must land."""
        if event.event not in (EventKind.STARTED, EventKind.PROGRESS, EventKind.WAITING) and (
            event.at is None
        ):
            # Stamped here so the job view can tell the work's time from the delivery's.
            event = event.model_copy(update={"at": time.time()})
        body = event.model_dump_json(exclude_none=True).encode()
        if event.event in (EventKind.PROGRESS, EventKind.WAITING):
            try:
                self._post(body)
            except (_NotifierDown, _NotifierRefused) as exc:
                log.info("progress event dropped", task_id=event.task_id, error=str(exc))
            return
        try:
            self._post_with_retries(body)
        except (RetryError, _NotifierRefused):
            # The notifier stayed down: write the event ourselves so the result is never lost.
            # What follows is what the notifier would have done: publish, meter, webhook.
            log.error(
                "notifier unreachable; applying event directly",
                task_id=event.task_id,
                event_kind=event.event.value,
            )
            outcome = self._store.apply(event)
            if outcome.record is not None and follows_up(outcome, event):
                self._announcer.announce(
                    outcome.record, self._views.render(outcome.record, event.event)
                )

    def _post(self, body: bytes) -> None:
        headers = {
            "content-type": "application/json",
            **sign_internal(body, self._settings.internal_secret),
            **outgoing_headers(),
        }
        try:
            response = self._client.post("/internal/events", content=body, headers=headers)
        except httpx.TransportError as exc:
            raise _NotifierDown(repr(exc)) from exc
        if response.status_code >= 500:
            # 503 with Retry-After: its Redis is restarting; come back when it says.
            raise _NotifierDown(f"notifier answered {response.status_code}", _retry_after(response))
        if response.status_code == 404:
            log.error("event for a task that no longer exists", body=response.text[:300])
        elif response.status_code >= 400:
            # 401 (secrets or clocks differ), 413, 422: retrying will not help, writing will.
            raise _NotifierRefused(
                f"notifier answered {response.status_code}: {response.text[:300]}"
            )

    def _post_with_retries(self, body: bytes) -> None:
        backoff = wait_exponential_jitter(multiplier=0.1, max=5.0)

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            asked = error.retry_after_s if isinstance(error, _NotifierDown) else 0.0
            return max(backoff(state), asked)

        retrying = retry(
            retry=retry_if_exception_type(_NotifierDown),
            wait=wait,
            stop=stop_after_delay(self._settings.worker_event_retry_s),
            reraise=False,
        )
        retrying(self._post)(body)

    def close(self) -> None:
        self._client.close()
