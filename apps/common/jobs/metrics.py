"""Where a job's time goes, as Prometheus histograms: queued, running, delivery.

Observed where the job's views are announced (gateway, notifier, or a worker writing directly), so
the stages add up across all replicas when summed.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram

from apps.common.jobs.record import JobRecord

_STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

JOBS_FINISHED = Counter(
    "fluxgate_jobs_finished_total", "Jobs that reached a final state", ["type", "status"]
)
QUEUED_SECONDS = Histogram(
    "fluxgate_job_queued_seconds", "Submit to start (queue wait)", ["type"], buckets=_STAGE_BUCKETS
)
RUNNING_SECONDS = Histogram(
    "fluxgate_job_running_seconds",
    "Start to the end of the work (inference, storing outputs)",
    ["type"],
    buckets=_STAGE_BUCKETS,
)
DELIVERY_SECONDS = Histogram(
    "fluxgate_job_delivery_seconds",
    "End of the work to the final state published to subscribers",
    ["type"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)


def observe_started(record: JobRecord) -> None:
    """Call once per job, when its start was announced."""
    if record.started_at is not None:
        QUEUED_SECONDS.labels(record.type).observe(max(0.0, record.started_at - record.created_at))


def observe_final(record: JobRecord) -> None:
    """Call once per job, when its final state was first announced."""
    JOBS_FINISHED.labels(record.type, record.status.value).inc()
    work_end = record.done_at or record.finished_at
    if record.started_at is not None and work_end is not None:
        RUNNING_SECONDS.labels(record.type).observe(max(0.0, work_end - record.started_at))
    if record.done_at is not None:
        DELIVERY_SECONDS.labels(record.type).observe(max(0.0, time.time() - record.done_at))
