"""One FLUX job end to end, through real gateway, worker, balancer, inference and notifier."""

from __future__ import annotations

import io
import threading
import uuid

import httpx
from PIL import Image
from websockets.sync.client import connect

from devtools.procs import NotYet, poll_until
from tests.conftest import Stack
from tests.e2e.wsclient import Transcript, read_all, watch


def test_submit_answers_202_with_urls_and_location(stack: Stack) -> None:
    response = httpx.post(
        f"{stack.gateway}/flux",
        json={
            "prompt": "a red fox",
            "width": 256,
            "height": 256,
            "num_inference_steps": 4,
            "seed": 7,
        },
    )
    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"task_id", "status", "urls"}
    assert body["status"] == "queued"
    task_id = body["task_id"]
    assert uuid.UUID(task_id).version == 4
    assert body["urls"] == {
        "status": f"{stack.gateway}/tasks/{task_id}",
        "cancel": f"{stack.gateway}/tasks/{task_id}/cancel",
        "ws": f"{stack.notifier_ws}/ws/tasks/{task_id}",
        "events": f"{stack.gateway}/tasks/{task_id}/events",
    }
    assert response.headers["location"] == body["urls"]["status"]


def test_websocket_streams_snapshot_progress_and_result(stack: Stack) -> None:
    # Not the seed of the job above, which may still run: it would answer this one.
    submitted = stack.submit(seed=70)
    transcript = watch(str(submitted["urls"]["ws"]))  # type: ignore[index]

    assert transcript.events[0] == "snapshot"
    assert transcript.events[-1] == "succeeded"
    assert transcript.close_code == 1000
    seqs = [m["seq"] for m in transcript.messages]
    assert seqs == sorted(set(seqs)), "no duplicate or out-of-order view"
    progress = [m["progress"] for m in transcript.messages]
    assert progress == sorted(progress), "progress never goes back"
    if transcript.messages[0]["status"] == "queued":
        assert "started" in transcript.events
    # 4 steps of 100 ms each: several coalesced progress events reach the client.
    assert transcript.events.count("progress") >= 2, transcript.events

    final = transcript.messages[-1]
    assert final["progress"] == 100 and final["error"] is None
    assert final["started_at"] and final["finished_at"]
    image = final["result"]["images"][0]
    assert (image["width"], image["height"], image["seed"]) == (256, 256, 70)
    png = httpx.get(image["url"])
    assert png.status_code == 200
    assert png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (256, 256)


def test_late_subscriber_gets_the_final_state_first(stack: Stack) -> None:
    task_id = str(stack.submit()["task_id"])
    done = stack.wait_status(task_id, "succeeded")
    transcript = watch(f"{stack.notifier_ws}/ws/tasks/{task_id}")
    assert transcript.events == ["snapshot"]
    assert transcript.messages[0]["status"] == "succeeded"
    assert transcript.messages[0]["result"] == done["result"]
    assert transcript.close_code == 1000


def test_status_route_shows_the_same_view(stack: Stack) -> None:
    submitted = stack.submit(seed=3, num_images=2)
    task_id = str(submitted["task_id"])
    view = stack.wait_status(task_id, "succeeded")
    assert view["task_id"] == task_id and view["type"] == "flux"
    assert view["urls"] == submitted["urls"]
    assert [i["seed"] for i in view["result"]["images"]] == [3, 4]  # type: ignore[index]
    assert view["result"]["timings"]["compute_ms"] > 0  # type: ignore[index]
    assert view["timings"]["queued_ms"] is not None  # type: ignore[index]
    assert "event" not in view


def test_unknown_task_is_404_everywhere(stack: Stack) -> None:
    missing = str(uuid.uuid4())
    status = httpx.get(f"{stack.gateway}/tasks/{missing}")
    assert status.status_code == 404
    assert status.json()["error"]["code"] == "not_found"
    assert httpx.post(f"{stack.gateway}/tasks/{missing}/cancel").status_code == 404
    transcript = watch(f"{stack.notifier_ws}/ws/tasks/{missing}")
    assert transcript.messages == [] and transcript.close_code == 4404


