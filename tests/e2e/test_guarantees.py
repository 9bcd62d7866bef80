"""The README's guarantees that need a stack of their own: any notifier replica serves any task,
backpressure at capacity spends no retry, the `out_of_memory`, `timeout` and
`inference_unavailable` codes reach the job view, subscribers are re-sent the current state after
the notifier loses its Redis subscription, and the gateway and the notifier finish open requests
on SIGTERM.

One stack for all of them, tuned so each takes seconds: a second notifier, one inference server
that runs one image per batch and takes one request at a time (so it is full at one) and fakes
running out of GPU memory above one image, a worker with two slots, short time limits, one quick
retry. The tests that stop processes for good (SIGTERM) come last.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import httpx
import psutil
import pytest
import redis
from websockets.sync.client import connect

from apps.common.security.signing import INTERNAL_READ_HEADER, internal_read_token
from devtools.procs import (
    Proc,
    free_port,
    poll_until,
    start_redis,
    start_stack,
    wait_http_ok,
    wait_stack_ready,
)
from tests.conftest import INTERNAL_SECRET, STEP_DELAY_MS, Stack
from tests.e2e.wsclient import Transcript, read_all
from tests.observability.scrape import scrape, value

WORKER_SLOTS = 2  # one more than the inference server takes (batch size 1 x queue factor 1)
SOFT_TIME_LIMIT_S = 6
GUARANTEES_ENV = {
    "FLUXGATE_INTERNAL_SECRET": INTERNAL_SECRET,
    "FLUXGATE_INFERENCE_STEP_DELAY_MS": str(STEP_DELAY_MS),
    "FLUXGATE_INFERENCE_MAX_BATCH_SIZE": "1",
    "FLUXGATE_BALANCER_QUEUE_FACTOR": "1",
    "FLUXGATE_INFERENCE_TEST_OOM_ABOVE_ROWS": "1",
    "FLUXGATE_JOB_SOFT_TIME_LIMIT_S": str(SOFT_TIME_LIMIT_S),
    "FLUXGATE_JOB_TIME_LIMIT_S": str(SOFT_TIME_LIMIT_S + 2),
    "FLUXGATE_WORKER_CAPACITY_SLICE_S": "3",
    "FLUXGATE_WORKER_CAPACITY_POLL_S": "0.3",
    "FLUXGATE_WORKER_MAX_RETRIES": "1",
    "FLUXGATE_WORKER_RETRY_BACKOFF_S": "0.1",
}
T = TypeVar("T")
READER = {INTERNAL_READ_HEADER: internal_read_token(INTERNAL_SECRET)}


class GuaranteesStack(Stack):
    redis_proc: Proc
    notifier_b: str
    notifier_ws_b: str

    def restart(self, name: str) -> None:
        old = self.procs[name]
        old.stop(signal.SIGKILL)
        self.procs[name] = Proc(old.name, old.args, old.env, old.log_path).start()
        port = old.env[f"FLUXGATE_{name.upper()}_PORT"]
        wait_http_ok(f"http://127.0.0.1:{port}/readyz", timeout=60, proc=self.procs[name])

    def retries_spent(self) -> float:
        """`fluxgate_worker_tasks_total{state="RETRY"}`, over every task name."""
        samples = scrape(f"{self.worker_metrics}/metrics")
        return value(samples, "fluxgate_worker_tasks_total", state="RETRY")


@pytest.fixture(scope="module")
def guarantees_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuaranteesStack]:
    tmp = tmp_path_factory.mktemp("guarantees")
    redis_proc, redis_url = start_redis(tmp)
    ports, env, procs = start_stack(
        redis_url, tmp, extra_env=GUARANTEES_ENV, worker_concurrency=WORKER_SLOTS
    )
    # A second notifier replica: the worker and the gateway only know the first one.
    port_b = free_port()
    procs["notifier-b"] = Proc(
        "notifier-b",
        procs["notifier"].args,
        {**env, "FLUXGATE_NOTIFIER_PORT": str(port_b)},
        tmp / "notifier-b.log",
    ).start()
    ports["notifier-b"] = port_b
    stack = GuaranteesStack.at(ports, redis_url=redis_url, env=env, procs=procs, tmp=tmp)
    stack.redis_proc = redis_proc
    stack.notifier_b = f"http://127.0.0.1:{port_b}"
    stack.notifier_ws_b = f"ws://127.0.0.1:{port_b}"
    try:
        wait_stack_ready(ports, procs)
        stack.wait_status(
            str(stack.submit(width=64, height=64)["task_id"]), "succeeded", timeout=90
        )
        yield stack
    finally:
        for proc in stack.procs.values():
            proc.stop()
        stack.redis_proc.stop()


def small_job(stack: Stack, steps: int, **extra: object) -> str:
    return str(stack.submit(width=64, height=64, num_inference_steps=steps, **extra)["task_id"])


def in_background(work: Callable[[], T]) -> tuple[threading.Thread, list[T]]:
    """Run `work` in a thread; its result lands in the list."""
    out: list[T] = []
    thread = threading.Thread(target=lambda: out.append(work()), daemon=True)
    thread.start()
    return thread, out


def test_any_notifier_replica_serves_any_task(guarantees_stack: GuaranteesStack) -> None:
    """The worker POSTs every event to notifier A; subscribers of A and of B see them all live."""
    stack = guarantees_stack
    task_id = small_job(stack, 15)
    transcripts: dict[str, Transcript] = {}
    with (
        connect(f"{stack.notifier_ws}/ws/tasks/{task_id}", open_timeout=10) as ws_a,
        connect(f"{stack.notifier_ws_b}/ws/tasks/{task_id}", open_timeout=10) as ws_b,
    ):
        for ws in (ws_a, ws_b):
            snapshot = json.loads(ws.recv(timeout=10))
            assert snapshot["event"] == "snapshot" and snapshot["status"] in ("queued", "running")
        readers = [
            in_background(lambda name=name, ws=ws: transcripts.update({name: read_all(ws)}))[0]
            for name, ws in (("A", ws_a), ("B", ws_b))
        ]
        view = stack.wait_status(task_id, "succeeded", "failed", timeout=30)
        assert view["status"] == "succeeded", view["error"]
        for reader in readers:
            reader.join(timeout=30)
    for name in ("B", "A"):
        assert name in transcripts, f"notifier {name}'s socket never closed"
        transcript = transcripts[name]
        # The terminal view itself, live (a late snapshot would say `snapshot`).
        assert transcript.events[-1] == "succeeded", (name, transcript.events)
        assert "progress" in transcript.events, (name, transcript.events)
        assert transcript.messages[-1]["result"] == view["result"], name


def test_backpressure_at_capacity_spends_no_retry(guarantees_stack: GuaranteesStack) -> None:
    """Three jobs, two worker slots, a server that takes one: the second waits in the balancer
    (`waiting_for: capacity`), then runs; no job spends a retry."""
    stack = guarantees_stack
    retries_before = stack.retries_spent()
    tasks = [small_job(stack, 10, seed=seed) for seed in range(3)]
    waited = poll_until(
        lambda: next(
            (t for t in tasks if stack.view(t)["waiting_for"] == "capacity"),
            None,
        ),
        timeout=20,
        what="a job to wait for capacity",
    )
    assert stack.view(waited)["status"] == "queued"
    for task_id in tasks:
        view = stack.wait_status(task_id, "succeeded", "failed", "expired", timeout=60)
        assert view["status"] == "succeeded", view["error"]
        assert view["waiting_for"] is None
    assert stack.retries_spent() == retries_before, "waiting for room spent a retry"


def test_error_codes_reach_the_job_view(guarantees_stack: GuaranteesStack) -> None:
    """`timeout` (the soft time limit), `out_of_memory` (a batch that does not fit, even alone)
    and `inference_unavailable` (no balancer answers, retries spent) end up in the job view."""
    stack = guarantees_stack
    too_long = small_job(stack, 100)  # 10 s of steps against a 6 s soft limit
    too_big = small_job(stack, 2, num_images=2)  # two rows: over the fake memory of one row
    view = stack.wait_status(too_big, "succeeded", "failed", timeout=30)
    assert view["status"] == "failed"
    assert view["error"]["code"] == "out_of_memory", view["error"]  # type: ignore[index]
    view = stack.wait_status(too_long, "succeeded", "failed", timeout=SOFT_TIME_LIMIT_S + 20)
    assert view["status"] == "failed"
    assert view["error"]["code"] == "timeout", view["error"]  # type: ignore[index]
    inference_log = stack.procs["inference"].log_path.read_text()
    assert "out of memory on a single request" in inference_log

    stack.procs["balancer"].stop(signal.SIGKILL)
    try:
        unreachable = small_job(stack, 2)
        view = stack.wait_status(unreachable, "succeeded", "failed", timeout=30)
        assert view["status"] == "failed"
        assert view["error"]["code"] == "inference_unavailable", view["error"]  # type: ignore[index]
    finally:
        stack.restart("balancer")


def test_a_subscriber_is_resent_the_state_after_a_lost_redis_connection(
    guarantees_stack: GuaranteesStack,
) -> None:
    """Notifier A's subscription to Redis is cut and cannot come back (its user may not
    PSUBSCRIBE) while the job is canceled: that view is published to no one on A. Once A has
    subscribed again it re-sends the current state, and its subscriber learns the job ended.

    (A restart of Redis would not show this: a Celery worker that loses its broker stops its
    late-acknowledged jobs, so nothing changes until the lease hands the job to a new run, long
    after the notifier is back; `test_crash_safety` checks the final view through a restart.)"""
    stack = guarantees_stack
    task_id = small_job(stack, 50)
    stack.wait_status(task_id, "running", timeout=30)
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    notifier = stack.procs["notifier"].popen
    assert notifier is not None
    with connect(f"{stack.notifier_ws}/ws/tasks/{task_id}", open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["status"] == "running"
        client.acl_setuser("default", enabled=True, commands=["-psubscribe"], reset=False)
        try:
            ports = {c.laddr.port for c in psutil.Process(notifier.pid).net_connections("tcp")}
            subscriptions = [
                c["id"]
                for c in client.client_list()
                if int(c["psub"]) > 0 and int(c["addr"].rsplit(":", 1)[1]) in ports
            ]
            assert len(subscriptions) == 1, client.client_list()
            client.client_kill_filter(_id=subscriptions[0])
            poll_until(
                lambda: "event subscription lost" in stack.procs["notifier"].log_tail(5),
                timeout=10,
                what="notifier A to lose its subscription",
            )
            canceled = httpx.post(f"{stack.gateway}/tasks/{task_id}/cancel", timeout=10)
            assert canceled.status_code == 202, canceled.text
            stack.wait_status(task_id, "canceled", timeout=10)
        finally:
            client.acl_setuser("default", enabled=True, commands=["+psubscribe"], reset=False)
        try:
            transcript = read_all(ws, timeout=15)
        except TimeoutError:
            raise AssertionError(
                "the subscriber was not re-sent the job's state after the subscription came back"
            ) from None
    # A progress view published before the subscription was cut may still arrive first.
    events = [e for e in transcript.events if e != "progress"]
    assert events == ["snapshot"], transcript.events
    assert transcript.messages[-1]["status"] == "canceled", transcript.messages
    assert transcript.close_code == 1000


def answered_through_sigterm(
    proc: Proc, request: Callable[[], httpx.Response], *, parked: Callable[[], bool]
) -> None:
    """Send `request` in the background; once `parked` says it is in flight, SIGTERM `proc`:
    the request still gets its finished job, and then the process exits."""
    sending, answers = in_background(request)
    poll_until(parked, timeout=10, what=f"the request to {proc.name} to be in flight")
    assert proc.popen is not None
    proc.popen.send_signal(signal.SIGTERM)
    sending.join(timeout=40)
    assert answers, f"no answer from {proc.name} after SIGTERM"
    assert answers[0].status_code == 200, answers[0].text
    assert answers[0].json()["status"] == "succeeded"
    poll_until(lambda: not proc.alive(), timeout=20, what=f"{proc.name} to exit")


def test_sigterm_lets_the_notifier_answer_its_open_wait(guarantees_stack: GuaranteesStack) -> None:
    stack = guarantees_stack
    task_id = small_job(stack, 15)
    answered_through_sigterm(
        stack.procs["notifier-b"],
        lambda: httpx.get(
            f"{stack.notifier_b}/internal/wait/{task_id}",
            params={"timeout": 30},
            headers=READER,
            timeout=40,
        ),
        parked=lambda: waiters(stack.notifier_b) >= 1,
    )


def test_sigterm_lets_the_gateway_answer_its_open_submit(
    guarantees_stack: GuaranteesStack,
) -> None:
    """A `Prefer: wait` submit parks on notifier A's wait; the gateway holds it through SIGTERM."""
    stack = guarantees_stack
    parked = waiters(stack.notifier)
    body = {"prompt": "wait", "width": 64, "height": 64, "num_inference_steps": 15}
    answered_through_sigterm(
        stack.procs["gateway"],
        lambda: httpx.post(
            f"{stack.gateway}/flux", json=body, headers={"Prefer": "wait=30"}, timeout=40
        ),
        parked=lambda: waiters(stack.notifier) > parked,
    )


def waiters(notifier: str) -> float:
    for line in httpx.get(f"{notifier}/metrics/", timeout=10).text.splitlines():
        if line.startswith("fluxgate_notifier_waiters "):
            return float(line.split()[1])
    return 0.0
