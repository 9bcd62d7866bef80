"""The nginx + Lua front door (real nginx with Debian's Lua module) in front of the real stack."""

from __future__ import annotations

import asyncio
import io
import re
import socket
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image

from devtools.procs import poll_until
from nginx.render import TEMPLATE
from tests.conftest import INTERNAL_SECRET, Stack
from tests.e2e.wsclient import watch
from tests.nginx.front import start_front_door
from tests.observability.scrape import scrape, value
from tests.tasktypes.conftest import noise_png

FLUX = {"prompt": "a red fox", "width": 64, "height": 64, "num_inference_steps": 2, "seed": 3}


@pytest.fixture(scope="session")
def front(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_front_door(
        tmp_path_factory.mktemp("nginx"),
        gateway=stack.gateway,
        notifier=stack.notifier,
        internal_secret=INTERNAL_SECRET,
    )
    try:
        yield url
    finally:
        proc.stop()


def sync(front: str, body: dict[str, object] | None = None, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{front}/sync/flux", json={**FLUX, **(body or {})}, headers=headers, timeout=120
    )


def test_sync_answers_the_finished_job(front: str) -> None:
    response = sync(front)
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["status"] == "succeeded" and view["progress"] == 100
    assert view["result"]["images"][0]["seed"] == 3
    assert response.headers["x-request-id"]


def test_sync_with_accept_image_answers_the_png(front: str) -> None:
    response = sync(front, {"width": 128, "height": 64}, Accept="image/png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == (128, 64)
    assert uuid.UUID(response.headers["x-fluxgate-task-id"])


def test_a_large_answer_comes_through_whole(front: str) -> None:
    """An answer bigger than nginx's memory buffers is spooled to its prefix, which lies in a
    private (0700) temp folder here as in a clone under /root: it must arrive whole."""
    response = sync(front, {"width": 256, "height": 256}, Accept="image/png")
    assert response.status_code == 200
    # The tiny model's noise does not compress: well past the buffers (8 x 4 KiB).
    assert len(response.content) > 100_000
    assert Image.open(io.BytesIO(response.content)).size == (256, 256)


def test_refused_submits_pass_through_unchanged(front: str) -> None:
    response = sync(front, {"width": 250})
    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "invalid_input",
        "field": "width",
        "message": "width: must be a multiple of 16",
    }
    assert sync(front, {"sampler": "x"}).json()["error"]["field"] == "sampler"
    other = httpx.post(f"{front}/sync/nonsense", json=FLUX)
    assert other.status_code == 404
    assert httpx.get(f"{front}/sync/flux").status_code == 405


def test_timeout_answers_202_with_location(front: str, stack: Stack) -> None:
    response = sync(front, {"num_inference_steps": 60}, Prefer="wait=1")
    assert response.status_code == 202
    view = response.json()
    assert view["status"] in ("queued", "running")
    assert response.headers["location"] == f"{stack.gateway}/tasks/{view['task_id']}"
    httpx.post(f"{stack.gateway}/tasks/{view['task_id']}/cancel")


def test_a_canceled_job_is_409_for_images_and_a_view_for_json(front: str) -> None:
    slow = {"num_inference_steps": 60}
    as_image = sync(front, slow, Accept="image/*", **{"Cancel-After": "1"})
    assert as_image.status_code == 409
    body = as_image.json()
    assert body["error"]["code"] == "task_canceled"
    assert body["task"]["status"] == "canceled"
    assert body["task"]["error"]["code"] == "deadline_exceeded"
    as_json = sync(front, slow, **{"Cancel-After": "1"})
    assert as_json.status_code == 200 and as_json.json()["status"] == "canceled"


def _parked_waits(stack: Stack) -> float:
    return value(scrape(f"{stack.notifier}/metrics/"), "fluxgate_notifier_waiters")


def test_a_failed_job_is_500_for_images(front: str, stack: Stack) -> None:
    key = f"fail-{uuid.uuid4()}"
    slow = {**FLUX, "num_inference_steps": 20}
    first = httpx.post(f"{stack.gateway}/flux", json=slow, headers={"Idempotency-Key": key})
    task_id = first.json()["task_id"]
    # The worker fails this job for real: a file stands where the job's output folder goes, so
    # storing its image raises and the worker ends the job `failed` (internal_error).
    outputs = stack.tmp / "outputs"
    outputs.mkdir(exist_ok=True)
    (outputs / task_id).write_bytes(b"")
    parked = _parked_waits(stack)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The same key makes the facade wait on the task we already hold the id of.
        answer = pool.submit(
            httpx.post,
            f"{front}/sync/flux",
            json=slow,
            headers={"Idempotency-Key": key, "Accept": "image/png"},
            timeout=60,
        )
        poll_until(
            lambda: _parked_waits(stack) > parked, timeout=20, what="the facade to park its wait"
        )
        assert stack.view(task_id)["status"] in ("queued", "running"), "ended before the wait"
        response = answer.result(timeout=60)
    assert response.status_code == 500, response.text
    error = response.json()["error"]
    assert error["code"] == "task_failed" and "FileExistsError" in error["message"], error
    assert str(stack.tmp) not in response.text  # no server path reaches the client
    task = response.json()["task"]
    assert task["status"] == "failed" and task["error"]["code"] == "internal_error", task


def test_websocket_through_the_front_door(front: str) -> None:
    answer = httpx.post(f"{front}/flux", json=FLUX)
    assert answer.status_code == 202
    task_id = answer.json()["task_id"]
    transcript = watch(f"{front.replace('http', 'ws')}/ws/tasks/{task_id}")
    assert transcript.events[0] == "snapshot" and transcript.events[-1] == "succeeded"
    assert transcript.close_code == 1000


def test_internal_routes_are_not_reachable(front: str) -> None:
    for path in (
        "/internal/events",
        "/internal/wait/x",
        "/_fluxgate/wait/x",
        "/_fluxgate/gateway/healthz",
    ):
        assert httpx.post(f"{front}{path}", content=b"{}").status_code == 404, path
        assert httpx.get(f"{front}{path}").status_code == 404, path


def test_metrics_are_not_reachable_through_the_front_door(front: str) -> None:
    for path in ("/metrics", "/metrics/", "/metrics/x"):
        answer = httpx.get(f"{front}{path}")
        assert answer.status_code == 404, path
        assert answer.json()["error"]["code"] == "not_found"
        assert "fluxgate_" not in answer.text


def test_what_nginx_answers_itself_is_json(front: str) -> None:
    huge = b'{"prompt": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    too_large = httpx.post(
        f"{front}/flux", content=huge, headers={"content-type": "application/json"}
    )
    assert too_large.status_code == 413
    assert too_large.json()["error"]["code"] == "body_too_large"
    trace = httpx.request("TRACE", f"{front}/flux")
    assert trace.status_code == 405
    assert trace.json()["error"]["code"] == "method_not_allowed"
    assert "POST" in trace.headers["allow"]
    host, port = front.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(b"GET /tasks HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        reply = raw.recv(65536).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 400"), reply[:200]
    assert '"code":"invalid_input"' in reply