def test_bad_input_is_422_naming_the_field(stack: Stack) -> None:
    cases = [
        ({"prompt": "a fox", "width": 250}, "width"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "a fox", "sampler": "euler"}, "sampler"),
        ({"width": 256}, "prompt"),
    ]
    for body, field in cases:
        response = httpx.post(f"{stack.gateway}/flux", json=body)
        assert response.status_code == 422, body
        error = response.json()["error"]
        assert error["code"] == "invalid_input" and error["field"] == field, error
        assert field in error["message"]
    broken = httpx.post(
        f"{stack.gateway}/flux", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422
    assert broken.json()["error"]["code"] == "invalid_input"


def test_oversized_body_is_413(stack: Stack) -> None:
    huge = b'{"prompt": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = httpx.post(
        f"{stack.gateway}/flux", content=huge, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


def test_cancel_a_queued_job_and_the_worker_skips_it(stack: Stack) -> None:
    blockers = stack.fill_worker()
    queued = str(stack.submit()["task_id"])
    assert stack.view(queued)["status"] == "queued"

    canceled = httpx.post(f"{stack.gateway}/tasks/{queued}/cancel")
    assert canceled.status_code == 202
    assert canceled.json()["status"] == "canceled"
    again = httpx.post(f"{stack.gateway}/tasks/{queued}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "canceled"

    stack.release(blockers)
    # Once the slots are free the worker takes the queued message and must skip it. The view
    # cannot tell (the store ignores every event after a final state): what only a skip explains
    # is the worker saying so and the job reaching no model server and storing no output.
    later = str(stack.submit()["task_id"])
    worker_log = stack.procs["worker"].log_path

    def skipped() -> bool:
        mine = [line for line in worker_log.read_text().splitlines() if queued in line]
        if not any("job already finished; skipping" in line for line in mine):
            raise NotYet("; ".join(mine) or "not picked up")
        return True

    poll_until(skipped, timeout=30, what=f"the worker to skip {queued}")
    for name in ("balancer", "inference"):
        called = [
            line for line in stack.procs[name].log_path.read_text().splitlines() if queued in line
        ]
        assert not called, f"the canceled job reached the {name}: {called}"
    assert not (stack.tmp / "outputs" / queued).exists(), "the canceled job stored outputs"
    stack.wait_status(later, "succeeded", timeout=60)
    view = stack.view(queued)
    assert view["status"] == "canceled" and view["result"] is None and view["started_at"] is None


def test_cancel_a_running_job_over_the_websocket(stack: Stack) -> None:
    task_id = stack.slow_job()
    url = f"{stack.notifier_ws}/ws/tasks/{task_id}"
    seen: list[Transcript] = []
    with connect(url, open_timeout=10, compression=None) as ws:
        reader = threading.Thread(target=lambda: seen.append(read_all(ws, timeout=60)))
        reader.start()
        poll_until(lambda: stack.view(task_id)["progress"] > 0, timeout=30, what="progress")
        response = httpx.post(f"{stack.gateway}/tasks/{task_id}/cancel")
        assert response.status_code == 202
        reader.join(timeout=60)
    transcript = seen[0]
    assert transcript.events[-1] == "canceled"
    assert transcript.close_code == 1000
    final = stack.view(task_id)
    assert final["status"] == "canceled" and final["result"] is None
    # Stopped well before its 60 steps were done.
    assert int(final["progress"]) < 90  # type: ignore[call-overload]


def test_cancel_a_finished_job_is_409(stack: Stack) -> None:
    task_id = str(stack.submit()["task_id"])
    stack.wait_status(task_id, "succeeded")
    response = httpx.post(f"{stack.gateway}/tasks/{task_id}/cancel")
    assert response.status_code == 409
    body = response.json()
    assert body["error"]["code"] == "conflict"
    assert body["task"]["status"] == "succeeded"
