"""The limits on a job's cost, in process against the session's real redis-server (a database of
its own, no uvicorn, no worker): one job over FLUXGATE_MAX_JOB_COST is `too_expensive` naming the
field to lower, a key's queued and running jobs together stay under its `max_cost`
(`too_much_work`) until one ends, and the record keeps what the job costs."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from PIL import Image

from apps.common.jobs.announce import Announcer
from apps.common.jobs.store import JobStore, SyncJobStore
from apps.common.redis import keys
from apps.common.service.errors import TooExpensive, TooMuchWork
from apps.common.storage import make_output_store
from apps.common.wire.contracts import EventKind, FluxRequest, TaskEvent
from apps.common.wire.queues import make_producer
from apps.gateway.enqueue import JobQueue
from apps.gateway.jobs_in import build_job, flux_job
from apps.gateway.service import TaskService
from apps.gateway.settings import GatewaySettings
from apps.gateway.submission import NewJob, SubmitOptions
from tests.gateway.test_task_service import Gateway, api_key, nothing_left

# Not database 0 (the session stack's) nor another test file's.
OWN_DB = 13
BIG = {"width": 2048, "height": 2048, "num_inference_steps": 100, "num_images": 4}
Scenario = Callable[[Gateway], Awaitable[None]]


@pytest.fixture
def run(redis_url: str, tmp_path: Path) -> Callable[[Scenario], None]:
    """Runs a scenario against a TaskService wired as the gateway's lifespan wires it."""
    url = f"{redis_url.rsplit('/', 1)[0]}/{OWN_DB}"
    # Image URLs on loopback pass the SSRF guard without DNS, as `make up` allows.
    settings = GatewaySettings(
        redis_url=url, output_dir=str(tmp_path / "outputs"), webhook_allow="loopback"
    )

    @asynccontextmanager
    async def gateway() -> AsyncIterator[Gateway]:
        client = aioredis.Redis.from_url(url, decode_responses=True)
        await client.flushdb()
        producer = make_producer(url, visibility_timeout_s=60)
        store = JobStore(client, ttl_s=settings.job_ttl_s)
        queue = JobQueue(client, producer, job_ttl_s=settings.job_ttl_s)
        announcer = Announcer(store, client, producer)
        outputs = make_output_store(settings)
        service = TaskService(store, queue, client, announcer, settings, outputs)
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


def flux(**fields: object) -> NewJob:
    return flux_job(FluxRequest.model_validate({"prompt": "a fox", **fields}))


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "red").save(out, format="PNG")
    return out.getvalue()


def test_the_default_limit_lets_a_1024_square_28_step_4_image_flux_job_through(
    run: Callable[[Scenario], None],
) -> None:
    async def scenario(gw: Gateway) -> None:
        assert gw.settings.max_job_cost == 128
        submitted = await gw.service.submit(flux(num_images=4), SubmitOptions(), api_key("big"))
        stored = await gw.store.get(submitted.record.task_id)
        assert stored is not None and stored.cost == pytest.approx(117.4405)
        assert (await gw.service.live_view(stored)).cost == pytest.approx(117.4405)

    run(scenario)


def test_a_job_over_the_limit_is_too_expensive_names_the_field_and_leaves_nothing(
    run: Callable[[Scenario], None],
) -> None:
    async def scenario(gw: Gateway) -> None:
        caller = api_key("greedy", rate_per_s=0.001, burst=2)
        options = SubmitOptions(idempotency_key="k-big")
        with pytest.raises(TooExpensive) as refused:
            await gw.service.submit(flux(**BIG), options, caller)
        # Four images down to one cuts it most (a quarter); the message has cost and limit.
        assert refused.value.field == "num_images"
        assert refused.value.status_code == 422 and refused.value.code == "too_expensive"
        assert "1677.7216" in refused.value.message and "128" in refused.value.message
        await nothing_left(gw, caller, "k-big", jobs=0)
        # Checked before the rate: the bucket was never touched.
        assert not await gw.redis.exists(keys.rate_bucket_key(caller.id))
        # `POST /tasks` carries the input under `input.`, and so does the field it names.
        envelope = {"type": "flux", "input": {"prompt": "a fox", **BIG, "num_images": 1}}
        with pytest.raises(TooExpensive) as refused:
            await gw.service.submit(build_job(envelope, {}, gw.settings), options, caller)
        assert refused.value.field == "input.num_inference_steps"

    run(scenario)


