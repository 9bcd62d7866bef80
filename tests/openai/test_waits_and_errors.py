"""What the OpenAI routes add to a submit, seen on the wire through nginx: the wait for the
images (a client that leaves cancels its job; a wait that ends first names the job, which keeps
running) and errors in OpenAI's shape from every layer."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from devtools.procs import Proc, free_port, python_module, wait_http_ok
from tests.gateway.auth_stack import ADMIN_TOKEN, bearer
from tests.openai.conftest import OpenAIDoor

FOX = {"prompt": "a fox", "size": "64x64"}


def generate(door: OpenAIDoor, key: str, body: object, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{door.base_url}/images/generations",
        json=body,
        headers={**bearer(key), **headers},
        timeout=60,
    )


def assert_openai_error(answer: httpx.Response, status: int, kind: str) -> dict[str, object]:
    assert answer.status_code == status, answer.text
    error: dict[str, object] = answer.json()["error"]
    assert {"message", "type", "param", "code"} <= set(error), error
    assert error["type"] == kind, error
    return error


def test_a_client_that_leaves_before_its_images_cancels_the_job(door: OpenAIDoor, key: str) -> None:
    blockers = door.stack.fill_worker()  # the job stays queued while the client waits
    try:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                f"{door.base_url}/images/generations",
                json=FOX,
                headers=bearer(key),
                timeout=httpx.Timeout(10, read=1.5),
            )
        task = door.newest_task(key)
        canceled = door.wait_status(key, str(task["task_id"]), "canceled")
        assert canceled["error"] is None  # canceled by its caller, not by a deadline
    finally:
        door.stack.release(blockers)


def test_a_wait_that_ends_first_names_the_job_which_keeps_running(
    door: OpenAIDoor, key: str
) -> None:
    idempotency = {"Idempotency-Key": f"wait-{uuid.uuid4()}"}
    blockers = door.stack.fill_worker()
    try:
        late = generate(door, key, FOX, Prefer="wait=1")
        error = assert_openai_error(late, 504, "server_error")
        keyed = generate(door, key, FOX, Prefer="wait=1", **idempotency)
        assert_openai_error(keyed, 504, "server_error")
    finally:
        door.stack.release(blockers)
    task_id = str(error["task_id"])
    assert error["code"] == "wait_timeout" and task_id in str(error["message"])
    assert late.headers["x-fluxgate-task-id"] == task_id
    assert late.headers["location"].endswith(f"/tasks/{task_id}")
    # OpenAI's SDKs retry a 504: only with the Idempotency-Key is that the same job again.
    assert late.headers["x-should-retry"] == "false"
    assert keyed.headers["x-should-retry"] == "true"
    finished = door.wait_status(key, task_id, "succeeded")
    assert len(finished["result"]["images"]) == 1  # type: ignore[index]
    # The retry the SDK makes with the key is answered by the same job, now finished.
    again = generate(door, key, FOX, **idempotency)
    assert again.status_code == 200, again.text
    assert again.headers["x-fluxgate-task-id"] == keyed.headers["x-fluxgate-task-id"]


def test_errors_of_every_layer_are_openai_shaped(door: OpenAIDoor, key: str) -> None:
    # The auth dependency: no key at all.
    anonymous = httpx.post(f"{door.base_url}/images/generations", json=FOX, timeout=10)
    error = assert_openai_error(anonymous, 401, "invalid_request_error")
    assert error["code"] == "unauthorized"
    assert anonymous.headers["www-authenticate"] == "Bearer"
    # Request parsing: a body that is not JSON.
    broken = httpx.post(
        f"{door.base_url}/images/generations",
        content=b"{not json",
        headers={**bearer(key), "content-type": "application/json"},
        timeout=10,
    )
    assert_openai_error(broken, 400, "invalid_request_error")
    # Routing: a path and a method that are not served.
    unknown = httpx.get(f"{door.base_url}/chat/completions", headers=bearer(key), timeout=10)
    assert_openai_error(unknown, 404, "invalid_request_error")
    wrong = httpx.delete(f"{door.base_url}/models", headers=bearer(key), timeout=10)
    assert_openai_error(wrong, 405, "invalid_request_error")
    # The gateway's own body limit (1 MiB), straight to it, and nginx's at the door.
    big = {"prompt": "a fox", "user": "x" * (2 * 1024 * 1024)}
    for base in (f"{door.gateway}/v1", door.base_url):
        refused = httpx.post(
            f"{base}/images/generations", json=big, headers=bearer(key), timeout=10
        )
        assert_openai_error(refused, 413, "invalid_request_error")
    # The native API keeps its own shape.
    native = httpx.post(f"{door.url}/flux", json={"prompt": ""}, headers=bearer(key))
    assert native.status_code == 422 and "type" not in native.json()["error"]


def test_a_wait_the_notifier_refuses_is_a_503_naming_the_job_not_a_timeout(
    door: OpenAIDoor, key: str, tmp_path: Path
) -> None:
    """A gateway whose internal secret the notifier does not share gets 401 on its wait: that
    says nothing about the job, so the answer is 503 with the job's id, at once."""
    port = free_port()
    env = {
        **door.stack.env,
        "FLUXGATE_GATEWAY_PORT": str(port),
        "FLUXGATE_AUTH": "true",
        "FLUXGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "FLUXGATE_INTERNAL_SECRET": "not-the-notifier-secret-" + uuid.uuid4().hex,
    }
    gateway = Proc("gateway-other-secret", python_module("apps.gateway"), env, tmp_path / "g.log")
    gateway.start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{url}/readyz", timeout=30, proc=gateway)
        answer = httpx.post(
            f"{url}/v1/images/generations", json=FOX, headers=bearer(key), timeout=60
        )
        error = assert_openai_error(answer, 503, "server_error")
        assert error["task_id"], error
    finally:
        gateway.stop()
