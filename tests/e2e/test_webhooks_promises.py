"""The README's webhook promises on the real stack: a real Celery worker delivering to a real
receiver (retry waits are 0.3 s and the attempt timeout 2 s there, see `FAST_DELIVERY_ENV`)."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime
from typing import Any

import httpx
import redis

from apps.common.redis import keys
from apps.common.wire.contracts import WebhookMessage
from devtools.procs import poll_until
from tests.conftest import FAST_DELIVERY_ENV, Stack
from tests.tasktypes.conftest import astronaut, png, run_task
from tests.tasktypes.imagesrv import serving
from tests.webhook_receiver import Answer, WebhookReceiver

RETRY_WAITS = FAST_DELIVERY_ENV["FLUXGATE_WEBHOOK_RETRY_SCHEDULE_S"].split(",")
TIMEOUT_S = float(FAST_DELIVERY_ENV["FLUXGATE_WEBHOOK_TIMEOUT_S"])
# Connecting to 0.0.0.0 reaches this host's loopback, but the SSRF guard refuses the address
# (unspecified) although the stack allows loopback: a URL that works only if nobody checks it.
UNCHECKED_HOST = "0.0.0.0"


def hook_job(stack: Stack, path: str, receiver: WebhookReceiver, **body: object) -> str:
    """A small FLUX job whose webhook goes to `path` on the receiver; its task id."""
    small = {"width": 64, "height": 64, "num_inference_steps": 2}
    view = stack.submit(**{**small, "webhook_url": receiver.url(path), **body})
    return str(view["task_id"])


def attempts(stack: Stack, task_id: str, count: int) -> list[dict[str, Any]]:
    """The task's webhook attempts once there are `count` of them."""
    return poll_until(
        lambda: len(a := stack.view(task_id)["webhook"]["attempts"]) >= count and a,  # type: ignore[index]
        timeout=15,
        what=f"{count} webhook attempts of {task_id}",
    )


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def dead_letters(client: redis.Redis, task_id: str) -> list[WebhookMessage]:
    raw = client.lrange(keys.webhook_dead_key(task_id), 0, -1)
    return [WebhookMessage.model_validate_json(item) for item in raw]  # type: ignore[union-attr]


def test_a_message_that_runs_out_of_retries_is_dead_lettered_and_can_be_redelivered(
    stack: Stack, receiver: WebhookReceiver, redis_client: redis.Redis
) -> None:
    path = f"dead-{uuid.uuid4().hex[:8]}"
    tries = len(RETRY_WAITS) + 1
    receiver.answer(path, *[503] * tries)
    task_id = hook_job(stack, path, receiver)
    seen = attempts(stack, task_id, tries)
    assert [a["status_code"] for a in seen] == [503] * tries
    assert all(a["next_retry_at"] for a in seen[:-1]), seen
    assert seen[-1]["next_retry_at"] is None, "the last attempt schedules no retry"
    dead = dead_letters(redis_client, task_id)
    assert [m.message_id for m in dead] == [seen[0]["message_id"]], "dead-lettered once"
    assert len(receiver.at(path)) == tries

    response = httpx.post(f"{stack.gateway}/tasks/{task_id}/webhook/redeliver", timeout=10)
    assert response.status_code == 202, response.text
    assert response.json()["message_id"] == dead[0].message_id
    again = receiver.wait_for(path, tries + 1)[-1]
    assert again.answered == 200 and again.verified
    assert again.headers["webhook-id"] == dead[0].message_id
    assert attempts(stack, task_id, tries + 1)[-1]["status_code"] == 200
    assert dead_letters(redis_client, task_id) == [], "redelivery takes it off the dead list"


def test_429_waits_for_retry_after_rather_than_the_backoff(
    stack: Stack, receiver: WebhookReceiver
) -> None:
    path = f"busy-{uuid.uuid4().hex[:8]}"
    receiver.answer(path, Answer(429, {"Retry-After": "1"}))
    task_id = hook_job(stack, path, receiver)
    first, second = receiver.wait_for(path, 2)
    gap = second.at - first.at
    assert gap >= 1.0, f"retried {gap:.2f} s after a 429 with Retry-After: 1 (backoff 0.3 s)"
    seen = attempts(stack, task_id, 2)
    assert seen[0]["status_code"] == 429
    assert seen[1]["status_code"] == 200
    planned = seconds(seen[0]["next_retry_at"]) - seconds(seen[0]["at"])
    assert planned >= 1.0, f"next attempt planned {planned:.2f} s later, not after Retry-After"


def test_another_4xx_is_retried_once_then_dead_lettered(
    stack: Stack, receiver: WebhookReceiver, redis_client: redis.Redis
) -> None:
    path = f"bad-{uuid.uuid4().hex[:8]}"
    receiver.answer(path, 400, 400)
    task_id = hook_job(stack, path, receiver)
    seen = attempts(stack, task_id, 2)
    assert [a["status_code"] for a in seen] == [400, 400]
    assert seen[0]["next_retry_at"] is not None, "a first 4xx is retried"
    assert seen[1]["next_retry_at"] is None, "a second 4xx is not retried again"
    assert [m.message_id for m in dead_letters(redis_client, task_id)] == [seen[0]["message_id"]]
    assert [d.answered for d in receiver.at(path)] == [400, 400]