def test_an_uploads_size_is_priced_and_a_url_is_charged_at_the_bound(
    run: Callable[[Scenario], None],
) -> None:
    async def scenario(gw: Gateway) -> None:
        caller = api_key("images")
        fields = {"prompt": "oil", "num_inference_steps": 10, "strength": 0.5}
        uploaded = build_job(
            {"type": "style_transfer", "input": fields}, {"image": png(400, 200)}, gw.settings
        )
        record = (await gw.service.submit(uploaded, SubmitOptions(), caller)).record
        # Its own size (under max_side): 400x192 after flooring to multiples of 16.
        assert record.cost == pytest.approx(400 * 192 / 1e6 * 5, abs=1e-4)
        by_url = {**fields, "image": "http://127.0.0.1:9/photo.png"}
        fetched = build_job({"type": "style_transfer", "input": by_url}, {}, gw.settings)
        record = (await gw.service.submit(fetched, SubmitOptions(), caller)).record
        assert record.cost == pytest.approx(1.048576 * 5, abs=1e-4)  # max_side squared
        stylize = build_job(
            {"type": "stylize", "input": {"image": by_url["image"]}}, {}, gw.settings
        )
        record = (await gw.service.submit(stylize, SubmitOptions(), caller)).record
        assert record.cost == pytest.approx(gw.settings.input_image_max_pixels / 1e6 * 0.01)

    run(scenario)


def test_a_key_over_its_max_cost_gets_too_much_work_until_a_job_ends(
    run: Callable[[Scenario], None],
) -> None:
    async def scenario(gw: Gateway) -> None:
        # Two default FLUX jobs (29.3601 each) fit under 60; a third does not.
        caller = api_key("budget", rate_per_s=0.001, burst=5).model_copy(update={"max_cost": 60})
        first = (await gw.service.submit(flux(), SubmitOptions(), caller)).record
        second = (await gw.service.submit(flux(), SubmitOptions(), caller)).record
        costs = keys.active_cost_key(caller.id)
        assert await gw.redis.zscore(costs, first.task_id) == pytest.approx(29.3601)
        with pytest.raises(TooMuchWork) as refused:
            await gw.service.submit(flux(), SubmitOptions(idempotency_key="k-budget"), caller)
        assert refused.value.code == "too_much_work" and refused.value.retry_after_s >= 1
        assert "60" in refused.value.message
        await nothing_left(gw, caller, "k-budget", jobs=2)
        # The refusal spent no token: the bucket holds what the two accepted submits left.
        tokens = float(await gw.redis.hget(keys.rate_bucket_key(caller.id), "tokens"))  # type: ignore[arg-type]
        assert 2.99 < tokens < 3.01, tokens
        # The first job ends (a worker's final event): its cost leaves with it, in one step.
        await gw.store.apply(TaskEvent(task_id=first.task_id, event=EventKind.SUCCEEDED))
        assert await gw.redis.zscore(costs, first.task_id) is None
        assert await gw.redis.zscore(keys.active_jobs_key(caller.id), first.task_id) is None
        third = (await gw.service.submit(flux(), SubmitOptions(), caller)).record
        # A worker whose notifier is down applies the final event itself: the same step.
        worker_redis = redis.Redis.from_url(gw.settings.redis_url, decode_responses=True)
        try:
            worker_store = SyncJobStore(worker_redis, ttl_s=gw.settings.job_ttl_s)
            worker_store.apply(TaskEvent(task_id=third.task_id, event=EventKind.FAILED))
        finally:
            worker_redis.close()
        assert await gw.redis.zrange(costs, 0, -1) == [second.task_id]
        # A job that expires in the queue leaves the same way.
        await gw.store.apply(TaskEvent(task_id=second.task_id, event=EventKind.EXPIRED))
        assert await gw.redis.zcard(costs) == 0

    run(scenario)


def test_one_job_over_its_keys_max_cost_is_refused_as_one_that_could_never_fit(
    run: Callable[[Scenario], None],
) -> None:
    async def scenario(gw: Gateway) -> None:
        caller = api_key("small").model_copy(update={"max_cost": 20})
        with pytest.raises(TooExpensive) as refused:
            await gw.service.submit(flux(), SubmitOptions(idempotency_key="k-small"), caller)
        assert refused.value.field == "num_inference_steps"
        assert "max_cost" in refused.value.message and "never" in refused.value.message
        assert "29.3601" in refused.value.message and "20" in refused.value.message
        await nothing_left(gw, caller, "k-small", jobs=0)

    run(scenario)


def test_the_costs_of_jobs_whose_records_expired_unended_are_dropped(
    run: Callable[[Scenario], None],
) -> None:
    """A job whose record expired without a final event (its worker and notifier gone) leaves
    the active set by age; its cost leaves the companion set with it, so the budget heals."""

    async def scenario(gw: Gateway) -> None:
        caller = api_key("healing").model_copy(update={"max_cost": 40})
        lost = (await gw.service.submit(flux(), SubmitOptions(), caller)).record
        with pytest.raises(TooMuchWork):
            await gw.service.submit(flux(), SubmitOptions(), caller)
        # As if it had been accepted longer ago than the job TTL.
        long_ago = time.time() - gw.settings.job_ttl_s - 60
        await gw.redis.zadd(keys.active_jobs_key(caller.id), {lost.task_id: long_ago})
        again = (await gw.service.submit(flux(), SubmitOptions(), caller)).record
        costs = keys.active_cost_key(caller.id)
        assert await gw.redis.zrange(costs, 0, -1) == [again.task_id]

    run(scenario)
