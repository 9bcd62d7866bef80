"""The gateway's TaskService in process, against the session's real redis-server (no uvicorn, no
worker): what an accepted submit writes, that a refused one (rate or cap) leaves nothing, that
an idempotent replay spends no rate, and cancelling a queued job."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from PIL import Image

from apps.common.jobs.announce import Announcer
from apps.common.jobs.record import new_job
from apps.common.jobs.store import JobStore
from apps.common.redis import keys
from apps.common.security.apikeys import ApiKey
from apps.common.service.errors import RateLimited, TooManyJobs
from apps.common.storage import make_output_store
from apps.common.storage.names import INPUTS_PREFIX
from apps.common.wire.contracts import FluxRequest, TaskStatus
from apps.common.wire.queues import celery_priority, lane_name, make_producer
from apps.gateway.enqueue import AlreadyBound, JobQueue
from apps.gateway.idempotency import IdempotencyKeys, digest
from apps.gateway.jobs_in import build_job, flux_job
from apps.gateway.limits import KeyAdmission
from apps.gateway.service import TaskService
from apps.gateway.settings import GatewaySettings
from apps.gateway.submission import NewJob, SubmitOptions

# A database of its own: the session stack's worker consumes the lanes of database 0.
OWN_DB = 10
FLUX_LANE = lane_name("gpu", celery_priority(5))
STYLIZE_LANE = lane_name("cpu", celery_priority(5))


@dataclass
class Gateway:
    service: TaskService
    queue: JobQueue
    store: JobStore
    redis: aioredis.Redis
    outputs: Path
    settings: GatewaySettings


Scenario = Callable[[Gateway], Awaitable[None]]


@pytest.fixture
def run(redis_url: str, tmp_path: Path) -> Callable[[Scenario], None]:
    """Runs a scenario against a TaskService wired as the gateway's lifespan wires it."""
    url = f"{redis_url.rsplit('/', 1)[0]}/{OWN_DB}"
    settings = GatewaySettings(redis_url=url, output_dir=str(tmp_path / "outputs"))

    @asynccontextmanager
    async def gateway() -> AsyncIterator[Gateway]:
        client = aioredis.Redis.from_url(url, decode_responses=True)
        await client.flushdb()
        producer = make_producer(url, visibility_timeout_s=60)
        store = JobStore(client, ttl_s=settings.job_ttl_s)
        queue = JobQueue(client, producer, job_ttl_s=settings.job_ttl_s)
        service = TaskService(
            store,
            queue,
            client,
            Announcer(store, client, producer),
            settings,
            make_output_store(settings),
        )
        try:
            yield Gateway(service, queue, store, client, tmp_path / "outputs", settings)
        finally:
            producer.close()
            await client.aclose()

    def runner(scenario: Scenario) -> None:
        async def main() -> None:
            async with gateway() as gw:
                await scenario(gw)

        asyncio.run(main())

    return runner


def api_key(
    name: str, *, rate_per_s: float = 100.0, burst: int = 100, max_active: int = 100
) -> ApiKey:
    return ApiKey(
        id=f"key_{name}",
        name=name,
        created_at=time.time(),
        rate_per_s=rate_per_s,
        burst=burst,
        max_active=max_active,
    )


def flux(prompt: str = "a fox") -> NewJob:
    return flux_job(FluxRequest.model_validate({"prompt": prompt}))


def stylize_upload(settings: GatewaySettings) -> NewJob:
    """A job with an uploaded image, which the gateway stores before it accepts the job."""
    png = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(png, format="PNG")
    return build_job({"type": "stylize"}, {"image": png.getvalue()}, settings)


async def nothing_left(gw: Gateway, caller: ApiKey, idempotency_key: str, jobs: int) -> None:
    """Only the `jobs` accepted so far exist: no other record or message, the key is free and
    no refused job's inputs are stored."""
    assert len([k async for k in gw.redis.scan_iter(keys.job_key("*"))]) == jobs
    assert await gw.redis.llen(FLUX_LANE) + await gw.redis.llen(STYLIZE_LANE) == jobs
    assert await gw.redis.zcard(keys.owner_tasks_key(caller.id)) == jobs
    held = keys.idempotency_key(caller.id, digest(idempotency_key))
    assert await gw.redis.exists(held) == 0
    inputs = gw.outputs / INPUTS_PREFIX
    assert not inputs.exists() or not any(inputs.iterdir())


def test_a_submit_writes_its_record_listing_and_message(run: Callable[[Scenario], None]) -> None:
    async def scenario(gw: Gateway) -> None:
        caller = api_key("writer")
        submitted = await gw.service.submit(flux(), SubmitOptions(), caller)
        record = submitted.record
        assert not submitted.replayed
        stored = await gw.store.get(record.task_id)
        assert stored is not None and stored.status is TaskStatus.QUEUED
        assert stored.owner == caller.id and stored.queue_ticket == record.queue_ticket
        assert await gw.redis.zscore(keys.owner_tasks_key(caller.id), record.task_id) is not None
        message = json.loads(await gw.redis.rpop(FLUX_LANE))  # type: ignore[arg-type]
        assert message["headers"]["id"] == record.task_id
        assert message["headers"]["task"] == "fluxgate.flux"

    run(scenario)


