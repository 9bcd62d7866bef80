"""Fixtures of the worker's in-process tests: a Redis database of their own and a job's
collaborators (job store, local output store, an event sender whose notifier is down)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from celery import Celery

from apps.common.jobs.announce import SyncAnnouncer
from apps.common.jobs.store import SyncJobStore
from apps.common.security.url_guard import AllowList
from apps.common.storage.local import LocalOutputStore
from apps.common.storage.names import fixed_key
from apps.worker.balancer_client import BalancerClient
from apps.worker.dedupe import IdenticalJobs
from apps.worker.event_sender import EventSender
from apps.worker.inputs import InputImages
from apps.worker.run_job import JobDeps
from apps.worker.settings import WorkerSettings
from devtools.procs import free_port


@pytest.fixture
def redis_db() -> int:
    """The test module's own database (a module overrides it to keep apart from others)."""
    return 6


@pytest.fixture
def client(redis_url: str, redis_db: int) -> Iterator[redis.Redis]:
    # Its own database: the session Redis is shared with the stack's processes.
    base = redis_url.rsplit("/", 1)[0]
    own = redis.Redis.from_url(f"{base}/{redis_db}", decode_responses=True)
    yield own
    own.close()


@pytest.fixture
def worker_settings() -> WorkerSettings:
    return WorkerSettings(
        # Nothing listens there, and no retry: events land through the direct-write fallback.
        worker_event_retry_s=0,
        worker_progress_interval_ms=0,
    )


@pytest.fixture
def identical(client: redis.Redis) -> IdenticalJobs | None:
    """The identical-job rule's Redis side; off unless a module turns it on."""
    return None


@pytest.fixture
def deps(
    client: redis.Redis,
    tmp_path: Path,
    worker_settings: WorkerSettings,
    identical: IdenticalJobs | None,
) -> Iterator[JobDeps]:
    settings = worker_settings
    store = SyncJobStore(client, ttl_s=600)
    outputs = LocalOutputStore(
        tmp_path / "outputs", public_base="http://files.test", name_key=fixed_key("test-key")
    )
    # Its producer sends only webhooks, and these jobs have none.
    events = EventSender(
        settings, store, announcer=SyncAnnouncer(store, client, Celery("test_run_job"))
    )
    balancer = BalancerClient(f"http://127.0.0.1:{free_port()}", read_timeout_s=5)
    http = httpx.Client()
    yield JobDeps(
        store=store,
        events=events,
        balancer=balancer,
        outputs=outputs,
        inputs=InputImages(
            store=outputs,
            allow=AllowList.parse(""),
            max_bytes=1 << 20,
            max_pixels=1 << 22,
            http=http,
        ),
        settings=settings,
        progress_interval_s=0,
        preview_interval_s=0,
        identical=identical,
    )
    http.close()
    balancer.close()
