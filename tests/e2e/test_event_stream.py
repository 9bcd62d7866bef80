"""`GET /tasks/{id}/events`: server-sent events with the WebSocket's guarantees."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import redis

from apps.common.jobs.record import new_job
from apps.common.redis import keys
from tests.conftest import Stack


def read_events(url: str, *, timeout: float = 60) -> tuple[httpx.Response, list[dict[str, Any]]]:
    """Every frame until the server ends the stream: [{"id", "event", "data"}]."""
    frames: list[dict[str, Any]] = []
    with httpx.stream("GET", url, timeout=timeout) as response:
        if response.status_code != 200:
            response.read()
            return response, frames
        frame: dict[str, Any] = {}
        for line in response.iter_lines():
            if not line:
                if frame:
                    frames.append(frame)
                frame = {}
            elif line.startswith(":"):
                continue  # keepalive comment
            else:
                name, _, value = line.partition(": ")
                frame[name] = json.loads(value) if name == "data" else value
    return response, frames


def test_events_stream_a_job_from_snapshot_to_result(stack: Stack) -> None:
    job = stack.submit(num_inference_steps=4, width=64, height=64)
    response, frames = read_events(str(job["urls"]["events"]))  # type: ignore[index]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    events = [f["event"] for f in frames]
    assert events[0] == "snapshot"
    assert events[-1] == "succeeded"
    seqs = [int(f["id"]) for f in frames]
    assert seqs == sorted(set(seqs)), "ids must rise with no repeat"
    assert [f["data"]["seq"] for f in frames] == seqs
    final = frames[-1]["data"]
    assert final["task_id"] == job["task_id"]
    assert final["result"]["images"][0]["width"] == 64


def test_a_late_subscriber_gets_the_final_state_and_the_stream_ends(stack: Stack) -> None:
    job = stack.submit(num_inference_steps=1, width=64, height=64)
    stack.wait_status(str(job["task_id"]), "succeeded")
    _, frames = read_events(str(job["urls"]["events"]))  # type: ignore[index]
    assert [(f["event"], f["data"]["status"]) for f in frames] == [("snapshot", "succeeded")]


def test_an_unknown_task_has_no_events(stack: Stack) -> None:
    response, frames = read_events(f"{stack.gateway}/tasks/{uuid.uuid4()}/events")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert frames == []


def test_a_quiet_stream_carries_keepalive_comments_until_the_job_ends(stack: Stack) -> None:
    """Proxies close a silent connection: a stream with nothing to say sends comment lines
    (every FLUXGATE_NOTIFIER_SSE_KEEPALIVE_S, 0.5 s in the test stack) until the job ends."""
    client = redis.Redis.from_url(stack.redis_url)
    record = new_job("flux", {"prompt": "never queued"})
    # A record with no queue message: nothing will move this job but the cancel below.
    client.hset(keys.job_key(record.task_id), mapping=record.to_hash())  # type: ignore[arg-type]
    client.expire(keys.job_key(record.task_id), 600)
    comments = 0
    with httpx.stream("GET", f"{stack.gateway}/tasks/{record.task_id}/events", timeout=30) as sse:
        assert sse.status_code == 200
        for line in sse.iter_lines():
            if line.startswith(":"):
                comments += 1
                if comments == 2:
                    cancel = httpx.post(f"{stack.gateway}/tasks/{record.task_id}/cancel")
                    assert cancel.status_code == 202, cancel.text
            elif line.startswith("event: ") and line != "event: snapshot":
                assert line == "event: canceled"
    assert comments >= 2
    client.close()
