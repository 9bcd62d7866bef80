"""Each seed system's documented requests against the real stack, through the compat routes."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import httpx
from PIL import Image

from devtools.procs import poll_until
from tests.conftest import Stack
from tests.tasktypes.conftest import astronaut, gradient, noise_png, png

SMALL = {"width": 64, "height": 64, "num_inference_steps": 2}


def _poll(url: str, done: Any, *, timeout: float = 60) -> dict[str, Any]:
    return poll_until(
        lambda: done(body := httpx.get(url, timeout=10).json()) and body,
        timeout=timeout,
        what=url,
    )


# --- Back.Serv --------------------------------------------------------------------------------


def test_backserv_submit_query_and_result(compat: str) -> None:
    response = httpx.post(
        f"{compat}/submit_task",
        json={
            "task_type": "Image Creation",
            "task_params": {"prompt": "a fox", **SMALL},
            "user_id": "user123",
        },
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "Queueing" and body["serv_name"] == "fluxgate-gpu"
    ticket = body["ticket_id"]
    final = _poll(f"{compat}/query_task/{ticket}", lambda b: b["status"] == "Completed")
    assert final["task_type"] == "Image Creation" and final["progress"] == 100
    assert final["result"]["images"][0]["width"] == 64


def test_backserv_snake_case_names_and_unknown_tasks(compat: str) -> None:
    image = base64.b64encode(png(gradient(20, 10))).decode()
    response = httpx.post(
        f"{compat}/submit_task",
        json={"task_type": "image_upscaling", "task_params": {"image": image, "scale": 2}},
    )
    assert response.status_code == 202, response.text
    final = _poll(
        f"{compat}/query_task/{response.json()['ticket_id']}",
        lambda b: b["status"] in ("Completed", "Failed"),
    )
    assert final["status"] == "Completed"
    assert final["result"]["images"][0]["width"] == 40
    video = httpx.post(f"{compat}/submit_task", json={"task_type": "Video Creation"})
    assert video.status_code == 422
    assert video.json()["error"]["field"] == "task_type"
    missing = httpx.get(f"{compat}/query_task/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404


def test_backserv_queue_position_is_per_queue_and_cancel_works(compat: str, stack: Stack) -> None:
    blockers = stack.fill_worker()
    tickets: list[str] = []
    try:
        for _ in range(2):
            tickets.append(
                httpx.post(
                    f"{compat}/submit_task",
                    json={"task_type": "Image Creation", "task_params": {"prompt": "x", **SMALL}},
                ).json()["ticket_id"]
            )
        refine = httpx.post(
            f"{compat}/submit_task",
            json={"task_type": "Prompt Services", "task_params": {"prompt": "a fox"}},
        ).json()["ticket_id"]
        tickets.append(refine)
        gpu = [httpx.get(f"{compat}/query_task/{t}").json() for t in tickets[:2]]
        assert [g["status"] for g in gpu] == ["Queueing", "Queueing"]
        assert gpu[1]["queue_position"] == gpu[0]["queue_position"] + 1
        # The cpu queue is its own line: the gpu backlog is not ahead of it.
        assert httpx.get(f"{compat}/query_task/{refine}").json()["queue_position"] == 0
        canceled = httpx.post(f"{compat}/cancel_task/{tickets[1]}")
        assert canceled.status_code == 200 and canceled.json()["status"] == "Cancelled"
    finally:
        stack.release(blockers)
    again = httpx.post(f"{compat}/cancel_task/{tickets[1]}")
    assert again.status_code == 200
    done = _poll(f"{compat}/query_task/{tickets[0]}", lambda b: b["status"] == "Completed")
    assert done["queue_position"] is None
    finished = httpx.post(f"{compat}/cancel_task/{tickets[0]}")
    assert finished.status_code == 409


# --- Backend AI -------------------------------------------------------------------------------


def test_backendai_frontend_loop_runs_unchanged(compat: str) -> None:
    """The README's JavaScript: FormData create, poll status, fetch result, read image_url."""
    created = httpx.post(
        f"{compat}/api/v1/tasks/create/",
        data={
            "prompt": "beautiful sunset over mountains",
            "task_type": "image_generation",
            "parameters": json.dumps({**SMALL, "steps": 2, "blend_ratio": 0.8}),
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "PENDING" and body["message"] == "Task queued successfully"
    assert body["created_at"]
    task_id = body["task_id"]
    statuses: list[dict[str, Any]] = []

    def finished(status: dict[str, Any]) -> bool:
        statuses.append(status)  # checked once it ends: an assert here would fail the poll
        return status["status"] in ("SUCCESS", "FAILURE")

    status = _poll(f"{compat}/api/v1/tasks/{task_id}/status/", finished)
    seen = [s["status"] for s in statuses]
    assert all(0 <= s["progress"] <= 100 for s in statuses), statuses
    assert status["status"] == "SUCCESS" and status["progress"] == 100
    assert status["result_url"] == f"/api/v1/tasks/{task_id}/result/"
    assert set(seen) <= {"PENDING", "PROCESSING", "SUCCESS"}
    result = httpx.get(f"{compat}/api/v1/tasks/{task_id}/result/").json()
    assert result["status"] == "SUCCESS"
    image = httpx.get(result["result"]["image_url"])
    assert Image.open(io.BytesIO(image.content)).size == (64, 64)
    assert result["result"]["prompt_used"] == "beautiful sunset over mountains"
    assert "image_data" not in result["result"]
    with_data = httpx.get(f"{compat}/api/v1/tasks/{task_id}/result/?image_data=true").json()
    decoded = base64.b64decode(with_data["result"]["image_data"])
    assert decoded == image.content
    late_cancel = httpx.post(f"{compat}/api/v1/tasks/{task_id}/cancel/")
    assert late_cancel.status_code == 400


def test_backendai_submit_with_base64_and_cancel(compat: str, stack: Stack) -> None:
    face = base64.b64encode(png(astronaut(128))).decode()
    submitted = httpx.post(
        f"{compat}/api/v1/tasks/submit/",
        json={
            "task_type": "background_removal",
            "image": face,
            "parameters": {"iterations": 2, "return_mask": True},
        },
    )
    assert submitted.status_code == 201, submitted.text
    assert submitted.json()["message"] == "background_removal task submitted successfully"
    task_id = submitted.json()["task_id"]
    status = _poll(
        f"{compat}/api/v1/tasks/{task_id}/status/", lambda s: s["status"] in ("SUCCESS", "FAILURE")
    )
    assert status["status"] == "SUCCESS"
    result = httpx.get(f"{compat}/api/v1/tasks/{task_id}/result/").json()["result"]
    assert Image.open(io.BytesIO(httpx.get(result["image_url"]).content)).mode == "RGBA"
    assert result["mask"]["url"]

    bad = httpx.post(
        f"{compat}/api/v1/tasks/submit/", json={"task_type": "object_removal", "image": face}
    )
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "task_type"

    blockers = stack.fill_worker()
    try:
        queued = httpx.post(
            f"{compat}/api/v1/tasks/submit/",
            json={"task_type": "image_generation", "prompt": "a fox", "parameters": SMALL},
        ).json()["task_id"]
        # Not done yet is 400, never 200 with no image (the worker is full: it cannot be done).
        pending = httpx.get(f"{compat}/api/v1/tasks/{queued}/result/")
        assert pending.status_code == 400, pending.text
        assert "PENDING" in pending.json()["error"]["message"]
        canceled = httpx.post(f"{compat}/api/v1/tasks/{queued}/cancel/")
        assert canceled.status_code == 200 and canceled.json()["message"] == "Task cancelled"
        revoked = httpx.get(f"{compat}/api/v1/tasks/{queued}/status/").json()
        assert revoked["status"] == "REVOKED"
        not_ready = httpx.get(f"{compat}/api/v1/tasks/{queued}/result/")
        assert not_ready.status_code == 400
        assert "REVOKED" in not_ready.json()["error"]["message"]
    finally:
        stack.release(blockers)


# --- image and text service -------------------------------------------------------------------


def test_imagetext_process_and_status(compat: str) -> None:
    response = httpx.post(
        f"{compat}/api/process",
        data={"text": "as a watercolor"},
        files={"image": ("photo.png", png(gradient(100, 60)), "image/png")},
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "processing"
    job_id = response.json()["job_id"]
    status = _poll(
        f"{compat}/api/status/{job_id}",
        lambda s: s["status"] in ("completed", "failed"),
        timeout=90,
    )
    assert status["status"] == "completed", status
    assert status["message"] and status["result"]["images"]
    missing_text = httpx.post(
        f"{compat}/api/process", files={"image": ("p.png", png(gradient(8, 8)), "image/png")}
    )
    assert missing_text.status_code == 422
    assert missing_text.json()["error"]["field"] == "text"


# --- WaveSpeed workshop -----------------------------------------------------------------------


def test_wavespeed_body_shape_and_base64_output(compat: str, stack: Stack) -> None:
    assert httpx.get(f"{compat}/health").json() == {"status": "ok"}
    response = httpx.post(
        f"{compat}/flux",
        json={
            "input": {
                "prompt": "a fox",
                "seed": 42,
                "size": "64*64",
                "enable_base64_output": True,
                "num_inference_steps": 2,
            }
        },
    )
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    view = stack.wait_status(task_id, "succeeded", timeout=60)
    [image] = view["result"]["images"]  # type: ignore[index]
    assert (image["width"], image["height"], image["seed"]) == (64, 64, 42)
    data = base64.b64decode(image["base64"])
    assert data == httpx.get(image["url"]).content
    # The native flat body still works on the same route.
    flat = httpx.post(f"{compat}/flux", json={"prompt": "a fox", **SMALL})
    assert flat.status_code == 202
    bad = httpx.post(f"{compat}/flux", json={"input": {"prompt": "a fox", "size": "huge"}})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "input.size"
    odd = httpx.post(f"{compat}/flux", json={"input": {"prompt": "a fox", "size": "100*64"}})
    assert odd.status_code == 422 and odd.json()["error"]["field"] == "width"


def test_compat_routes_are_off_unless_enabled(stack: Stack) -> None:
    assert httpx.post(f"{stack.gateway}/submit_task", json={}).status_code == 404
    assert httpx.get(f"{stack.gateway}/health").status_code == 404
    wavespeed = httpx.post(f"{stack.gateway}/flux", json={"input": {"prompt": "a fox"}})
    assert wavespeed.status_code == 422


def test_compat_uploads_get_the_upload_body_limit(compat: str) -> None:
    # Noise does not compress: a ~2 MB photo-sized PNG, over the 1 MiB limit of other routes.
    noise = noise_png(820, seed=1)
    assert len(noise) > 1024 * 1024
    created = httpx.post(
        f"{compat}/api/v1/tasks/create/",
        data={"task_type": "background_removal", "parameters": '{"iterations": 1}'},
        files={"image": ("big.png", noise, "image/png")},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    processed = httpx.post(
        f"{compat}/api/process",
        data={"text": "ink"},
        files={"image": ("big.png", noise, "image/png")},
        timeout=30,
    )
    assert processed.status_code == 202, processed.text
    # Only the limit was under test: free the shared worker.
    httpx.post(f"{compat}/api/v1/tasks/{created.json()['task_id']}/cancel/", timeout=10)
    httpx.post(f"{compat}/cancel_task/{processed.json()['job_id']}", timeout=10)
