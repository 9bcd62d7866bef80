"""Promises of the README's API and auth sections, on the auth-on stack (gateway and notifier, no
worker: jobs stay queued) and, where a job must really run, on the session stack."""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import redis
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from apps.common.redis import keys
from apps.common.storage.local import LocalOutputStore
from apps.common.storage.names import fixed_key
from devtools.procs import poll_until, python_module
from tests.big_bodies import (
    MIB,
    UPLOAD_LIMIT,
    assert_refused_for_its_size,
    post_oversized_image,
    zeros,
)
from tests.conftest import Stack
from tests.gateway.auth_stack import CORS_ORIGIN, AuthStack, admin, bearer
from tests.tasktypes.conftest import noise_png

PROGRESS_IMAGE_SIDE = 200
TINY = {"prompt": "a fox", "width": 64, "height": 64, "num_inference_steps": 1}


def record_field(stack: AuthStack, task_id: str, name: str) -> str | None:
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    try:
        return client.hget(keys.job_key(task_id), name)  # type: ignore[return-value]
    finally:
        client.close()


def view(stack: AuthStack, token: str, task_id: str) -> dict[str, object]:
    answer = httpx.get(f"{stack.gateway}/tasks/{task_id}", headers=bearer(token))
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


# --- headers of the submit ------------------------------------------------------------------------


def test_cancel_after_in_minutes_and_hours_sets_the_deadline_that_far_out(
    auth_stack: AuthStack,
) -> None:
    token = auth_stack.new_key("cancel-after-units")
    for header, seconds in (("5m", 300), ("1h", 3600), ("90s", 90)):
        before = time.time()
        answer = httpx.post(
            f"{auth_stack.gateway}/flux",
            json=TINY,
            headers={**bearer(token), "Cancel-After": header},
        )
        assert answer.status_code == 202, answer.text
        deadline = record_field(auth_stack, answer.json()["task_id"], "deadline_at")
        assert deadline is not None, f"Cancel-After: {header} set no deadline"
        ahead = float(deadline) - before
        assert seconds - 1 <= ahead <= seconds + 5, (
            f"Cancel-After: {header} put the deadline {ahead:.1f} s ahead, not {seconds} s"
        )
    # Once the sweeper has expired a job due now, the one due in an hour is still queued.
    task_id = answer.json()["task_id"]
    due = httpx.post(
        f"{auth_stack.gateway}/flux", json=TINY, headers={**bearer(token), "Cancel-After": "0.2"}
    ).json()["task_id"]
    poll_until(
        lambda: view(auth_stack, token, due)["status"] == "expired",
        timeout=10,
        what="the sweeper to expire the job due in 0.2 s",
    )
    assert view(auth_stack, token, task_id)["status"] == "queued"


def test_prefer_wait_is_capped_at_300_seconds(auth_stack: AuthStack) -> None:
    token = auth_stack.new_key("prefer-cap")
    answer = httpx.post(
        f"{auth_stack.gateway}/flux",
        json=TINY,
        headers={**bearer(token), "Prefer": "wait=100000"},
        timeout=30,
    )
    # No notifier answers this gateway's waits: it falls back to 202 at once.
    assert answer.status_code == 202, answer.text
    assert answer.headers["preference-applied"] == "wait=300"


# --- cancel of a job that already ended -----------------------------------------------------------


def test_cancel_of_an_expired_job_is_409(auth_stack: AuthStack) -> None:
    token = auth_stack.new_key("cancel-expired")
    answer = httpx.post(
        f"{auth_stack.gateway}/flux", json=TINY, headers={**bearer(token), "Cancel-After": "0.2"}
    )
    task_id = answer.json()["task_id"]
    poll_until(
        lambda: view(auth_stack, token, task_id)["status"] == "expired",
        timeout=10,
        what="the notifier's sweeper to expire the queued job",
    )
    canceled = httpx.post(f"{auth_stack.gateway}/tasks/{task_id}/cancel", headers=bearer(token))
    assert canceled.status_code == 409, canceled.text
    assert canceled.json()["error"]["code"] == "conflict"
    assert view(auth_stack, token, task_id)["status"] == "expired"


def test_cancel_of_a_failed_job_is_409(stack: Stack) -> None:
    # A real failure: the worker fetches an image URL that answers 404.
    missing = f"{stack.gateway}/files/{uuid.uuid4().hex}.png"
    answer = httpx.post(
        f"{stack.gateway}/tasks", json={"type": "face_detect", "input": {"image": missing}}
    )
    assert answer.status_code == 202, answer.text
    task_id = answer.json()["task_id"]
    failed = stack.wait_status(task_id, "failed", "succeeded", "canceled", timeout=30)
    assert failed["status"] == "failed", failed
    canceled = httpx.post(f"{stack.gateway}/tasks/{task_id}/cancel")
    assert canceled.status_code == 409, canceled.text
    assert canceled.json()["error"]["code"] == "conflict"
    assert stack.view(task_id)["status"] == "failed"


