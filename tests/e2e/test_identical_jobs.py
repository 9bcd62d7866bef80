"""No paying twice: identical requests with an explicit seed share one run (apps/worker/dedupe.py).

On a stack of its own (a worker is killed here) whose model server steps slowly, so that two jobs
overlap; each test uses a prompt of its own, so no other test's result or run answers its jobs.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from apps.common.redis import keys
from devtools.procs import poll_until, start_redis, start_stack, wait_stack_ready
from tests.conftest import FAST_DELIVERY_ENV, STEP_DELAY_MS, Stack
from tests.e2e.wsclient import watch
from tests.observability.scrape import scrape, value

IDENTICAL_ENV = {
    **FAST_DELIVERY_ENV,
    "FLUXGATE_INFERENCE_STEP_DELAY_MS": str(STEP_DELAY_MS),
    # A follower hands its message back after this long, several times within one leader's run.
    "FLUXGATE_WORKER_CAPACITY_SLICE_S": "1",
    # A claim on a run lapses after the time limit: longer than any wait here, so a job that
    # is not handed over (or taken over) when it should be fails its test instead of catching up.
    "FLUXGATE_JOB_SOFT_TIME_LIMIT_S": "100",
    "FLUXGATE_JOB_TIME_LIMIT_S": "120",
    # A killed worker's jobs come back within seconds.
    "FLUXGATE_WORKER_HEARTBEAT_S": "0.5",
    "FLUXGATE_WORKER_LEASE_S": "2",
}
IMAGES = "fluxgate_inference_images_total"


@pytest.fixture(scope="module")
def identical_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("identical")
    (tmp / "redis").mkdir()
    redis_proc, redis_url = start_redis(tmp / "redis")
    ports, env, procs = start_stack(redis_url, tmp, extra_env=IDENTICAL_ENV)
    stack = Stack.at(ports, redis_url=redis_url, env=env, procs=procs, tmp=tmp)
    try:
        wait_stack_ready(ports, procs)
        stack.wait_status(str(stack.submit()["task_id"]), "succeeded", timeout=90)
        yield stack
    finally:
        for proc in stack.procs.values():
            proc.stop()
        redis_proc.stop()


def request(**overrides: object) -> dict[str, object]:
    """A small FLUX request with a prompt no other test uses and an explicit seed."""
    return {
        "prompt": f"a fox {uuid.uuid4().hex[:8]}",
        "width": 64,
        "height": 64,
        "num_inference_steps": 20,
        "seed": 5,
        **overrides,
    }


def submit(stack: Stack, body: dict[str, object]) -> str:
    response = httpx.post(f"{stack.gateway}/flux", json=body, timeout=10)
    assert response.status_code == 202, response.text
    return str(response.json()["task_id"])


def images_made(stack: Stack) -> float:
    """Images the model server has made so far; asked once it is idle, so none is half-made."""
    poll_until(
        lambda: (
            (load := httpx.get(f"{stack.inference}/load", timeout=10).json())["running"]
            + load["queued"]
            == 0
        ),
        timeout=30,
        what="the model server to be idle",
    )
    return value(scrape(f"{stack.inference}/metrics/"), IMAGES)


def image_bytes(view: dict[str, object]) -> list[bytes]:
    images = view["result"]["images"]  # type: ignore[index]
    return [httpx.get(image["url"], timeout=10).content for image in images]


def succeeded(stack: Stack, task_id: str) -> dict[str, object]:
    view = stack.wait_status(task_id, "succeeded", "failed", "canceled", "expired", timeout=90)
    assert view["status"] == "succeeded", view["error"]
    return view


def leader_and_follower(stack: Stack, tasks: list[str]) -> tuple[str, str]:
    """The job that runs and the one that waits for it, once both are so."""

    def found() -> tuple[str, str] | None:
        views = {task_id: stack.view(task_id) for task_id in tasks}
        waiting = [t for t, v in views.items() if v["waiting_for"] == "identical_job"]
        running = [t for t, v in views.items() if v["status"] == "running"]
        return (running[0], waiting[0]) if running and waiting else None

    return poll_until(found, timeout=30, interval=0.02, what="one job running, one waiting on it")


def outputs_of(stack: Stack, task_id: str) -> list[Path]:
    return sorted((stack.tmp / "outputs" / task_id).glob("*.png"))


def test_identical_requests_in_flight_together_run_once(identical_stack: Stack) -> None:
    stack = identical_stack
    before = images_made(stack)
    body = request(num_images=2)
    tasks = [submit(stack, body), submit(stack, body)]
    leader, follower = leader_and_follower(stack, tasks)
    first, second = succeeded(stack, leader), succeeded(stack, follower)

    assert images_made(stack) - before == 2, "one run of two images for both jobs"
    assert (first["cached"], second["cached"]) == (False, True)
    assert image_bytes(first) == image_bytes(second)
    # Copies of its own, which live as long as its own record (the leader's may be swept first).
    for task_id, view in ((leader, first), (follower, second)):
        assert all(f"/{task_id}/" in image["url"] for image in view["result"]["images"])  # type: ignore[index]
    assert second["result"]["timings"]["compute_ms"] == 0  # type: ignore[index]
    assert first["result"]["timings"]["compute_ms"] > 0  # type: ignore[index]
    # The follower held no worker slot for long: it went back to its queue between looks.
    log = stack.procs["worker"].log_path.read_text().splitlines()
    assert any(follower in line and "handed back" in line for line in log)


def test_requests_without_a_seed_are_never_shared(identical_stack: Stack) -> None:
    stack = identical_stack
    before = images_made(stack)
    body = request(seed=None)
    tasks = [submit(stack, body), submit(stack, body)]
    views = [succeeded(stack, task_id) for task_id in tasks]
    assert images_made(stack) - before == 2, "each job ran"
    assert [view["cached"] for view in views] == [False, False]


def usage(stack: Stack, *task_ids: str) -> dict[str, float]:
    """The flux totals of `GET /usage` once every job that ended so far (and `task_ids`) has
    been metered: the notifier meters a job just after its final state shows."""
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    try:
        ended = [
            key.rsplit(":", 1)[1]
            for key in client.scan_iter(keys.job_key("*"))
            if client.hget(key, "status") in ("succeeded", "failed", "canceled", "expired")
        ]
        poll_until(
            lambda: all(client.exists(keys.usage_counted_key(t)) for t in [*ended, *task_ids]),
            timeout=10,
            what="every ended job to be metered",
        )
    finally:
        client.close()
    totals = httpx.get(f"{stack.gateway}/usage", timeout=10).json()["totals"]["flux"]
    return {k: totals[k] for k in ("jobs", "succeeded", "compute_seconds")}


def test_a_finished_result_answers_only_a_request_that_opts_in(identical_stack: Stack) -> None:
    stack = identical_stack
    body = request()
    first_id = submit(stack, body)
    first = succeeded(stack, first_id)
    metered = usage(stack, first_id)
    before = images_made(stack)

    cached_id = submit(stack, {**body, "cache": True})
    cached = succeeded(stack, cached_id)
    assert images_made(stack) - before == 0, "answered from the stored result"
    assert (first["cached"], cached["cached"]) == (False, True)
    assert image_bytes(cached) == image_bytes(first)
    assert cached["result"]["timings"]["compute_ms"] == 0  # type: ignore[index]
    # Counted as a succeeded job, charged no compute.
    after = usage(stack, cached_id)
    assert (after["jobs"] - metered["jobs"], after["succeeded"] - metered["succeeded"]) == (1, 1)
    assert after["compute_seconds"] == pytest.approx(metered["compute_seconds"])

    again = succeeded(stack, submit(stack, body))
    assert images_made(stack) - before == 1, "without `cache` it runs again"
    assert again["cached"] is False
    assert image_bytes(again) == image_bytes(first)


def test_a_follower_runs_itself_when_the_job_it_waits_for_is_canceled(
    identical_stack: Stack,
) -> None:
    stack = identical_stack
    body = request(num_inference_steps=60)
    tasks = [submit(stack, body), submit(stack, body)]
    leader, follower = leader_and_follower(stack, tasks)
    assert httpx.post(f"{stack.gateway}/tasks/{leader}/cancel", timeout=10).status_code == 202
    transcript = watch(f"{stack.notifier_ws}/ws/tasks/{follower}", timeout=60)
    view = transcript.messages[-1]
    assert view["status"] == "succeeded" and view["cached"] is False, view
    # It ran: its own start (unless it had started already) and progress.
    assert "progress" in transcript.events, transcript.events
    if transcript.messages[0]["status"] == "queued":
        assert "started" in transcript.events, transcript.events
    assert view["result"]["timings"]["compute_ms"] > 0
    assert stack.view(leader)["status"] == "canceled"


def test_a_killed_leader_loses_nothing(identical_stack: Stack) -> None:
    stack = identical_stack
    body = request(num_inference_steps=40)
    tasks = [submit(stack, body), submit(stack, body)]
    leader, follower = leader_and_follower(stack, tasks)
    popen = stack.procs["worker"].popen
    assert popen is not None
    children = psutil.Process(popen.pid).children(recursive=True)
    assert children, "the prefork pool has processes"
    # Both jobs' pool processes die (the leader mid-run); the worker's lease brings both back.
    for child in children:
        child.send_signal(signal.SIGKILL)
    first, second = succeeded(stack, leader), succeeded(stack, follower)
    assert image_bytes(first) == image_bytes(second)
    assert first["cached"] is False
    assert len(outputs_of(stack, leader)) == len(outputs_of(stack, follower)) == 1
    assert stack.procs["worker"].alive()
