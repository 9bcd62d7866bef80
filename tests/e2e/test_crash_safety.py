"""Crashes lose nothing: killed workers, a restarted notifier, a restarted Redis.

These tests break processes, so they run on a stack of their own, with a Redis that keeps an
append-only file and the shipped broker visibility timeout (an hour): a dead worker's jobs must
come back through the workers' leases, within seconds.
"""

from __future__ import annotations

import json
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import redis
from websockets.sync.client import connect

from apps.common.redis import keys
from devtools.procs import (
    Proc,
    poll_until,
    start_redis,
    start_stack,
    wait_http_ok,
    wait_stack_ready,
)
from tests.conftest import FAST_DELIVERY_ENV, STEP_DELAY_MS, Stack
from tests.e2e.wsclient import Transcript, read_all, watch
from tests.webhook_receiver import WebhookReceiver

CRASH_ENV = {
    **FAST_DELIVERY_ENV,
    "FLUXGATE_INFERENCE_STEP_DELAY_MS": str(STEP_DELAY_MS),
    "FLUXGATE_JOB_SOFT_TIME_LIMIT_S": "8",
    "FLUXGATE_JOB_TIME_LIMIT_S": "10",
    # A waiting job must still have time to run within the short soft limit above.
    "FLUXGATE_WORKER_CAPACITY_SLICE_S": "3",
    "FLUXGATE_WORKER_EVENT_RETRY_S": "60",
}