def test_redirects_are_not_followed(stack: Stack, receiver: WebhookReceiver) -> None:
    path = f"moved-{uuid.uuid4().hex[:8]}"
    target = f"{path}-target"
    # 307 keeps the method: a client that follows it POSTs the message to the target.
    receiver.answer(path, Answer(307, {"Location": receiver.url(target)}))
    task_id = hook_job(stack, path, receiver)
    seen = attempts(stack, task_id, 1)
    assert seen[0]["status_code"] == 307, f"the redirect was followed: {seen[0]}"
    assert receiver.at(target) == [], "the redirect's target got the message"


def test_a_hanging_receiver_is_given_up_on_after_the_timeout(
    stack: Stack, receiver: WebhookReceiver
) -> None:
    path = f"hang-{uuid.uuid4().hex[:8]}"
    hang_s = TIMEOUT_S + 4
    receiver.answer(path, Answer(200, hang_s=hang_s))
    task_id = hook_job(stack, path, receiver)
    seen = attempts(stack, task_id, 1)
    assert seen[0]["status_code"] is None, f"the worker waited for the hanging answer: {seen[0]}"
    assert "Timeout" in seen[0]["error"], seen[0]
    first, second = receiver.wait_for(path, 2)
    waited = second.at - first.at
    assert TIMEOUT_S <= waited < hang_s, f"retried {waited:.2f} s after the first call"
    assert attempts(stack, task_id, 2)[1]["status_code"] == 200


def test_the_url_is_checked_again_before_each_delivery(
    stack: Stack, receiver: WebhookReceiver, redis_client: redis.Redis
) -> None:
    path = f"moved-host-{uuid.uuid4().hex[:8]}"
    task_id = hook_job(stack, path, receiver)
    attempts(stack, task_id, 1)
    # The name now leads to a refused address (as if its DNS changed after submit): redeliver.
    last = keys.webhook_last_key(task_id)
    stored = WebhookMessage.model_validate_json(redis_client.get(last))  # type: ignore[arg-type]
    moved = stored.model_copy(update={"url": receiver.url(path, host=UNCHECKED_HOST)})
    redis_client.set(last, moved.model_dump_json())
    response = httpx.post(f"{stack.gateway}/tasks/{task_id}/webhook/redeliver", timeout=10)
    assert response.status_code == 202, response.text
    refused = attempts(stack, task_id, 2)[1]
    assert refused["status_code"] is None, f"delivered to a refused address: {refused}"
    assert refused["error"].startswith("refused"), refused
    assert refused["next_retry_at"] is None, "a refused URL is not retried"
    assert len(receiver.at(path)) == 1


def test_an_image_url_redirecting_to_a_refused_address_fails_the_job(stack: Stack) -> None:
    files = {"/astro.png": (200, "image/png", png(astronaut(64)))}
    with serving(files) as base:
        port = base.rsplit(":", 1)[1]
        files["/ok"] = (302, "text/plain", b"/astro.png")
        files["/away"] = (302, "text/plain", f"http://{UNCHECKED_HOST}:{port}/astro.png".encode())
        view = run_task(stack, "stylize", {"image": f"{base}/away", "preset": "pencil_sketch"})
        assert view["status"] == "failed", f"fetched through a refused redirect: {view}"
        assert view["error"]["code"] == "invalid_input_image"
        assert "unspecified" in view["error"]["message"], view["error"]
        # The same image through an allowed redirect works: the refusal is the address's.
        allowed = run_task(stack, "stylize", {"image": f"{base}/ok", "preset": "pencil_sketch"})
        assert allowed["status"] == "succeeded", allowed


def test_progress_webhooks_come_at_most_once_a_second(
    stack: Stack, receiver: WebhookReceiver
) -> None:
    path = f"progress-{uuid.uuid4().hex[:8]}"
    # 25 steps of 100 ms: a progress event every step, 2-3 s in all.
    task_id = hook_job(stack, path, receiver, num_inference_steps=25, webhook_events=["progress"])
    stack.wait_status(task_id, "succeeded", timeout=30)
    deliveries = poll_until(
        lambda: (got := receiver.at(path)) and got[-1].body["type"] == "task.succeeded" and got,
        timeout=10,
        what="the final webhook",
    )
    progress = [d for d in deliveries if d.body["type"] == "task.progress"]
    assert len(progress) >= 2, f"{len(progress)} progress webhooks over 25 steps"
    sent = [seconds(d.body["timestamp"]) for d in progress]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(sent)]
    assert min(gaps) >= 0.99, f"progress webhooks {gaps} s apart (at most one a second)"
