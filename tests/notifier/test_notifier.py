"""The notifier's internal routes on the real stack: signed events and the long-poll wait."""

from __future__ import annotations

import threading
import time

import httpx
import redis

from apps.common.jobs.record import new_job
from apps.common.redis import keys
from apps.common.security.signing import INTERNAL_READ_HEADER, internal_read_token, sign_internal
from devtools.procs import poll_until
from tests.conftest import INTERNAL_SECRET, Stack

READER = {INTERNAL_READ_HEADER: internal_read_token(INTERNAL_SECRET)}


def queued_task(stack: Stack) -> str:
    """A job record with no Celery message behind it, so only these tests move it."""
    record = new_job("flux", {"prompt": "a fox"})
    client = redis.Redis.from_url(stack.redis_url)
    client.hset(keys.job_key(record.task_id), mapping=record.to_hash())  # type: ignore[arg-type]
    client.expire(keys.job_key(record.task_id), 600)
    client.close()
    return record.task_id


def post_event(stack: Stack, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{stack.notifier}/internal/events",
        content=body,
        headers={"content-type": "application/json", **headers},
    )


def test_a_signed_event_is_applied_once(stack: Stack) -> None:
    task_id = queued_task(stack)
    body = f'{{"task_id":"{task_id}","event":"started"}}'.encode()
    first = post_event(stack, body, sign_internal(body, INTERNAL_SECRET))
    assert first.status_code == 200
    assert first.json()["applied"] is True and first.json()["task"]["status"] == "running"
    duplicate = post_event(stack, body, sign_internal(body, INTERNAL_SECRET))
    assert duplicate.json()["applied"] is False
    assert duplicate.json()["task"]["seq"] == first.json()["task"]["seq"] == 1


def test_a_bad_signature_is_401_and_changes_nothing(stack: Stack) -> None:
    task_id = queued_task(stack)
    body = f'{{"task_id":"{task_id}","event":"canceled"}}'.encode()
    forged = sign_internal(body, "not-the-shared-secret-at-all")
    for headers in (forged, {}):
        response = post_event(stack, body, headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
    assert stack.view(task_id)["status"] == "queued"
    assert stack.view(task_id)["seq"] == 0


def test_an_invalid_event_is_422_and_unknown_task_404(stack: Stack) -> None:
    body = b'{"task_id":"x","event":"exploded"}'
    response = post_event(stack, body, sign_internal(body, INTERNAL_SECRET))
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "event"
    body = b'{"task_id":"no-such-task","event":"started"}'
    assert post_event(stack, body, sign_internal(body, INTERNAL_SECRET)).status_code == 404


def waiters(stack: Stack) -> float:
    for line in httpx.get(f"{stack.notifier}/metrics/").text.splitlines():
        if line.startswith("fluxgate_notifier_waiters "):
            return float(line.split()[1])
    return 0.0


def test_wait_returns_when_the_task_ends(stack: Stack) -> None:
    task_id = queued_task(stack)
    answers: list[httpx.Response] = []
    waiter = threading.Thread(
        target=lambda: answers.append(
            httpx.get(
                f"{stack.notifier}/internal/wait/{task_id}",
                params={"timeout": 30},
                headers=READER,
                timeout=40,
            )
        )
    )
    started = time.monotonic()
    waiter.start()
    # End the task only once the request is really parked, so the wake-up itself is tested.
    poll_until(lambda: waiters(stack) >= 1, timeout=10, what="a parked wait")
    body = f'{{"task_id":"{task_id}","event":"canceled"}}'.encode()
    assert post_event(stack, body, sign_internal(body, INTERNAL_SECRET)).status_code == 200
    waiter.join(timeout=40)
    assert answers and answers[0].status_code == 200
    assert answers[0].json()["status"] == "canceled"
    assert time.monotonic() - started < 25


def test_wait_times_out_with_202_and_the_current_view(stack: Stack) -> None:
    task_id = queued_task(stack)
    url = f"{stack.notifier}/internal/wait/{task_id}"
    response = httpx.get(url, params={"timeout": 0.3}, headers=READER)
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    missing = httpx.get(
        f"{stack.notifier}/internal/wait/nope", params={"timeout": 0.1}, headers=READER
    )
    assert missing.status_code == 404


def test_internal_reads_need_the_internal_token(stack: Stack) -> None:
    """Any task's view is there for peers only: without the token, 401 and no view."""
    task_id = queued_task(stack)
    for path in (f"/internal/wait/{task_id}?timeout=0.1", f"/internal/stream/{task_id}"):
        for headers in ({}, {INTERNAL_READ_HEADER: "forged"}):
            answer = httpx.get(f"{stack.notifier}{path}", headers=headers, timeout=10)
            assert answer.status_code == 401, (path, headers)
            assert task_id not in answer.text
