"""Elastic capacity: jobs wait for a model server instead of failing (cold start, restart in the
middle of loading, none at all), in Redis rather than in a worker's memory, and give up only at
their deadline or after the maximum capacity wait.

The stack here runs with a short wait slice, so the hand-back to Redis happens within a test, and
a model server that takes 4 s to load, so a restart can land in the middle of loading.
"""

from __future__ import annotations

import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from apps.common.redis.keys import fair_staged_key
from apps.common.wire.queues import PRIORITY_LANES, lane_name
from apps.worker.unacked import UNACKED_KEY
from devtools.procs import (
    TRANSIENT,
    Proc,
    poll_until,
    start_redis,
    start_stack,
    wait_http_ok,
    wait_stack_ready,
)
from tests.conftest import FAST_DELIVERY_ENV, Stack
from tests.e2e.wsclient import Transcript, watch
from tests.webhook_receiver import WebhookReceiver

WORKER_SLOTS = 2
CAPACITY_ENV = {
    **FAST_DELIVERY_ENV,
    "FLUXGATE_INFERENCE_STEP_DELAY_MS": "20",
    "FLUXGATE_INFERENCE_LOAD_DELAY_S": "4",
    "FLUXGATE_BALANCER_HEALTH_INTERVAL_S": "0.3",
    "FLUXGATE_WORKER_CAPACITY_SLICE_S": "2",
    "FLUXGATE_WORKER_CAPACITY_POLL_S": "0.5",
    "FLUXGATE_JOB_SOFT_TIME_LIMIT_S": "20",
    "FLUXGATE_JOB_TIME_LIMIT_S": "25",
}


class CapacityStack(Stack):
    def stop_model_server(self) -> None:
        self.procs["inference"].stop(signal.SIGKILL)
        poll_until(
            lambda: httpx.get(f"{self.balancer}/readyz").status_code == 503,
            timeout=30,
            what="the balancer to see no ready model server",
        )

    def start_model_server(self, *, wait_ready: bool = True) -> None:
        old = self.procs["inference"]
        self.procs["inference"] = Proc(old.name, old.args, old.env, old.log_path).start()
        if wait_ready:
            wait_http_ok(f"{self.inference}/readyz", timeout=120, proc=self.procs["inference"])

    def restart_worker(self, sig: int, **env: str) -> None:
        old = self.procs["worker"]
        old.stop(sig)
        self.procs["worker"] = Proc(old.name, old.args, {**self.env, **env}, old.log_path).start()

    def submit_small(self, count: int, **extra: object) -> list[str]:
        return [
            str(self.submit(width=64, height=64, num_inference_steps=2, seed=i, **extra)["task_id"])
            for i in range(count)
        ]

    def outputs_of(self, task_id: str) -> list[Path]:
        return sorted((self.tmp / "outputs" / task_id).glob("*.png"))


@pytest.fixture(scope="module")
def capacity_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CapacityStack]:
    tmp = tmp_path_factory.mktemp("capacity")
    redis_proc, redis_url = start_redis(tmp)
    ports, env, procs = start_stack(
        redis_url, tmp, extra_env=CAPACITY_ENV, worker_concurrency=WORKER_SLOTS
    )
    stack = CapacityStack.at(ports, redis_url=redis_url, env=env, procs=procs, tmp=tmp)
    try:
        wait_stack_ready(ports, procs)
        stack.wait_status(str(stack.submit()["task_id"]), "succeeded", timeout=90)
        yield stack
    finally:
        for proc in stack.procs.values():
            proc.stop()
        redis_proc.stop()


def queued_in_redis(client: redis.Redis) -> int:
    """Jobs waiting in Redis: on the Celery lanes, or staged for fair share."""
    lanes = [lane_name("gpu", p) for p in range(PRIORITY_LANES)]
    return sum(int(client.llen(lane)) + int(client.zcard(fair_staged_key(lane))) for lane in lanes)


