"""Live previews on real processes: a job that asks for them (`"preview": true`) gets `progress`
views carrying the URL of a small image of its latents, over WebSocket, SSE and the progress
webhook, made by the real model server; a job that does not ask gets none, nor do webhook
subscribers of `completed` only."""

from __future__ import annotations

import io
import threading
from typing import Any

import httpx
import redis
from PIL import Image

from apps.common.redis import keys
from devtools.procs import poll_until
from tests.conftest import Stack
from tests.e2e.test_event_stream import read_events
from tests.e2e.wsclient import watch
from tests.webhook_receiver import Delivery, WebhookReceiver

# 12 steps of 100 ms: long enough for several previews at their interval (250 ms).
STEPS = 12


def fetched(preview: dict[str, Any]) -> Image.Image:
    """The preview behind its URL, checked against what the view says of it."""
    response = httpx.get(preview["url"], timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == preview["content_type"] == "image/webp"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "WEBP"
    assert image.size == (preview["width"], preview["height"])
    return image


def previews_in(views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each preview the views carry, the first time it appears."""
    seen: list[dict[str, Any]] = []
    for view in views:
        if view.get("preview") and view["preview"] not in seen:
            seen.append(view["preview"])
    return seen


def test_a_job_with_previews_streams_them_over_websocket_and_sse(stack: Stack) -> None:
    job = stack.submit(preview=True, num_inference_steps=STEPS, width=128, height=128)
    task_id, urls = str(job["task_id"]), job["urls"]
    assert isinstance(urls, dict)
    frames: list[dict[str, Any]] = []
    # Both transports follow the one job at once.
    sse = threading.Thread(target=lambda: frames.extend(read_events(urls["events"])[1]))
    sse.start()
    transcript = watch(urls["ws"])
    sse.join(timeout=60)
    assert not sse.is_alive()

    last: dict[str, dict[str, Any]] = {}
    for name, views in (("ws", transcript.messages), ("sse", [f["data"] for f in frames])):
        assert views[-1]["status"] == "succeeded", name
        carrying = [v for v in views if v["preview"]]
        assert carrying, f"{name}: no view carried a preview: {[v['event'] for v in views]}"
        # Only running views carry one; the final view has the result instead.
        assert {v["status"] for v in carrying} == {"running"}, name
        assert views[-1]["preview"] is None, name
        previews = previews_in(views)
        steps = [p["step"] for p in previews]
        assert steps == sorted(set(steps)), f"{name}: previews go forward: {steps}"
        assert all(0 < p["step"] <= p["total"] == STEPS for p in previews), previews
        for preview in previews:
            fetched(preview)
        last[name] = previews[-1]
    # Each transport has every view after its snapshot: the last preview is the same on both.
    assert last["ws"] == last["sse"]
    # Stored like outputs, in the task's folder (which the output sweep clears by age), and
    # never as bytes in Redis: the record holds the URL.
    folder = stack.tmp / "outputs" / task_id
    stored = {path.name for path in folder.iterdir()}
    seen = {p["url"].rsplit("/", 1)[1] for p in previews_in(transcript.messages)}
    assert seen <= stored
    assert {name.rsplit(".", 1)[1] for name in stored - seen} <= {"webp", "png"}
    client = redis.Redis.from_url(stack.redis_url)
    try:
        raw = client.hget(keys.job_key(task_id), "preview")
    finally:
        client.close()
    assert raw is not None and len(raw) < 400 and b"/files/" in raw


def test_a_job_without_previews_gets_none(stack: Stack) -> None:
    job = stack.submit(num_inference_steps=STEPS, width=128, height=128)
    transcript = watch(str(job["urls"]["ws"]))  # type: ignore[index]
    assert "progress" in transcript.events
    assert all(m["preview"] is None for m in transcript.messages)
    # Nothing but the result was stored for it.
    stored = list((stack.tmp / "outputs" / str(job["task_id"])).iterdir())
    assert len(stored) == 1 and stored[0].suffix == ".png", stored


def final_webhooks(receiver: WebhookReceiver, path: str) -> list[Delivery]:
    """Every delivery at `path` once the final one has come."""
    return poll_until(
        lambda: (got := receiver.at(path)) and got[-1].body["type"] == "task.succeeded" and got,
        timeout=15,
        what=f"the final webhook at /{path}",
    )


def test_the_progress_webhook_carries_the_preview_and_completed_only_gets_no_more(
    stack: Stack, receiver: WebhookReceiver
) -> None:
    small = {"preview": True, "num_inference_steps": 20, "width": 64, "height": 64}
    completed_only = stack.submit(**small, webhook_url=receiver.url("previews-completed"))
    # 20 steps of 100 ms: progress webhooks go out at most once a second, so at least one.
    progress_too = stack.submit(
        **small,
        webhook_url=receiver.url("previews-progress"),
        webhook_events=["progress", "completed"],
    )
    for job in (completed_only, progress_too):
        stack.wait_status(str(job["task_id"]), "succeeded")

    hooks = final_webhooks(receiver, "previews-progress")
    assert all(h.verified for h in hooks)
    progress = [h.body["data"] for h in hooks if h.body["type"] == "task.progress"]
    with_preview = [p["preview"] for p in progress if p["preview"]]
    assert with_preview, f"no progress webhook carried a preview: {progress}"
    for preview in with_preview:
        assert f"/files/{progress_too['task_id']}/" in preview["url"]
        fetched(preview)
    assert hooks[-1].body["data"]["preview"] is None

    # A message for the completed-only job's progress would have been queued before its final
    # one (its events are applied in order): there is none, only the final message.
    only = final_webhooks(receiver, "previews-completed")
    assert [h.body["type"] for h in only] == ["task.succeeded"]
    assert only[0].body["data"]["preview"] is None
