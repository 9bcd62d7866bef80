"""The Python client against what a real stack does, where `fakes.py` scripts it for speed: 503
with `Retry-After` while Redis is away, 429 from a key's own rate limit, and a WebSocket that a
SIGKILLed notifier drops. One auth-on stack (gateway, notifier, no worker) of its own, since its
Redis and notifier are taken away."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import httpx
import pytest
import redis
from fluxgate_client import Fluxgate, JobView, Submitted

from devtools.procs import poll_until, wait_http_ok
from tests.gateway.auth_stack import AuthStack, bearer, start_auth_stack
from tests.observability.scrape import scrape, value

SMALL = {"prompt": "a red fox", "width": 64, "height": 64, "num_inference_steps": 2, "seed": 7}
T = TypeVar("T")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthStack]:
    yield from start_auth_stack(tmp_path_factory.mktemp("client-real"))


def in_background(call: Callable[[], T]) -> Future[T]:
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(call)
    pool.shutdown(wait=False)
    return future


def gateway_answers(stack: AuthStack, status: int) -> float:
    samples = scrape(f"{stack.gateway}/metrics")
    return value(
        samples, "fluxgate_http_requests_total", route="/flux", status=str(status), method="POST"
    )


def test_submit_rides_out_a_redis_outage_on_503_and_retry_after(stack: AuthStack) -> None:
    assert stack.redis is not None
    token = stack.new_key("outage")
    before = gateway_answers(stack, 503)
    store = redis.Redis.from_url(stack.redis_url)
    store.save()  # the key survives the restart (redis-server loads dump.rdb)
    store.close()
    stack.redis.stop()
    restarted = False
    try:
        down = httpx.post(f"{stack.gateway}/flux", json=SMALL, headers=bearer(token))
        assert down.status_code == 503, down.text
        assert float(down.headers["retry-after"]) > 0
        with Fluxgate(stack.gateway, token, max_retries=30) as client:
            submitting = in_background(lambda: client.submit("flux", SMALL))
            # The client has met a 503 of its own (beyond ours) and waits to retry.
            poll_until(
                lambda: gateway_answers(stack, 503) >= before + 2,
                timeout=15,
                what="the client's submit to be answered 503",
            )
            assert not submitting.done(), submitting.result()
            stack.redis.start()
            restarted = True
            submitted = submitting.result(timeout=60)
    finally:
        if not restarted:
            stack.redis.start()
    assert isinstance(submitted, Submitted) and submitted.status == "queued"
    wait_http_ok(f"{stack.gateway}/readyz", timeout=30, proc=stack.procs["gateway"])


def test_submit_waits_out_a_keys_rate_limit(stack: AuthStack) -> None:
    token = stack.new_key("rate-limited", rate="1/s", burst=1)
    before = gateway_answers(stack, 429)
    with Fluxgate(stack.gateway, token, max_retries=5) as client:
        first = client.submit("flux", SMALL)
        # The bucket is empty: the gateway answers 429 with Retry-After, and the client waits.
        second = client.submit("flux", SMALL)
    assert first.task_id != second.task_id
    assert gateway_answers(stack, 429) >= before + 1, "the second submit was never rate limited"


def test_wait_survives_a_sigkilled_notifier(stack: AuthStack) -> None:
    token = stack.new_key("ws-drop")
    notifier = stack.procs["notifier"]
    notifier_url = stack.notifier_ws.replace("ws://", "http://")
    views: list[JobView] = []
    with Fluxgate(stack.gateway, token, ws_url=stack.notifier_ws, reconnect_budget=30) as client:
        task_id = client.submit("flux", SMALL).task_id
        waiting = in_background(lambda: client.wait(task_id, timeout=60, on_update=views.append))
        poll_until(lambda: views, timeout=15, what="the snapshot over the WebSocket")
        notifier.stop(signal.SIGKILL)
        # The job ends while no notifier runs: the gateway cancels a queued job itself.
        canceled = httpx.post(f"{stack.gateway}/tasks/{task_id}/cancel", headers=bearer(token))
        assert canceled.status_code == 202, canceled.text
        notifier.start()
        wait_http_ok(f"{notifier_url}/readyz", timeout=60, proc=notifier)
        final = waiting.result(timeout=60)
    assert views[0].event == "snapshot" and views[0].status == "queued"
    assert final.status == "canceled", final
    assert final.task_id == task_id
