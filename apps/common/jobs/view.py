"""The public view of a job record: what `GET`, WebSocket, SSE and webhooks show."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from apps.common.jobs.record import JobRecord
from apps.common.service.settings import CommonSettings
from apps.common.wire.contracts import (
    EventKind,
    JobView,
    StageTimings,
    TaskStatus,
    TaskUrls,
)


def iso_utc(ts: float) -> str:
    """An epoch time as the API writes timestamps: ISO 8601, UTC, milliseconds, `Z`."""
    return (
        datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _iso(ts: float | None) -> str | None:
    return None if ts is None else iso_utc(ts)


def _span_ms(start: float | None, end: float | None) -> float | None:
    # Spans may join two clocks (a worker's and Redis's): never report a negative one.
    return None if start is None or end is None else max(0.0, round((end - start) * 1000, 1))


def task_urls(task_id: str, *, public_base: str, public_ws_base: str) -> TaskUrls:
    return TaskUrls(
        status=f"{public_base}/tasks/{task_id}",
        cancel=f"{public_base}/tasks/{task_id}/cancel",
        ws=f"{public_ws_base}/ws/tasks/{task_id}",
        events=f"{public_base}/tasks/{task_id}/events",
    )


def job_view(
    record: JobRecord,
    *,
    public_base: str,
    public_ws_base: str,
    event: EventKind | str | None = None,
    queue_position: int | None = None,
) -> JobView:
    """The public view of a record (the README's `GET /tasks/{task_id}`).

    Stage timings: `queued_ms` from submit to start, `running_ms` from start to the end of the
    work, `delivery_ms` from there until the final state was recorded and published.
    """
    work_end = record.done_at if record.done_at is not None else record.finished_at
    return JobView(
        task_id=record.task_id,
        type=record.type,
        status=record.status,
        progress=record.progress,
        seq=record.seq,
        created_at=_iso(record.created_at),
        started_at=_iso(record.started_at),
        finished_at=_iso(record.finished_at),
        result=record.result,
        cached=record.cached and record.status is TaskStatus.SUCCEEDED,
        # A preview is live news of the image forming: once the job ends, `result` (or `error`)
        # is the news, and final views and `completed` webhooks stay as they were.
        preview=record.preview if record.status is TaskStatus.RUNNING else None,
        error=record.error,
        queue_position=queue_position if record.status is TaskStatus.QUEUED else None,
        waiting_for=record.waiting_for if record.status is TaskStatus.QUEUED else None,
        urls=task_urls(record.task_id, public_base=public_base, public_ws_base=public_ws_base),
        timings=StageTimings(
            queued_ms=_span_ms(record.created_at, record.started_at),
            running_ms=_span_ms(record.started_at, work_end),
            delivery_ms=_span_ms(record.done_at, record.finished_at),
        ),
        cost=record.cost,
        event=event,
    )


@dataclass(frozen=True)
class JobViews:
    """Renders records as public views with one deployment's URLs; built once from settings."""

    public_base: str
    public_ws_base: str

    @classmethod
    def of(cls, settings: CommonSettings) -> JobViews:
        return cls(public_base=settings.public_base, public_ws_base=settings.public_ws_base)

    def render(
        self,
        record: JobRecord,
        event: EventKind | str | None = None,
        *,
        queue_position: int | None = None,
    ) -> JobView:
        """`record`'s view as of `event` (None for a plain read), placed in its queue."""
        return job_view(
            record,
            public_base=self.public_base,
            public_ws_base=self.public_ws_base,
            event=event,
            queue_position=queue_position,
        )