# --- the seed -------------------------------------------------------------------------------------


def test_a_seed_left_out_is_picked_and_reported(stack: Stack) -> None:
    first, second = (
        str(stack.submit(width=64, height=64, num_inference_steps=1, seed=None)["task_id"])
        for _ in range(2)
    )
    seeds = []
    for task_id in (first, second):
        done = stack.wait_status(task_id, "succeeded", "failed", timeout=60)
        assert done["status"] == "succeeded", done
        image = done["result"]["images"][0]  # type: ignore[index]
        seed = image["seed"]
        assert isinstance(seed, int) and 0 <= seed < 2**32, f"no seed reported: {image}"
        seeds.append(seed)
    # Picked at random, not a fixed default (one chance in 2**32 of a false alarm).
    assert seeds[0] != seeds[1], f"two jobs without a seed both got seed {seeds[0]}: none picked"


# --- auth -----------------------------------------------------------------------------------------


def test_another_keys_webhook_redelivery_is_404(auth_stack: AuthStack) -> None:
    owner, other = auth_stack.new_key("hook-owner"), auth_stack.new_key("hook-other")
    answer = auth_stack.submit(owner, webhook_url="http://127.0.0.1:9/hook")
    assert answer.status_code == 202, answer.text
    path = f"{auth_stack.gateway}/tasks/{answer.json()['task_id']}/webhook/redeliver"
    stranger = httpx.post(path, headers=bearer(other))
    assert stranger.status_code == 404, stranger.text
    assert stranger.json()["error"]["code"] == "not_found"
    # The owner reaches the task: nothing was sent yet, which is a conflict, not "not found".
    mine = httpx.post(path, headers=bearer(owner))
    assert mine.status_code == 409, mine.text


def test_output_files_need_no_key(auth_stack: AuthStack) -> None:
    outputs = Path(auth_stack.procs["gateway"].env["FLUXGATE_OUTPUT_DIR"])
    store = LocalOutputStore(
        outputs, public_base=auth_stack.gateway, name_key=fixed_key("test-output-names")
    )
    url = store.put(str(uuid.uuid4()), 0, b"\x89PNG fake bytes", extension="png")
    assert httpx.get(f"{auth_stack.gateway}/tasks").status_code == 401  # auth is on
    fetched = httpx.get(url)
    assert fetched.status_code == 200, fetched.text
    assert fetched.content == b"\x89PNG fake bytes"