class CrashStack(Stack):
    redis_proc: Proc

    def restart(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        proc.stop(sig)
        self.procs[name] = Proc(name, proc.args, proc.env, proc.log_path).start()
        if name != "worker":
            port = self.env[f"FLUXGATE_{name.upper()}_PORT"]
            wait_http_ok(f"http://127.0.0.1:{port}/readyz", timeout=60, proc=self.procs[name])

    def restart_redis(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM flushes the append-only file; SIGKILL loses what its last fsync (every
        second) had not written."""
        port = int(self.redis_url.rsplit(":", 1)[1].split("/")[0])
        self.redis_proc.stop(sig)
        self.redis_proc, _ = start_redis(self.tmp / "redis", port=port, aof=True)

    def worker_children(self) -> list[psutil.Process]:
        popen = self.procs["worker"].popen
        assert popen is not None
        return psutil.Process(popen.pid).children(recursive=True)


@pytest.fixture(scope="module")
def crash_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrashStack]:
    tmp = tmp_path_factory.mktemp("crash")
    (tmp / "redis").mkdir()
    redis_proc, redis_url = start_redis(tmp / "redis", aof=True)
    ports, env, procs = start_stack(redis_url, tmp, extra_env=CRASH_ENV)
    stack = CrashStack.at(ports, redis_url=redis_url, env=env, procs=procs, tmp=tmp)
    stack.redis_proc = redis_proc
    try:
        wait_stack_ready(ports, procs)
        stack.wait_status(str(stack.submit()["task_id"]), "succeeded", timeout=90)
        yield stack
    finally:
        for proc in stack.procs.values():
            proc.stop()
        stack.redis_proc.stop()


def outputs_of(stack: Stack, task_id: str) -> list[Path]:
    return sorted((stack.tmp / "outputs" / task_id).glob("*.png"))


def one_completed_webhook(receiver: WebhookReceiver, path: str) -> dict[str, object]:
    receiver.wait_for(path, 1, timeout=60)
    completed = [d for d in receiver.at(path) if d.body["type"].startswith("task.")]
    ids = {d.headers["webhook-id"] for d in completed}
    assert len(ids) == 1, f"exactly one completion message, got {ids}"
    return completed[-1].body


def test_a_killed_pool_process_reruns_the_job_once(
    crash_stack: CrashStack, receiver: WebhookReceiver
) -> None:
    path = f"pool-{uuid.uuid4().hex[:8]}"
    task_id = str(
        crash_stack.submit(num_inference_steps=30, webhook_url=receiver.url(path))["task_id"]
    )
    crash_stack.wait_status(task_id, "running", timeout=30)
    children = crash_stack.worker_children()
    assert children, "the prefork pool has processes"
    for child in children:
        child.send_signal(signal.SIGKILL)
    view = crash_stack.wait_status(task_id, "succeeded", "failed", timeout=60)
    assert view["status"] == "succeeded", view["error"]
    assert one_completed_webhook(receiver, path)["data"]["status"] == "succeeded"
    assert len(outputs_of(crash_stack, task_id)) == 1, "the rerun overwrote, not duplicated"
    assert crash_stack.procs["worker"].alive()


def test_a_killed_worker_is_redelivered_to_the_next_one(
    crash_stack: CrashStack, receiver: WebhookReceiver
) -> None:
    path = f"worker-{uuid.uuid4().hex[:8]}"
    task_id = str(
        crash_stack.submit(num_inference_steps=30, webhook_url=receiver.url(path))["task_id"]
    )
    crash_stack.wait_status(task_id, "running", timeout=30)
    # SIGKILL to the whole process group: no chance to requeue. The visibility timeout is an
    # hour: the job comes back because the dead worker's lease lapses (seconds).
    crash_stack.restart("worker", signal.SIGKILL)
    view = crash_stack.wait_status(task_id, "succeeded", "failed", timeout=60)
    assert view["status"] == "succeeded", view["error"]
    assert one_completed_webhook(receiver, path)["data"]["task_id"] == task_id
    assert len(outputs_of(crash_stack, task_id)) == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_redis_restart_under_a_running_job_strands_nothing(
    crash_stack: CrashStack, receiver: WebhookReceiver, sig: int
) -> None:
    path = f"redis-{sig}-{uuid.uuid4().hex[:8]}"
    task_id = str(
        crash_stack.submit(num_inference_steps=40, webhook_url=receiver.url(path))["task_id"]
    )
    # Running for over a second: its delivery reached the append-only file's last fsync.
    poll_until(
        lambda: int(crash_stack.view(task_id)["progress"]) >= 10,  # type: ignore[call-overload]
        timeout=30,
        what="the job to be well under way",
    )
    # A WebSocket subscriber rides out the restart: the notifier resubscribes and resyncs it.
    url = f"{crash_stack.notifier_ws}/ws/tasks/{task_id}"
    with connect(url, open_timeout=10, compression=None) as ws:
        assert json.loads(ws.recv(timeout=10))["event"] == "snapshot"
        transcripts: list[Transcript] = []
        watcher = threading.Thread(target=lambda: transcripts.append(read_all(ws, timeout=120)))
        watcher.start()
        crash_stack.restart_redis(sig)
        view = crash_stack.wait_status(task_id, "succeeded", "failed", timeout=90)
        assert view["status"] == "succeeded", view["error"]
        watcher.join(timeout=60)
    assert transcripts and transcripts[0].messages[-1]["status"] == "succeeded"
    assert one_completed_webhook(receiver, path)["data"]["status"] == "succeeded"
    assert len(outputs_of(crash_stack, task_id)) == 1
    assert crash_stack.procs["worker"].alive()
    # Nothing is left behind for the visibility timeout.
    client = redis.Redis.from_url(crash_stack.redis_url, decode_responses=True)
    poll_until(lambda: client.hlen("unacked") == 0, timeout=30, what="no unacked message")


def test_a_job_ends_and_is_delivered_while_no_notifier_runs(
    crash_stack: CrashStack, receiver: WebhookReceiver
) -> None:
    """The worker writes its events to Redis itself: a dead notifier costs the job nothing. Its
    result lands, its webhook goes out, and a notifier that comes back serves its final view."""
    path = f"notifier-{uuid.uuid4().hex[:8]}"
    task_id = str(
        crash_stack.submit(num_inference_steps=20, webhook_url=receiver.url(path))["task_id"]
    )
    crash_stack.wait_status(task_id, "running", timeout=30)
    crash_stack.procs["notifier"].stop(signal.SIGKILL)
    try:
        view = crash_stack.wait_status(task_id, "succeeded", "failed", timeout=60)
        assert view["status"] == "succeeded", view["error"]
        assert len(view["result"]["images"]) == 1  # type: ignore[index]
        assert len(outputs_of(crash_stack, task_id)) == 1
        assert one_completed_webhook(receiver, path)["type"] == "task.succeeded"
    finally:
        crash_stack.restart("notifier")
    transcript = watch(f"{crash_stack.notifier_ws}/ws/tasks/{task_id}")
    assert transcript.events == ["snapshot"]
    assert transcript.messages[0]["status"] == "succeeded"
    assert transcript.messages[0]["result"] == view["result"]


def test_accepted_jobs_survive_a_redis_restart(crash_stack: CrashStack) -> None:
    worker = crash_stack.procs["worker"]
    worker.stop(signal.SIGTERM)
    accepted = [str(crash_stack.submit(seed=s)["task_id"]) for s in (21, 22)]
    crash_stack.restart_redis()
    crash_stack.procs["worker"] = Proc(
        worker.name, worker.args, worker.env, worker.log_path
    ).start()
    for task_id in accepted:
        view = crash_stack.wait_status(task_id, "succeeded", timeout=90)
        assert view["result"]["images"][0]["seed"] in (21, 22)  # type: ignore[index]

    # The services reconnected on their own: a new job goes through too. (Right after the
    # restart a submit may meet a stale connection and get the documented 503 + Retry-After.)
    def submitted() -> str | None:
        body = {"prompt": "after restart", "width": 64, "height": 64, "num_inference_steps": 2}
        answer = httpx.post(f"{crash_stack.gateway}/flux", json=body)
        return str(answer.json()["task_id"]) if answer.status_code == 202 else None

    fresh = poll_until(submitted, timeout=15, interval=0.5, what="a submit after the restart")
    crash_stack.wait_status(fresh, "succeeded", timeout=60)
    assert httpx.get(f"{crash_stack.gateway}/readyz").status_code == 200


def test_sigterm_lets_a_worker_finish_its_running_job(crash_stack: CrashStack) -> None:
    task_id = str(crash_stack.submit(num_inference_steps=20)["task_id"])
    crash_stack.wait_status(task_id, "running", timeout=30)
    worker = crash_stack.procs["worker"]
    assert worker.popen is not None
    worker.popen.send_signal(signal.SIGTERM)  # what Kubernetes sends at a rollout
    view = crash_stack.wait_status(task_id, "succeeded", "failed", timeout=60)
    assert view["status"] == "succeeded", view["error"]
    poll_until(lambda: not worker.alive(), timeout=30, what="the worker to exit after its job")
    crash_stack.procs["worker"] = Proc(
        worker.name, worker.args, worker.env, worker.log_path
    ).start()


def test_sigterm_lets_an_inference_server_finish_its_batch(crash_stack: CrashStack) -> None:
    task_id = str(crash_stack.submit(num_inference_steps=20)["task_id"])
    view = poll_until(
        lambda: (v := crash_stack.view(task_id))["progress"] > 0 and v,
        timeout=30,
        what="the job to be in its batch",
    )
    assert view["status"] == "running"
    inference = crash_stack.procs["inference"]
    assert inference.popen is not None
    inference.popen.send_signal(signal.SIGTERM)
    finished = crash_stack.wait_status(task_id, "succeeded", "failed", timeout=60)
    assert finished["status"] == "succeeded", finished["error"]
    poll_until(lambda: not inference.alive(), timeout=30, what="the server to exit")
    crash_stack.restart("inference")


def test_a_job_that_keeps_killing_its_worker_is_failed_not_looped(
    crash_stack: CrashStack,
) -> None:
    """Out of memory on every try: after FLUXGATE_WORKER_MAX_CRASHES deaths the job fails."""
    task_id = str(crash_stack.submit(num_inference_steps=30)["task_id"])
    attempts = redis.Redis.from_url(crash_stack.redis_url, decode_responses=True)
    for deaths in range(3):  # the default budget
        # The run `deaths` (0-based) is at work once it has counted the deaths before it.
        poll_until(
            lambda n=deaths: (
                attempts.hget(keys.attempt_key(task_id), "crashes") == (None if n == 0 else str(n))
                and attempts.hget(keys.attempt_key(task_id), "open") == "1"
            ),
            timeout=60,
            what=f"run {deaths + 1} to start",
        )
        for child in crash_stack.worker_children():
            child.send_signal(signal.SIGKILL)
    view = crash_stack.wait_status(task_id, "failed", "succeeded", timeout=60)
    assert view["status"] == "failed", view
    assert view["error"]["code"] == "worker_crashed"  # type: ignore[index]
    assert crash_stack.procs["worker"].alive()
