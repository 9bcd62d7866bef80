"""Session fixtures: one real redis-server and one real stack of Fluxgate services for all tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.procs import Proc, poll_until, start_redis, start_stack, wait_stack_ready

# Slow enough that a 4-step job sends several progress events and a job can be canceled mid-run.
STEP_DELAY_MS = 100
INTERNAL_SECRET = "test-internal-secret-0123456789"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    proc.stop()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@dataclass
class Stack:
    gateway: str
    notifier: str
    notifier_ws: str
    balancer: str
    inference: str
    redis_url: str
    env: dict[str, str]
    procs: dict[str, Proc]
    tmp: Path

    def submit(self, **overrides: object) -> dict[str, object]:
        body = {
            "prompt": "a red fox",
            "width": 256,
            "height": 256,
            "num_inference_steps": 4,
            "seed": 7,
            **overrides,
        }
        response = httpx.post(f"{self.gateway}/flux", json=body, timeout=10)
        assert response.status_code == 202, response.text
        return response.json()  # type: ignore[no-any-return]

    def view(self, task_id: str) -> dict[str, object]:
        response = httpx.get(f"{self.gateway}/tasks/{task_id}", timeout=10)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def wait_status(self, task_id: str, *statuses: str, timeout: float = 60) -> dict[str, object]:
        return poll_until(
            lambda: (v := self.view(task_id))["status"] in statuses and v,
            timeout=timeout,
            what=f"task {task_id} to reach {statuses}",
        )


@pytest.fixture(scope="session")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """redis + inference + balancer + notifier + gateway + a Celery worker, as real processes."""
    tmp = tmp_path_factory.mktemp("stack")
    ports, env, procs = start_stack(
        redis_url,
        tmp,
        extra_env={
            "FLUXGATE_INTERNAL_SECRET": INTERNAL_SECRET,
            "FLUXGATE_INFERENCE_STEP_DELAY_MS": str(STEP_DELAY_MS),
        },
    )
    stack = Stack(
        gateway=f"http://127.0.0.1:{ports['gateway']}",
        notifier=f"http://127.0.0.1:{ports['notifier']}",
        notifier_ws=f"ws://127.0.0.1:{ports['notifier']}",
        balancer=f"http://127.0.0.1:{ports['balancer']}",
        inference=f"http://127.0.0.1:{ports['inference']}",
        redis_url=redis_url,
        env=env,
        procs=procs,
        tmp=tmp,
    )
    try:
        wait_stack_ready(ports, procs)
        # One job through everything proves the worker is consuming before any test runs.
        warmup = stack.submit()
        try:
            stack.wait_status(str(warmup["task_id"]), "succeeded", timeout=90)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\n--- worker log ---\n{procs['worker'].log_tail()}"
            ) from None
        yield stack
    finally:
        for proc in procs.values():
            proc.stop()