def test_cors_answers_only_the_listed_origins(auth_stack: AuthStack, stack: Stack) -> None:
    preflight = {"Origin": CORS_ORIGIN, "Access-Control-Request-Method": "POST"}
    allowed = httpx.options(f"{auth_stack.gateway}/flux", headers=preflight)
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers["access-control-allow-origin"] == CORS_ORIGIN
    refused = httpx.options(
        f"{auth_stack.gateway}/flux", headers={**preflight, "Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in refused.headers
    token = auth_stack.new_key("cors")
    simple = httpx.get(
        f"{auth_stack.gateway}/tasks", headers={**bearer(token), "Origin": CORS_ORIGIN}
    )
    assert simple.headers["access-control-allow-origin"] == CORS_ORIGIN
    assert "location" in simple.headers["access-control-expose-headers"].lower()
    # Off where FLUXGATE_CORS_ORIGINS is not set (the session stack).
    off = httpx.get(f"{stack.gateway}/tasks", headers={"Origin": CORS_ORIGIN})
    assert "access-control-allow-origin" not in off.headers


def internal_error(stack: AuthStack, token: str) -> httpx.Response:
    """A 500 from the gateway's unexpected-error path: the key's own record cannot be read."""
    broken = str(uuid.uuid4())
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    owner = client.hget(keys.job_key(stack.submit(token).json()["task_id"]), "owner")
    client.hset(keys.job_key(broken), mapping={"task_id": broken, "owner": str(owner)})
    client.hset(keys.job_key(broken), "input", "{not json")
    client.close()
    return httpx.get(f"{stack.gateway}/tasks/{broken}", headers=bearer(token))


def test_security_headers_on_every_answer(auth_stack: AuthStack) -> None:
    token = auth_stack.new_key("security-headers")
    answers = {
        "202": auth_stack.submit(token),
        "401": httpx.get(f"{auth_stack.gateway}/tasks"),
        "404": httpx.get(f"{auth_stack.gateway}/tasks/{uuid.uuid4()}", headers=bearer(token)),
        "422": auth_stack.submit(token, width=250),
        "page": httpx.get(f"{auth_stack.gateway}/"),
        "500": internal_error(auth_stack, token),
    }
    for what, answer in answers.items():
        assert answer.headers.get("x-content-type-options") == "nosniff", what
        assert answer.headers.get("x-frame-options") == "DENY", what
        assert answer.headers.get("referrer-policy") == "no-referrer", what


def assert_no_traceback(answer: httpx.Response, status: int) -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error"}, body
    for leak in ("Traceback", 'File "', "line ", "Error(", "apps/", "site-packages"):
        assert leak not in answer.text, f"{status} body leaks {leak!r}: {answer.text}"


def test_no_error_body_carries_a_traceback(auth_stack: AuthStack) -> None:
    token = auth_stack.new_key("no-traceback")
    gateway = auth_stack.gateway
    assert_no_traceback(internal_error(auth_stack, token), 500)
    assert_no_traceback(
        httpx.post(
            f"{gateway}/flux",
            content=b'{"prompt": ',
            headers={**bearer(token), "content-type": "application/json"},
        ),
        422,
    )
    assert_no_traceback(auth_stack.submit(token, width="wide"), 422)
    assert_no_traceback(httpx.get(f"{gateway}/tasks/{uuid.uuid4()}", headers=bearer(token)), 404)
    assert_no_traceback(httpx.get(f"{gateway}/tasks/x", headers=bearer("fg_nope")), 401)
    assert_no_traceback(httpx.delete(f"{gateway}/flux", headers=bearer(token)), 405)


# --- the keyadmin command line --------------------------------------------------------------------


def keyadmin(stack: AuthStack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**stack.procs["gateway"].env}
    return subprocess.run(
        python_module("apps.gateway.keyadmin", *args),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_keyadmin_creates_lists_and_revokes_keys(auth_stack: AuthStack) -> None:
    created = keyadmin(auth_stack, "create", "--name", "cli-acme", "--rate", "5/s")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["name"] == "cli-acme" and key["token"].startswith("fg_")
    assert auth_stack.submit(key["token"]).status_code == 202

    listed = keyadmin(auth_stack, "list")
    assert listed.returncode == 0, listed.stderr
    assert key["id"] in {k["id"] for k in json.loads(listed.stdout)}
    assert "token" not in listed.stdout  # tokens are shown once, at creation
    via_api = httpx.get(f"{auth_stack.gateway}/admin/keys", headers=admin())
    assert key["id"] in via_api.text

    revoked = keyadmin(auth_stack, "revoke", key["id"])
    assert revoked.returncode == 0, revoked.stderr
    assert auth_stack.submit(key["token"]).status_code == 401
    again = keyadmin(auth_stack, "revoke", key["id"])
    assert again.returncode == 1 and key["id"] in again.stderr


# --- the size limits of uploads -------------------------------------------------------------------


def test_an_image_over_20_mib_is_a_422_naming_it(auth_stack: AuthStack, tmp_path: Path) -> None:
    token = auth_stack.new_key("big-image")
    assert_refused_for_its_size(post_oversized_image(auth_stack.gateway, bearer(token), tmp_path))


def test_an_upload_over_64_mib_is_a_413(auth_stack: AuthStack) -> None:
    token = auth_stack.new_key("big-upload")
    headers = {**bearer(token), "content-type": "application/json"}
    # Streamed without a length: the gateway counts as it reads.
    streamed = httpx.post(
        f"{auth_stack.gateway}/tasks",
        content=zeros(UPLOAD_LIMIT + MIB),
        headers=headers,
        timeout=60,
    )
    assert streamed.status_code == 413, streamed.text
    error = streamed.json()["error"]
    assert (error["code"], error.get("field")) == ("body_too_large", "body"), error
    # Refused on its declared length, before reading it.
    declared = httpx.post(
        f"{auth_stack.gateway}/tasks",
        content=zeros(UPLOAD_LIMIT + 1),
        headers={**headers, "content-length": str(UPLOAD_LIMIT + 1)},
        timeout=60,
    )
    assert declared.status_code == 413, declared.text
    error = declared.json()["error"]
    assert (error["code"], error.get("field")) == ("body_too_large", "body"), error


# --- the WebSocket --------------------------------------------------------------------------------


def test_websocket_progress_comes_at_most_every_100_ms(stack: Stack) -> None:
    # Ten GrabCut iterations, each reported, on a small picture: reports come faster than every
    # 100 ms, and the worker coalesces them.
    task = httpx.post(
        f"{stack.gateway}/tasks",
        data={"type": "background_removal", "input": '{"iterations": 10}'},
        files={"image": ("noise.png", noise_png(PROGRESS_IMAGE_SIDE), "image/png")},
    ).json()
    arrivals: list[tuple[float, dict[str, object]]] = []
    with (
        connect(str(task["urls"]["ws"]), open_timeout=10, compression=None) as ws,
        contextlib.suppress(ConnectionClosed),
    ):
        while True:
            message = json.loads(ws.recv(timeout=60))
            arrivals.append((time.monotonic(), message))
    events = [message["event"] for _, message in arrivals]
    assert events[-1] == "succeeded", events
    progress = [at for at, message in arrivals if message["event"] == "progress"]
    assert progress, f"no progress view at all: {events}"
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(progress)]
    # 100 ms apart when sent; delivery may bring two a little closer.
    assert all(gap >= 0.08 for gap in gaps), f"progress views {gaps} s apart"
