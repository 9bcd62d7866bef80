"""Every service's `/metrics` moves when a job runs; the job view's stage timings add up."""

from __future__ import annotations

from datetime import datetime

import httpx

from devtools.procs import poll_until
from tests.conftest import Stack
from tests.e2e.wsclient import watch
from tests.observability.scrape import scrape, value


def _at(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _pages(stack: Stack) -> dict[str, str]:
    return {
        "gateway": f"{stack.gateway}/metrics/",
        "notifier": f"{stack.notifier}/metrics/",
        "balancer": f"{stack.balancer}/metrics/",
        "inference": f"{stack.inference}/metrics/",
        "worker": stack.worker_metrics,
    }


def test_a_job_moves_the_counters_and_stage_histograms_of_every_service(stack: Stack) -> None:
    before = {name: scrape(url) for name, url in _pages(stack).items()}
    task_id = str(stack.submit(num_inference_steps=3)["task_id"])
    stack.wait_status(task_id, "succeeded", timeout=60)

    def moved() -> dict[str, float] | None:
        after = {name: scrape(url) for name, url in _pages(stack).items()}

        def delta(page: str, name: str, **labels: str) -> float:
            return value(after[page], name, **labels) - value(before[page], name, **labels)

        checks = {
            "gateway submit counted": delta(
                "gateway",
                "fluxgate_http_requests_total",
                service="gateway",
                route="/flux",
                status="202",
            ),
            "gateway latency observed": delta(
                "gateway", "fluxgate_http_request_seconds_count", route="/flux"
            ),
            "queued stage": delta("worker", "fluxgate_job_queued_seconds_count", type="flux"),
            "running stage": delta("worker", "fluxgate_job_running_seconds_count", type="flux"),
            "delivery stage": delta("worker", "fluxgate_job_delivery_seconds_count", type="flux"),
            "finished by state": delta(
                "worker", "fluxgate_jobs_finished_total", type="flux", status="succeeded"
            ),
            "usage metered": delta("worker", "fluxgate_usage_jobs_total", key="all", type="flux"),
            "balancer forwarded": delta("balancer", "fluxgate_balancer_request_seconds_count"),
            "inference batch": delta("inference", "fluxgate_inference_batch_images_count"),
            "inference steps": delta("inference", "fluxgate_inference_step_seconds_count"),
            "worker task": delta(
                "worker", "fluxgate_worker_tasks_total", task="fluxgate.flux", state="SUCCESS"
            ),
            "worker task time": delta(
                "worker", "fluxgate_worker_task_seconds_count", task="fluxgate.flux"
            ),
        }
        last[:] = [checks]
        return None if not all(v >= 1 for v in checks.values()) else checks

    last: list[dict[str, float]] = []
    try:
        poll_until(moved, timeout=15, what="every service's metrics to count the job")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; deltas: {last}") from None
    worker_page = scrape(stack.worker_metrics)
    assert ("fluxgate_queue_depth", frozenset({("queue", "gpu")})) in worker_page


def test_the_job_view_splits_its_time_into_stages(stack: Stack) -> None:
    job = stack.submit(num_inference_steps=2, width=64, height=64)
    transcript = watch(str(job["urls"]["ws"]))  # type: ignore[index]
    final = transcript.messages[-1]
    assert final["event"] == "succeeded"
    timings = final["timings"]
    assert timings["queued_ms"] is not None and timings["queued_ms"] >= 0
    # Two steps of 100 ms each (the test stack's step delay) happen while running.
    assert timings["running_ms"] >= 150
    assert timings["delivery_ms"] is not None and timings["delivery_ms"] >= 0
    # The three stages split the job's whole life, from submit to its final state, with no gap
    # and no overlap (their sizes relative to each other depend on the machine's load).
    life_ms = (_at(final["finished_at"]) - _at(final["created_at"])) * 1000
    stages_ms = timings["queued_ms"] + timings["running_ms"] + timings["delivery_ms"]
    assert abs(stages_ms - life_ms) < 5, (timings, life_ms)
    assert final["result"]["timings"]["compute_ms"] > 0
    assert final["queue_position"] is None


def test_queue_position_counts_only_jobs_ahead_and_falls_as_they_finish(stack: Stack) -> None:
    blockers = stack.fill_worker()
    waiting: list[str] = []
    try:
        waiting = [
            str(stack.submit(num_inference_steps=2, width=64, height=64)["task_id"])
            for _ in range(3)
        ]
        positions = [stack.view(t)["queue_position"] for t in waiting]
        first = positions[0]
        assert isinstance(first, int)
        assert positions == [first, first + 1, first + 2]
        # The most urgent priority jumps the line: it is ahead of all three.
        urgent = str(
            stack.submit(num_inference_steps=2, width=64, height=64, priority=9)["task_id"]
        )
        assert stack.view(urgent)["queue_position"] <= first  # type: ignore[operator]
        assert stack.view(waiting[0])["queue_position"] == first + 1
        # The WebSocket's first message carries it too.
        with httpx.Client(timeout=10) as client:
            listed = client.get(f"{stack.gateway}/tasks", params={"status": "queued"}).json()
        by_id = {t["task_id"]: t["queue_position"] for t in listed["tasks"]}
        assert by_id[waiting[2]] == first + 3
        waiting.append(urgent)
    finally:
        stack.release(blockers)
    seen: list[int] = []

    def last_job_started() -> bool:
        view = stack.view(waiting[2])
        if view["status"] == "queued":
            position = view["queue_position"]
            assert isinstance(position, int), view
            if not seen or seen[-1] != position:
                seen.append(position)
            # A wrong answer fails the poll at once (poll_until retries only "not yet").
            assert seen == sorted(seen, reverse=True), f"positions went up: {seen}"
            return False
        return True

    poll_until(last_job_started, timeout=60, interval=0.02, what="the last job to start")
    for task_id in waiting:
        stack.wait_status(task_id, "succeeded", timeout=60)
