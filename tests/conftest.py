"""Session fixtures: one real redis-server and one real stack of Fluxgate services for all tests."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import httpx
import pytest
import redis

from apps.worker.text.tiny_translator import ensure_tiny_translator
from devtools.procs import NotYet, Proc, poll_until, start_redis, start_stack, wait_stack_ready
from tests.webhook_receiver import WebhookReceiver

# Slow enough that a 4-step job sends several progress events and a job can be canceled mid-run.
STEP_DELAY_MS = 100
INTERNAL_SECRET = "test-internal-secret-0123456789"
WEBHOOK_SECRET = "whsec_dGVzdC13ZWJob29rLXNlY3JldC0wMTIzNDU2Nzg5"
# Short enough that retries and sweeps happen within a test; the defaults are minutes to hours.
FAST_DELIVERY_ENV = {
    "FLUXGATE_WEBHOOK_SECRET": WEBHOOK_SECRET,
    "FLUXGATE_WEBHOOK_ALLOW": "loopback",
    "FLUXGATE_WEBHOOK_RETRY_SCHEDULE_S": "0.3,0.3,0.3",
    # A hanging receiver is given up on this fast (15 s by default).
    "FLUXGATE_WEBHOOK_TIMEOUT_S": "2",
    "FLUXGATE_NOTIFIER_SWEEP_INTERVAL_S": "0.2",
}
# A seed of its own for each submit that names none: identical requests in flight together share
# one run (apps/worker/dedupe.py), and a test's jobs are meant to run each.
_SEEDS = itertools.count(1_000_000)


# The real-browser fixtures (`browser`, `page`) for the demo page's tests.
pytest_plugins = ["tests.demo.browser"]


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
    worker_metrics: str = ""

    @classmethod
    def at(
        cls,
        ports: dict[str, int],
        *,
        redis_url: str,
        env: dict[str, str],
        procs: dict[str, Proc],
        tmp: Path,
    ) -> Self:
        """The URLs of a stack that `start_stack` started on `ports`."""
        inference = ports.get("inference")
        return cls(
            gateway=f"http://127.0.0.1:{ports['gateway']}",
            notifier=f"http://127.0.0.1:{ports['notifier']}",
            notifier_ws=f"ws://127.0.0.1:{ports['notifier']}",
            balancer=f"http://127.0.0.1:{ports['balancer']}",
            inference="" if inference is None else f"http://127.0.0.1:{inference}",
            redis_url=redis_url,
            env=env,
            procs=procs,
            tmp=tmp,
            worker_metrics=f"http://127.0.0.1:{ports['worker_metrics']}"
            if "worker_metrics" in ports
            else "",
        )

    def submit(self, **overrides: object) -> dict[str, object]:
        body = {
            "prompt": "a red fox",
            "width": 256,
            "height": 256,
            "num_inference_steps": 4,
            "seed": next(_SEEDS),
            **overrides,
        }
        response = httpx.post(f"{self.gateway}/flux", json=body, timeout=10)
        assert response.status_code == 202, response.text
        return response.json()  # type: ignore[no-any-return]

    def view(self, task_id: str) -> dict[str, object]:
        response = httpx.get(f"{self.gateway}/tasks/{task_id}", timeout=10)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def slow_job(self, steps: int = 60) -> str:
        """A job that runs for `steps` x 100 ms, long enough to be caught running."""
        return str(self.submit(num_inference_steps=steps, width=64, height=64)["task_id"])

    def fill_worker(self) -> list[str]:
        """Occupy both worker slots, so the next job stays queued until `release`."""
        blockers = [self.slow_job(), self.slow_job()]
        for blocker in blockers:
            self.wait_status(blocker, "running", timeout=30)
        return blockers

    def release(self, blockers: list[str]) -> None:
        for blocker in blockers:
            httpx.post(f"{self.gateway}/tasks/{blocker}/cancel", timeout=10)
        for blocker in blockers:
            self.wait_status(blocker, "canceled", timeout=30)

    def wait_status(self, task_id: str, *statuses: str, timeout: float = 60) -> dict[str, object]:
        def reached() -> dict[str, object] | None:
            response = httpx.get(f"{self.gateway}/tasks/{task_id}", timeout=10)
            if response.status_code == 503:  # Redis is away for a moment: the documented answer
                raise NotYet(response.text)
            assert response.status_code == 200, response.text
            view: dict[str, object] = response.json()
            return view if view["status"] in statuses else None

        return poll_until(reached, timeout=timeout, what=f"task {task_id} to reach {statuses}")


@contextmanager
def private_stack(
    tmp: Path, *, env: dict[str, str], backends: list[dict[str, str]] | None = None
) -> Iterator[Stack]:
    """A ready stack of a module's own, with its own redis-server (for settings the shared
    stack cannot have), stopped at the end."""
    redis_proc, redis_url = start_redis(tmp)
    ports, full_env, procs = start_stack(redis_url, tmp, extra_env=env, backends=backends)
    try:
        wait_stack_ready(ports, procs)
        yield Stack.at(ports, redis_url=redis_url, env=full_env, procs=procs, tmp=tmp)
    finally:
        for proc in procs.values():
            proc.stop()
        redis_proc.stop()


@pytest.fixture(scope="session")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """redis + inference + balancer + notifier + gateway + a Celery worker, as real processes."""
    tmp = tmp_path_factory.mktemp("stack")
    # `translate` runs its real code path on a tiny random model built here (no hub).
    translator = ensure_tiny_translator(tmp / "models")
    ports, env, procs = start_stack(
        redis_url,
        tmp,
        extra_env={
            "FLUXGATE_TRANSLATE_MODEL": str(translator),
            "FLUXGATE_INTERNAL_SECRET": INTERNAL_SECRET,
            "FLUXGATE_INFERENCE_STEP_DELAY_MS": str(STEP_DELAY_MS),
            **FAST_DELIVERY_ENV,
        },
    )
    stack = Stack.at(ports, redis_url=redis_url, env=env, procs=procs, tmp=tmp)
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


@pytest.fixture(scope="session")
def receiver() -> Iterator[WebhookReceiver]:
    hooks = WebhookReceiver(WEBHOOK_SECRET).start()
    yield hooks
    hooks.stop()
