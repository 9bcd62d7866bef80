"""The worker's `/metrics`: every pool process's counters, plus the depth of each Celery queue.

Jobs run in Celery's pool processes, so their counters are kept in prometheus-client's
multiprocess files (`PROMETHEUS_MULTIPROC_DIR`, set by `python -m apps.worker` before anything
imports prometheus-client) and summed by an HTTP server in the worker's main process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from apps.common.redis import keys
from apps.common.service.logging import get_logger
from apps.common.wire.queues import ALL_QUEUES, PRIORITY_LANES, lane_name
from apps.worker.metrics_dir import MULTIPROC_ENV

log = get_logger(__name__)

TASKS = Counter(
    "fluxgate_worker_tasks_total",
    "Celery task runs by final state (SUCCESS, RETRY, FAILURE)",
    ["task", "state"],
)
TASK_SECONDS = Histogram(
    "fluxgate_worker_task_seconds",
    "Time one task run held a worker process",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
_started: dict[str, float] = {}


class QueueDepthCollector(Collector):
    """`fluxgate_queue_depth{queue}`: jobs waiting per Celery queue, all priority lanes, staged
    for fair share or on the Celery lanes."""

    def __init__(self, redis_url: str) -> None:
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "fluxgate_queue_depth", "Messages waiting in each Celery queue", labels=["queue"]
        )
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                for queue in ALL_QUEUES:
                    for lane in range(PRIORITY_LANES):
                        pipe.llen(lane_name(queue, lane))
                    # Jobs staged for fair share wait too (apps/common/jobs/fairshare.py).
                    pipe.llen(keys.fair_depth_key(queue))
                lengths = pipe.execute()
        except redis.RedisError as exc:
            log.warning("queue depth unavailable", error=repr(exc))
            return
        for index, queue in enumerate(ALL_QUEUES):
            lanes = lengths[index * (PRIORITY_LANES + 1) : (index + 1) * (PRIORITY_LANES + 1)]
            family.add_metric([queue], float(sum(lanes)))
        yield family


def serve(host: str, port: int, redis_url: str) -> None:
    """Start the metrics HTTP server in this (the main) process."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        MultiProcessCollector(registry)
    else:
        log.warning(f"no {MULTIPROC_ENV}: only the main process's metrics are served")
    registry.register(QueueDepthCollector(redis_url))
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        # A second worker on the same host: it still works, only unscraped.
        log.error("worker metrics port unavailable", host=host, port=port, error=repr(exc))
        return
    log.info("worker metrics listening", host=host, port=port)


def task_started(task_id: str) -> None:
    _started[task_id] = time.perf_counter()


def task_finished(task_name: str, task_id: str, state: str | None) -> None:
    started = _started.pop(task_id, None)
    TASKS.labels(task_name, state or "UNKNOWN").inc()
    if started is not None:
        TASK_SECONDS.labels(task_name).observe(time.perf_counter() - started)


def process_exited(pid: int, **_: Any) -> None:
    if os.environ.get(MULTIPROC_ENV):
        mark_process_dead(pid)
