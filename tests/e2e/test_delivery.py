"""Webhooks, idempotent submit and Cancel-After deadlines on the real stack."""

from __future__ import annotations

import uuid

import httpx

from devtools.procs import poll_until
from tests.conftest import Stack
from tests.webhook_receiver import WebhookReceiver


def submit_raw(stack: Stack, body: dict[str, object], **headers: str) -> httpx.Response:
    base = {"prompt": "a red fox", "width": 64, "height": 64, "num_inference_steps": 2, "seed": 1}
    return httpx.post(f"{stack.gateway}/flux", json={**base, **body}, headers=headers, timeout=10)


def test_signed_webhooks_for_started_and_completed(stack: Stack, receiver: WebhookReceiver) -> None:
    path = f"ok-{uuid.uuid4().hex[:8]}"
    answer = submit_raw(
        stack, {"webhook_url": receiver.url(path), "webhook_events": ["started", "completed"]}
    )
    assert answer.status_code == 202, answer.text
    task_id = answer.json()["task_id"]
    deliveries = receiver.wait_for(path, 2)
    assert [d.body["type"] for d in deliveries] == ["task.started", "task.succeeded"]
    assert all(d.verified for d in deliveries), "every delivery carries a valid signature"
    final = deliveries[-1].body["data"]
    assert final["task_id"] == task_id and final["status"] == "succeeded"
    assert final["result"]["images"][0]["url"].startswith(stack.gateway)
    ids = [d.headers["webhook-id"] for d in deliveries]
    assert len(set(ids)) == 2
    view = poll_until(
        lambda: (v := stack.view(task_id))["webhook"]["attempts"][1:] and v,
        timeout=10,
        what="attempts in the view",
    )
    assert view["webhook"]["url"] == receiver.url(path)
    assert [a["status_code"] for a in view["webhook"]["attempts"]] == [200, 200]


def test_a_failing_receiver_gets_the_same_message_until_it_accepts(
    stack: Stack, receiver: WebhookReceiver
) -> None:
    path = f"flaky-{uuid.uuid4().hex[:8]}"
    receiver.answer(path, 503, 503)
    answer = submit_raw(stack, {"webhook_url": receiver.url(path)})
    task_id = answer.json()["task_id"]
    deliveries = receiver.wait_for(path, 3)
    assert [d.answered for d in deliveries] == [503, 503, 200]
    assert len({d.headers["webhook-id"] for d in deliveries}) == 1, "stable id across retries"
    assert len({d.body["timestamp"] for d in deliveries}) == 1, "same body across retries"
    assert all(d.verified for d in deliveries)
    attempts = poll_until(
        lambda: len(a := stack.view(task_id)["webhook"]["attempts"]) == 3 and a,
        timeout=10,
        what="three attempts",
    )
    assert [a["attempt"] for a in attempts] == [0, 1, 2]
    assert attempts[0]["next_retry_at"] is not None and attempts[2]["next_retry_at"] is None


def test_410_stops_retries_and_redeliver_sends_it_again(
    stack: Stack, receiver: WebhookReceiver
) -> None:
    path = f"gone-{uuid.uuid4().hex[:8]}"
    receiver.answer(path, 410)
    task_id = submit_raw(stack, {"webhook_url": receiver.url(path)}).json()["task_id"]
    first = receiver.wait_for(path, 1)[0]
    poll_until(lambda: stack.view(task_id)["webhook"]["attempts"], timeout=10, what="attempt")
    assert len(receiver.at(path)) == 1, "no retry after 410"
    response = httpx.post(f"{stack.gateway}/tasks/{task_id}/webhook/redeliver")
    assert response.status_code == 202
    assert response.json()["message_id"] == first.headers["webhook-id"]
    again = receiver.wait_for(path, 2)[1]
    assert again.headers["webhook-id"] == first.headers["webhook-id"] and again.answered == 200
    assert again.verified


def test_internal_webhook_urls_are_refused_at_submit(stack: Stack) -> None:
    for url in (
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "ftp://example.com/hook",
    ):
        response = submit_raw(stack, {"webhook_url": url})
        assert response.status_code == 422, url
        assert response.json()["error"]["field"] == "webhook_url"


def test_idempotent_submit_replays_and_refuses_a_changed_body(stack: Stack) -> None:
    key = f"order-{uuid.uuid4()}"
    first = submit_raw(stack, {"seed": 5}, **{"Idempotency-Key": key})
    assert first.status_code == 202
    replay = submit_raw(stack, {"seed": 5}, **{"Idempotency-Key": key})
    assert replay.status_code == 200
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["task_id"] == first.json()["task_id"]
    assert replay.headers["location"] == first.headers["location"]
    changed = submit_raw(stack, {"seed": 6}, **{"Idempotency-Key": key})
    assert changed.status_code == 409
    assert changed.json()["error"]["field"] == "Idempotency-Key"
    other = submit_raw(stack, {"seed": 5}, **{"Idempotency-Key": key + "-2"})
    assert other.status_code == 202 and other.json()["task_id"] != first.json()["task_id"]


def test_bad_cancel_after_is_422(stack: Stack) -> None:
    for value in ("soon", "-5", "0", "10d"):
        response = submit_raw(stack, {}, **{"Cancel-After": value})
        assert response.status_code == 422, value
        assert response.json()["error"]["field"] == "Cancel-After"


def test_a_queued_job_expires_at_its_deadline_behind_a_busy_queue(stack: Stack) -> None:
    blockers = stack.fill_worker()
    try:
        answer = submit_raw(stack, {}, **{"Cancel-After": "1s"})
        task_id = answer.json()["task_id"]
        view = stack.wait_status(task_id, "expired", timeout=15)
        assert view["error"]["code"] == "deadline_exceeded"
        assert view["started_at"] is None
    finally:
        stack.release(blockers)


def test_a_running_job_is_stopped_at_its_deadline(stack: Stack) -> None:
    answer = submit_raw(stack, {"num_inference_steps": 80}, **{"Cancel-After": "2"})
    task_id = answer.json()["task_id"]
    view = stack.wait_status(task_id, "canceled", "succeeded", timeout=30)
    assert view["status"] == "canceled"
    assert view["error"]["code"] == "deadline_exceeded"
    assert view["progress"] < 90
