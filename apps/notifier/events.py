"""Event ingest: verify, apply to the job record, publish the new view to every notifier."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from apps.common.jobs.announce import Announcer
from apps.common.jobs.followup import follows_up
from apps.common.jobs.positions import QueuePositions
from apps.common.jobs.record import JobRecord
from apps.common.jobs.store import JobStore
from apps.common.jobs.view import JobViews
from apps.common.security.signing import verify_internal
from apps.common.service.errors import InvalidInput, NotFound, Unauthorized
from apps.common.service.request_context import bind_ids
from apps.common.wire.contracts import JobView, TaskEvent
from apps.notifier.settings import NotifierSettings


@dataclass(frozen=True)
class IngestOutcome:
    applied: bool
    view: JobView


class EventIngest:
    def __init__(
        self,
        store: JobStore,
        settings: NotifierSettings,
        announcer: Announcer,
        positions: QueuePositions,
    ) -> None:
        self._store = store
        self._settings = settings
        self._announcer = announcer
        self._positions = positions
        self.views = JobViews.of(settings)

    async def live_view(self, record: JobRecord, event: str | None = None) -> JobView:
        """The view with the job's current place in its queue (while queued)."""
        return self.views.render(record, event, queue_position=await self._positions.of(record))

    async def ingest(
        self, body: bytes, *, timestamp: str | None, signature: str | None
    ) -> IngestOutcome:
        """Apply one signed event; a duplicate or stale one changes and publishes nothing."""
        if not verify_internal(
            body, self._settings.internal_secret, timestamp=timestamp, signature=signature
        ):
            raise Unauthorized("bad or missing event signature")
        try:
            event = TaskEvent.model_validate_json(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first.get("loc", ())) or "body"
            raise InvalidInput(f"{field}: {first['msg']}", field=field) from exc
        bind_ids(task_id=event.task_id)
        outcome = await self._store.apply(event)
        if outcome.record is None:
            raise NotFound(f"task {event.task_id} not found")
        view = self.views.render(outcome.record, event.event.value if outcome.applied else None)
        if follows_up(outcome, event):
            announced = view if outcome.applied else self.views.render(outcome.record, event.event)
            await self._announcer.announce(outcome.record, announced)
        return IngestOutcome(applied=outcome.applied, view=view)