def test_a_submit_over_the_rate_leaves_nothing(run: Callable[[Scenario], None]) -> None:
    async def scenario(gw: Gateway) -> None:
        caller = api_key("rate", rate_per_s=0.001, burst=1)
        await gw.service.submit(flux(), SubmitOptions(), caller)
        with pytest.raises(RateLimited) as refused:
            await gw.service.submit(
                stylize_upload(gw.settings), SubmitOptions(idempotency_key="k-rate"), caller
            )
        assert refused.value.retry_after_s is not None and refused.value.retry_after_s > 1
        await nothing_left(gw, caller, "k-rate", jobs=1)

    run(scenario)


def test_a_submit_over_the_cap_leaves_nothing(run: Callable[[Scenario], None]) -> None:
    async def scenario(gw: Gateway) -> None:
        # A bucket that barely refills, so a token spent by the refusal would show.
        caller = api_key("cap", max_active=1, rate_per_s=0.001, burst=3)
        await gw.service.submit(flux(), SubmitOptions(), caller)
        with pytest.raises(TooManyJobs):
            await gw.service.submit(
                stylize_upload(gw.settings), SubmitOptions(idempotency_key="k-cap"), caller
            )
        await nothing_left(gw, caller, "k-cap", jobs=1)
        assert await gw.redis.zcard(keys.active_jobs_key(caller.id)) == 1
        # The refusal spent no token: the bucket holds what the one accepted submit left.
        bucket = keys.rate_bucket_key(caller.id)
        tokens = float(await gw.redis.hget(bucket, "tokens"))  # type: ignore[arg-type]
        assert 1.99 < tokens < 2.01, tokens

    run(scenario)


def test_an_idempotent_replay_answers_the_same_task_and_spends_no_rate(
    run: Callable[[Scenario], None],
) -> None:
    async def scenario(gw: Gateway) -> None:
        # Two tokens that do not refill within the test: the replays must not take the second.
        caller = api_key("replay", rate_per_s=0.001, burst=2)
        options = SubmitOptions(idempotency_key="k-replay")
        first = await gw.service.submit(flux(), options, caller)
        for _ in range(3):
            again = await gw.service.submit(flux(), options, caller)
            assert again.replayed and again.record.task_id == first.record.task_id
        assert (await gw.service.submit(flux("another"), SubmitOptions(), caller)).record
        with pytest.raises(RateLimited):
            await gw.service.submit(flux("a third"), SubmitOptions(), caller)

    run(scenario)


def test_a_key_bound_meanwhile_is_answered_by_the_accept_script_writing_nothing(
    run: Callable[[Scenario], None],
) -> None:
    """Two requests with one key race past the service's first look: the accept script sees the
    binding and charges, claims and writes nothing for the second."""

    async def scenario(gw: Gateway) -> None:
        caller = api_key("race", rate_per_s=0.001, burst=1)
        body = flux().idempotency_body
        first = await gw.service.submit(flux(), SubmitOptions(idempotency_key="k-race"), caller)
        record = new_job("flux", {"prompt": "a fox"}, owner=caller.id)
        claim = IdempotencyKeys.claim(caller.id, "k-race", body=body, task_id=record.task_id)
        # The bucket is empty: had the script charged it first, this would be a rate refusal.
        admission = KeyAdmission(owner=caller.id, rate_per_s=0.001, burst=1, max_active=100)
        outcome = await gw.queue.accept(record, keys.owner_tasks_key(caller.id), admission, claim)
        assert isinstance(outcome, AlreadyBound)
        assert IdempotencyKeys.task_of(outcome.binding, body=body) == first.record.task_id
        assert await gw.store.get(record.task_id) is None
        assert await gw.redis.llen(FLUX_LANE) == 1

    run(scenario)


def test_cancelling_a_queued_job_ends_it_at_once(run: Callable[[Scenario], None]) -> None:
    async def scenario(gw: Gateway) -> None:
        caller = api_key("cancel")
        task_id = (await gw.service.submit(flux(), SubmitOptions(), caller)).record.task_id
        record, changed = await gw.service.cancel(task_id, caller)
        assert changed and record.status is TaskStatus.CANCELED
        stored = await gw.store.get(task_id)
        assert stored is not None and stored.status is TaskStatus.CANCELED
        # The key's cap is free again, and a second cancel changes nothing.
        assert await gw.redis.zcard(keys.active_jobs_key(caller.id)) == 0
        assert (await gw.service.cancel(task_id, caller))[1] is False

    run(scenario)
