"""The balancer in front of three real inference servers: a slow one gets less work, a killed one
costs no job, and a restarted one is admitted again."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import httpx
import pytest

from devtools.procs import Proc, poll_until, start_redis, start_stack, wait_stack_ready
from tests.conftest import Stack
from tests.observability.scrape import scrape, value

FAST_MS, SLOW_MS = 40, 200
EJECTIONS = "fluxgate_balancer_ejections_total"


class PoolStack(Stack):
    def backends(self) -> dict[str, dict[str, object]]:
        rows = httpx.get(f"{self.balancer}/backends").json()
        return {row["url"]: row for row in rows}

    def url_of(self, name: str) -> str:
        return f"http://127.0.0.1:{self.env_of(name)['FLUXGATE_INFERENCE_PORT']}"

    def env_of(self, name: str) -> dict[str, str]:
        return self.procs[name].env

    def submit_many(self, count: int, steps: int) -> list[str]:
        return [
            str(self.submit(width=64, height=64, num_inference_steps=steps, seed=i)["task_id"])
            for i in range(count)
        ]


@pytest.fixture(scope="module")
def pool_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PoolStack]:
    tmp = tmp_path_factory.mktemp("pool")
    redis_proc, redis_url = start_redis(tmp)
    ports, env, procs = start_stack(
        redis_url,
        tmp,
        worker_concurrency=6,
        extra_env={
            "FLUXGATE_BALANCER_HEALTH_INTERVAL_S": "0.3",
            "FLUXGATE_BALANCER_HEALTHY_AFTER": "2",
            "FLUXGATE_WORKER_RETRY_BACKOFF_S": "0.2",
            "FLUXGATE_INFERENCE_MAX_BATCH_SIZE": "2",
        },
        backends=[
            {"FLUXGATE_INFERENCE_STEP_DELAY_MS": str(FAST_MS)},
            {"FLUXGATE_INFERENCE_STEP_DELAY_MS": str(FAST_MS)},
            {"FLUXGATE_INFERENCE_STEP_DELAY_MS": str(SLOW_MS)},
        ],
    )
    stack = PoolStack.at(ports, redis_url=redis_url, env=env, procs=procs, tmp=tmp)
    try:
        wait_stack_ready(ports, procs)
        poll_until(
            lambda: all(b["state"] == "healthy" for b in stack.backends().values()),
            timeout=30,
            what="three healthy backends",
        )
        yield stack
    finally:
        for proc in stack.procs.values():
            proc.stop()
        redis_proc.stop()


def test_the_slow_backend_gets_fewer_jobs(pool_stack: PoolStack) -> None:
    before = {url: row["served"] for url, row in pool_stack.backends().items()}
    tasks = pool_stack.submit_many(24, steps=4)
    for task_id in tasks:
        assert (
            pool_stack.wait_status(task_id, "succeeded", "failed", timeout=120)["status"]
            == "succeeded"
        )
    served = {
        url: int(row["served"]) - int(before[url])  # type: ignore[call-overload]
        for url, row in pool_stack.backends().items()
    }
    slow = served.pop(pool_stack.url_of("inference-2"))
    assert slow < min(served.values()), (slow, served)


def test_a_killed_backend_costs_no_job_and_comes_back(pool_stack: PoolStack) -> None:
    victim = "inference-0"
    ejections = f"{pool_stack.balancer}/metrics/"
    before = value(scrape(ejections), EJECTIONS, backend=pool_stack.url_of(victim))
    tasks = pool_stack.submit_many(18, steps=12)
    poll_until(
        lambda: pool_stack.backends()[pool_stack.url_of(victim)]["in_flight"],
        timeout=30,
        what="work on the victim",
    )
    old = pool_stack.procs[victim]
    old.stop(signal.SIGKILL)
    for task_id in tasks:
        view = pool_stack.wait_status(task_id, "succeeded", "failed", timeout=180)
        assert view["status"] == "succeeded", view["error"]
    assert pool_stack.backends()[pool_stack.url_of(victim)]["state"] in ("ejected", "unhealthy")

    pool_stack.procs[victim] = Proc(victim, old.args, old.env, old.log_path).start()
    poll_until(
        lambda: pool_stack.backends()[pool_stack.url_of(victim)]["state"] == "healthy",
        timeout=180,
        what="re-admission of the restarted backend",
    )
    # The counter's sample for the victim moved (its HELP/TYPE lines are there even at zero).
    after = value(scrape(ejections), EJECTIONS, backend=pool_stack.url_of(victim))
    assert after - before >= 1, f"{EJECTIONS} for {victim}: {before} -> {after}"