def test_redirects_keep_the_front_doors_port(front: str) -> None:
    answer = httpx.get(f"{front}/tasks/", follow_redirects=False)
    assert answer.status_code in (301, 307, 308), answer.status_code
    assert answer.headers["location"].startswith(front), answer.headers["location"]


def test_urls_name_the_scheme_the_ingress_saw(front: str) -> None:
    """Behind a TLS-terminating ingress (X-Forwarded-Proto: https), the task's URLs are https."""
    answer = httpx.post(
        f"{front}/flux",
        json={"prompt": "a fox", "width": 64, "height": 64, "num_inference_steps": 1},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert answer.status_code == 202
    redirect = httpx.get(
        f"{front}/tasks/", headers={"X-Forwarded-Proto": "https"}, follow_redirects=False
    )
    assert redirect.headers["location"].startswith("https://"), redirect.headers["location"]


def test_no_proxy_timeout_is_shorter_than_the_longest_wait() -> None:
    """`Prefer: wait=300` through the front door must end in the API's answer, not nginx's 504."""
    template = TEMPLATE.read_text()
    timeouts = [int(t) for t in re.findall(r"proxy_read_timeout (\d+)s;", template)]
    assert timeouts and min(timeouts) > 300, timeouts


def test_request_ids_are_kept_or_made(front: str) -> None:
    mine = httpx.get(f"{front}/tasks/{uuid.uuid4()}", headers={"X-Request-Id": "req-123"})
    assert mine.status_code == 404 and mine.headers["x-request-id"] == "req-123"
    made = httpx.get(f"{front}/healthz")
    assert len(made.headers["x-request-id"]) == 32


def test_body_limit_is_enforced_at_the_door(front: str) -> None:
    huge = b'{"prompt": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = httpx.post(
        f"{front}/sync/flux", content=huge, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


def test_a_hundred_concurrent_sync_requests(front: str) -> None:
    async def main() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(timeout=180, limits=limits) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        f"{front}/sync/flux",
                        json={**FLUX, "seed": i, "num_inference_steps": 1},
                        headers={"Prefer": "wait=170"},
                    )
                    for i in range(100)
                )
            )

    responses = asyncio.run(main())
    assert [r.status_code for r in responses] == [200] * 100
    views = [r.json() for r in responses]
    assert all(v["status"] == "succeeded" for v in views)
    assert sorted(v["result"]["images"][0]["seed"] for v in views) == list(range(100))
    assert len({v["task_id"] for v in views}) == 100


def test_gateway_honours_prefer_wait(stack: Stack) -> None:
    finished = httpx.post(
        f"{stack.gateway}/flux", json=FLUX, headers={"Prefer": "wait=30"}, timeout=40
    )
    assert finished.status_code == 200
    assert finished.json()["status"] == "succeeded"
    assert finished.headers["preference-applied"] == "wait=30"
    slow = httpx.post(
        f"{stack.gateway}/flux",
        json={**FLUX, "num_inference_steps": 60},
        headers={"Prefer": "wait=1"},
        timeout=10,
    )
    assert slow.status_code == 202 and slow.json()["status"] in ("queued", "running")
    httpx.post(f"{stack.gateway}/tasks/{slow.json()['task_id']}/cancel")


def test_task_uploads_get_their_own_larger_limit(front: str) -> None:
    # Noise does not compress: a ~1.5 MB PNG, over the 1 MiB limit of every other route.
    noise = noise_png(720)
    assert len(noise) > 1024 * 1024
    response = httpx.post(
        f"{front}/tasks",
        data={"type": "stylize", "input": '{"preset": "detail_enhance"}'},
        files={"image": ("noise.png", noise, "image/png")},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    too_big = httpx.post(f"{front}/flux", content=b"x" * (1024 * 1024 + 10), timeout=30)
    assert too_big.status_code == 413