def test_jobs_wait_through_a_cold_start_and_a_restart_mid_load(
    capacity_stack: CapacityStack, receiver: WebhookReceiver
) -> None:
    stack = capacity_stack
    stack.stop_model_server()
    path = f"cold-{uuid.uuid4().hex[:8]}"
    tasks = stack.submit_small(6, webhook_url=receiver.url(path))
    transcript: list[Transcript] = []
    watcher = threading.Thread(
        target=lambda: transcript.append(watch(f"{stack.notifier_ws}/ws/tasks/{tasks[0]}")),
        daemon=True,
    )
    watcher.start()

    # The jobs a worker holds say why they wait; all of them stay queued.
    waiting = poll_until(
        lambda: (v := stack.view(tasks[0]))["waiting_for"] == "model_server" and v,
        timeout=30,
        what="the first job to say it waits for a model server",
    )
    assert waiting["status"] == "queued"
    assert waiting["queue_position"] is not None

    # Several wait slices pass: the jobs are handed back to Redis, not kept as ETA messages in
    # the worker, and none of them spends its retry budget and fails.
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    handed_back = poll_until(
        lambda: "handed back" in stack.procs["worker"].log_path.read_text(),
        timeout=30,
        what="a waiting job handed back to its queue",
    )
    assert handed_back
    assert int(client.hlen(UNACKED_KEY)) <= WORKER_SLOTS
    assert queued_in_redis(client) >= len(tasks) - WORKER_SLOTS
    assert {stack.view(t)["status"] for t in tasks} == {"queued"}

    # The model server starts, is killed in the middle of loading, starts again.
    stack.start_model_server(wait_ready=False)
    poll_until(
        lambda: httpx.get(f"{stack.inference}/healthz").status_code == 200,
        timeout=60,
        what="the model server to be up and loading",
        retry_on=TRANSIENT,
        watch=[stack.procs["inference"]],
    )
    assert httpx.get(f"{stack.inference}/readyz").status_code == 503, "still loading"
    stack.procs["inference"].stop(signal.SIGKILL)
    assert {stack.view(t)["status"] for t in tasks} == {"queued"}
    stack.start_model_server()

    for task_id in tasks:
        view = stack.wait_status(task_id, "succeeded", "failed", "expired", timeout=90)
        assert view["status"] == "succeeded", view["error"]
        assert view["waiting_for"] is None
        assert len(stack.outputs_of(task_id)) == 1
    watcher.join(timeout=30)
    events = transcript[0].events
    assert events[0] == "snapshot" and events[-1] == "succeeded", events
    assert "waiting" in events, events
    assert events.index("waiting") < events.index("started"), events
    waited = next(m for m in transcript[0].messages if m["event"] == "waiting")
    assert waited["status"] == "queued" and waited["waiting_for"] == "model_server"
    # Every hand-back found its delivery: none was dropped by an ack of an earlier delivery.
    assert "not handed back" not in stack.procs["worker"].log_path.read_text()
    # Six completions, one each; the waiting note is not a webhook.
    receiver.wait_for(path, 6, timeout=30)
    types = [d.body["type"] for d in receiver.at(path)]
    assert sorted(types) == ["task.succeeded"] * 6, types


def test_a_job_whose_deadline_passes_while_it_waits_expires(
    capacity_stack: CapacityStack,
) -> None:
    stack = capacity_stack
    stack.stop_model_server()
    try:
        answer = httpx.post(
            f"{stack.gateway}/flux",
            json={"prompt": "late", "width": 64, "height": 64, "num_inference_steps": 2},
            headers={"Cancel-After": "3s"},
        )
        assert answer.status_code == 202, answer.text
        view = stack.wait_status(answer.json()["task_id"], "expired", "failed", timeout=30)
        assert view["status"] == "expired"
        assert view["error"]["code"] == "deadline_exceeded"  # type: ignore[index]
    finally:
        stack.start_model_server()


def test_no_model_server_for_the_maximum_wait_ends_the_job_no_capacity(
    capacity_stack: CapacityStack,
) -> None:
    stack = capacity_stack
    stack.stop_model_server()
    stack.restart_worker(signal.SIGTERM, FLUXGATE_MAX_CAPACITY_WAIT_S="3")
    try:
        task_id = stack.submit_small(1)[0]
        view = stack.wait_status(task_id, "expired", "failed", "succeeded", timeout=60)
        assert view["status"] == "expired"
        error = view["error"]
        assert error["code"] == "no_capacity", error  # type: ignore[index]
        assert "no model server became ready" in error["message"]  # type: ignore[index]
    finally:
        stack.restart_worker(signal.SIGTERM)
        stack.start_model_server()


def test_a_worker_killed_while_jobs_wait_loses_and_duplicates_none(
    capacity_stack: CapacityStack, receiver: WebhookReceiver
) -> None:
    stack = capacity_stack
    stack.stop_model_server()
    path = f"killed-{uuid.uuid4().hex[:8]}"
    tasks = stack.submit_small(5, webhook_url=receiver.url(path))
    poll_until(
        lambda: stack.view(tasks[0])["waiting_for"] == "model_server",
        timeout=30,
        what="the jobs to wait",
    )
    # SIGKILL to the whole worker: what it held is put back once its lease lapses.
    stack.restart_worker(signal.SIGKILL)
    stack.start_model_server()
    for task_id in tasks:
        view = stack.wait_status(task_id, "succeeded", "failed", "expired", timeout=120)
        assert view["status"] == "succeeded", view["error"]
        assert len(stack.outputs_of(task_id)) == 1
    receiver.wait_for(path, 5, timeout=30)
    ids = [d.headers["webhook-id"] for d in receiver.at(path)]
    assert len(ids) == len(set(ids)) == 5, ids
