"""One task's ids follow it through the JSON logs of every service, and one trace joins them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.procs import poll_until, start_redis, start_stack, wait_stack_ready
from tests.conftest import Stack
from tests.observability.otlp_receiver import OtlpReceiver

# The services a job goes through. The worker writes the job's events to Redis itself; a notifier
# relays the published views and sees a task only when a client watches it.
SERVICES = ("gateway", "worker", "balancer", "inference")


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, OtlpReceiver]]:
    tmp = tmp_path_factory.mktemp("traced")
    (tmp / "redis").mkdir()
    receiver = OtlpReceiver().start()
    redis_proc, redis_url = start_redis(tmp / "redis")
    ports, env, procs = start_stack(
        redis_url,
        tmp,
        extra_env={
            "FLUXGATE_LOG_JSON": "true",
            "FLUXGATE_OTEL_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        },
    )
    try:
        wait_stack_ready(ports, procs)
        yield Stack.at(ports, redis_url=redis_url, env=env, procs=procs, tmp=tmp), receiver
    finally:
        for proc in procs.values():
            proc.stop()
        redis_proc.stop()
        receiver.stop()


def _json_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                continue
    return lines


def test_logs_of_every_service_carry_the_task_and_request_ids(
    traced: tuple[Stack, OtlpReceiver],
) -> None:
    stack, _ = traced
    request_id = "req-follow-me-42"
    response = httpx.post(
        f"{stack.gateway}/flux",
        json={"prompt": "a fox", "width": 64, "height": 64, "num_inference_steps": 2},
        headers={"X-Request-ID": request_id},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    assert response.headers["x-request-id"] == request_id
    task_id = response.json()["task_id"]
    stack.wait_status(task_id, "succeeded", timeout=60)

    def ids_everywhere() -> dict[str, list[dict[str, Any]]] | None:
        found = {
            name: [
                line
                for line in _json_lines(stack.procs[name].log_path)
                if line.get("task_id") == task_id
            ]
            for name in SERVICES
        }
        return found if all(found.values()) else None

    found = poll_until(ids_everywhere, timeout=10, what="the task id in every service's log")
    for name, lines in found.items():
        assert any(line.get("request_id") == request_id for line in lines), (name, lines)
    # A caller's unsafe id is replaced, never logged or echoed as is.
    bad = httpx.get(f"{stack.gateway}/tasks/{task_id}", headers={"X-Request-ID": "a b\tc"})
    assert bad.headers["x-request-id"] != "a b\tc"


def test_one_trace_joins_the_services_a_job_went_through(
    traced: tuple[Stack, OtlpReceiver],
) -> None:
    stack, receiver = traced
    job = stack.submit(num_inference_steps=2, width=64, height=64)
    stack.wait_status(str(job["task_id"]), "succeeded", timeout=60)

    def submit_trace() -> set[str] | None:
        submit_spans = [
            s for s in list(receiver.spans) if s.service == "fluxgate-gateway" and "/flux" in s.name
        ]
        for span in submit_spans:
            services = receiver.services_in_trace(span.trace_id)
            if {f"fluxgate-{name}" for name in SERVICES} <= services:
                return services
        return None

    poll_until(submit_trace, timeout=20, what="one trace spanning the four services")
