"""The Python client (`clients/python`, `fluxgate_client`) against the real stack, plus tiny real
servers for what the stack will not do on demand (503s, dropped connections and sockets)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import io
import json
import os
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fluxgate_client import (
    AsyncFluxgate,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ConnectionFailed,
    Fluxgate,
    JobView,
    NotFoundError,
    Preview,
    RateLimitError,
    ServiceUnavailableError,
    TaskCanceledError,
    UnsupportedTaskTypeError,
    WaitTimeout,
    WebhookVerificationError,
    verify_webhook,
)
from fluxgate_client._progress import TextProgress
from PIL import Image

from apps.common.security.signing import sign_webhook
from devtools.procs import (
    Proc,
    free_port,
    poll_until,
    python_module,
    stack_env,
    start_redis,
    wait_http_ok,
)
from tests.client.fakes import Answer, FakeHTTP, FakeWS, send, send_and_hold, view
from tests.conftest import WEBHOOK_SECRET, Stack

SMALL = {"prompt": "a red fox", "width": 64, "height": 64, "num_inference_steps": 2, "seed": 7}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FLUXGATE_CLI = Path(sys.executable).with_name("fluxgate")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE, data[:16]
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# --- the real stack -----------------------------------------------------------------------------


def test_run_returns_the_succeeded_view_and_save_image_writes_the_png(
    stack: Stack, tmp_path: Path
) -> None:
    with Fluxgate(stack.gateway) as client:
        done = client.run("flux", SMALL, timeout=60)
        saved = client.save_image(done, tmp_path / "fox.png")

    assert done.succeeded and done.is_terminal and done.status == "succeeded"
    assert done.progress == 100 and done.error is None and done.error_code is None
    assert done.cost == 0.0082  # megapixel-steps: 64x64 pixels, 2 steps
    assert done.urls is not None and done.urls.ws.startswith(stack.notifier_ws)
    assert [(i["width"], i["height"], i["seed"]) for i in done.images] == [(64, 64, 7)]
    assert saved == tmp_path / "fox.png"
    assert png_size(saved.read_bytes()) == (64, 64)


def test_async_run_and_save_image(stack: Stack, tmp_path: Path) -> None:
    async def main() -> tuple[JobView, Path, JobView]:
        async with AsyncFluxgate(stack.gateway) as client:
            done = await client.run("flux", {**SMALL, "seed": 8}, timeout=60)
            saved = await client.save_image(done, tmp_path / "async.png")
            again = await client.get(done.task_id)
            return done, saved, again

    done, saved, again = asyncio.run(main())
    assert done.status == "succeeded" and done.images[0]["seed"] == 8
    assert png_size(saved.read_bytes()) == (64, 64)
    assert again.task_id == done.task_id and again.seq == done.seq


def test_stream_yields_snapshot_then_newer_views_until_succeeded(stack: Stack) -> None:
    with Fluxgate(stack.gateway) as client:
        # 6 steps of 100 ms: the socket is open long before the end, so it sees live views.
        submitted = client.submit("flux", {**SMALL, "num_inference_steps": 6})
        views = list(client.stream(submitted.task_id))

    assert submitted.status == "queued" and not submitted.replayed
    assert views[0].event == "snapshot"
    assert views[-1].status == "succeeded" and views[-1].event == "succeeded"
    seqs = [v.seq for v in views]
    assert seqs == sorted(set(seqs)), seqs  # strictly increasing: no repeats, no going back
    progress = [v.progress for v in views]
    assert progress == sorted(progress) and progress[-1] == 100
    assert {v.task_id for v in views} == {submitted.task_id}


def test_async_stream_of_a_task_submitted_elsewhere_finds_the_socket(stack: Stack) -> None:
    # Neither a submit's urls.ws nor ws_url: the socket derived from the gateway's URL does not
    # exist, so the client must fall back to the task's own `urls.ws` from the server.
    task_id = str(stack.submit(width=64, height=64, num_inference_steps=2)["task_id"])

    async def main() -> list[JobView]:
        async with AsyncFluxgate(stack.gateway) as client:
            return [v async for v in client.stream(task_id)]

    views = asyncio.run(main())
    assert views[-1].status == "succeeded"
    assert [v.seq for v in views] == sorted({v.seq for v in views})


def test_wait_polls_when_the_websocket_cannot_be_opened(stack: Stack) -> None:
    seen: list[JobView] = []
    dead_ws = f"ws://127.0.0.1:{free_port()}"  # nothing listens there
    with Fluxgate(stack.gateway, ws_url=dead_ws) as client:
        task_id = str(stack.submit(width=64, height=64, num_inference_steps=2)["task_id"])
        done = client.wait(task_id, timeout=60, on_update=seen.append)

    assert done.status == "succeeded"
    assert seen and seen[-1].seq == done.seq
    assert [v.seq for v in seen] == sorted({v.seq for v in seen})


def test_invalid_input_is_a_bad_request_naming_the_field(stack: Stack) -> None:
    with Fluxgate(stack.gateway) as client, pytest.raises(BadRequestError) as caught:
        client.submit("flux", {**SMALL, "width": 100})
    assert caught.value.status_code == 422
    assert caught.value.code == "invalid_input"
    assert caught.value.field == "width"
    assert "multiple of 16" in caught.value.message


def test_unknown_task_is_not_found_everywhere(stack: Stack) -> None:
    unknown = str(uuid.uuid4())
    with Fluxgate(stack.gateway, ws_url=stack.notifier_ws) as client:
        with pytest.raises(NotFoundError) as caught:
            client.get(unknown)
        assert caught.value.status_code == 404 and caught.value.code == "not_found"
        with pytest.raises(NotFoundError):
            client.cancel(unknown)
        with pytest.raises(NotFoundError):  # the notifier's close code 4404
            list(client.stream(unknown))
    with Fluxgate(stack.gateway) as client, pytest.raises(NotFoundError):
        client.wait(unknown, timeout=10)


def test_unknown_task_types_surface_as_unsupported(stack: Stack) -> None:
    with Fluxgate(stack.gateway) as client, pytest.raises(UnsupportedTaskTypeError) as caught:
        client.submit("paint_my_house", {"colour": "red"})
    assert caught.value.status_code == 422
    assert "paint_my_house" in str(caught.value) and caught.value.field == "type"


def test_other_task_types_run_through_post_tasks(stack: Stack) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), (10, 200, 30)).save(buffer, format="PNG")
    image = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    with Fluxgate(stack.gateway) as client:
        job = client.submit("upscale", {"image": image, "scale": 2, "method": "lanczos"})
        view = client.wait(job.task_id, timeout=60)
    assert view.status == "succeeded"
    assert view.result is not None
    assert (view.result["images"][0]["width"], view.result["images"][0]["height"]) == (48, 32)


def test_idempotency_key_replays_the_same_task(stack: Stack) -> None:
    key = f"client-test-{uuid.uuid4()}"
    with Fluxgate(stack.gateway) as client:
        first = client.submit("flux", SMALL, idempotency_key=key)
        second = client.submit("flux", SMALL, idempotency_key=key)
        with pytest.raises(ConflictError) as caught:
            client.submit("flux", {**SMALL, "seed": 9}, idempotency_key=key)
        client.wait(first.task_id, timeout=60)
    assert second.task_id == first.task_id
    assert (first.replayed, second.replayed) == (False, True)
    assert caught.value.status_code == 409 and caught.value.field == "Idempotency-Key"


def test_cancel_a_queued_job_and_a_job_that_expires_in_the_queue(stack: Stack) -> None:
    blockers = stack.fill_worker()
    try:
        with Fluxgate(stack.gateway) as client:
            queued = client.submit("flux", SMALL)
            assert client.get(queued.task_id).queue_position is not None
            canceled = client.cancel(queued.task_id)
            again = client.cancel(queued.task_id)  # 200: already canceled, not an error
            final = client.wait(queued.task_id, timeout=10)
            # Still queued at its Cancel-After deadline: the sweeper expires it.
            with pytest.raises(TaskCanceledError) as caught:
                client.run("flux", SMALL, cancel_after=0.5, timeout=30)
    finally:
        stack.release(blockers)

    assert (canceled.status, again.status, final.status) == ("canceled", "canceled", "canceled")
    assert final.seq == canceled.seq
    expired = caught.value.view
    assert expired.status == "expired" and expired.error_code == "deadline_exceeded"


def test_cancel_of_a_finished_job_is_a_conflict_carrying_its_view(stack: Stack) -> None:
    with Fluxgate(stack.gateway) as client:
        done = client.run("flux", SMALL, timeout=60)
        with pytest.raises(ConflictError) as caught:
            client.cancel(done.task_id)
    assert caught.value.status_code == 409
    assert caught.value.view is not None
    assert (caught.value.view.task_id, caught.value.view.status) == (done.task_id, "succeeded")


def test_usage_counts_the_jobs_of_the_key(stack: Stack) -> None:
    with Fluxgate(stack.gateway) as client:
        client.run("flux", SMALL, timeout=60)
        report = client.usage()
        with pytest.raises(BadRequestError) as caught:
            client.usage(since="2026-02-30")
    assert report["key"] == "anonymous"
    assert report["totals"]["flux"]["succeeded"] >= 1
    assert caught.value.field == "since"


# --- webhooks -----------------------------------------------------------------------------------


def _spec_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """Signed as standardwebhooks.com says, written out here independently of both sides."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def test_verify_webhook_accepts_spec_signatures_and_rejects_tampering_and_old_ones() -> None:
    body = json.dumps({"type": "task.succeeded", "data": {"task_id": "t1"}}).encode()
    now = int(time.time())
    headers = {
        "Webhook-Id": "msg_1",
        "Webhook-Timestamp": str(now),
        "Webhook-Signature": _spec_signature(WEBHOOK_SECRET, "msg_1", str(now), body),
    }
    assert verify_webhook(headers, body, WEBHOOK_SECRET)["data"] == {"task_id": "t1"}
    assert verify_webhook(headers, body.decode(), WEBHOOK_SECRET)["type"] == "task.succeeded"

    # The server's own signer, with a rotation in progress: two signatures, either secret works.
    other = "whsec_" + base64.b64encode(b"another secret of 24 b!!").decode()
    server = sign_webhook("msg_2", body, [other, WEBHOOK_SECRET])
    assert len(server["webhook-signature"].split()) == 2
    assert verify_webhook(server, body, WEBHOOK_SECRET)["type"] == "task.succeeded"
    assert verify_webhook(server, body, [WEBHOOK_SECRET, other])["type"] == "task.succeeded"

    with pytest.raises(WebhookVerificationError, match="signature"):
        verify_webhook(headers, body.replace(b"t1", b"t2"), WEBHOOK_SECRET)
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify_webhook(headers, body, other)
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify_webhook({**headers, "Webhook-Id": "msg_x"}, body, WEBHOOK_SECRET)
    old = str(now - 600)
    stale = {
        **headers,
        "Webhook-Timestamp": old,
        "Webhook-Signature": _spec_signature(WEBHOOK_SECRET, "msg_1", old, body),
    }
    with pytest.raises(WebhookVerificationError, match="old"):
        verify_webhook(stale, body, WEBHOOK_SECRET)
    assert verify_webhook(stale, body, WEBHOOK_SECRET, tolerance_s=900)["type"]
    with pytest.raises(WebhookVerificationError, match="missing"):
        verify_webhook({"webhook-id": "msg_1"}, body, WEBHOOK_SECRET)


@dataclass
class RawHook:
    headers: dict[str, str]
    body: bytes


def test_verify_webhook_accepts_what_the_stack_really_sends(stack: Stack) -> None:
    received: list[RawHook] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append(RawHook(dict(self.headers.items()), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        hook_url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        with Fluxgate(stack.gateway) as client:
            done = client.run("flux", SMALL, webhook_url=hook_url, timeout=60)
        hooks = poll_until(lambda: received, timeout=30, what="the completion webhook")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

    message = verify_webhook(hooks[0].headers, hooks[0].body, WEBHOOK_SECRET)
    assert message["type"] == "task.succeeded"
    assert message["data"]["task_id"] == done.task_id
    with pytest.raises(WebhookVerificationError):
        verify_webhook(hooks[0].headers, hooks[0].body + b" ", WEBHOOK_SECRET)


# --- retries, against a tiny real HTTP server ---------------------------------------------------

ACCEPTED = {
    "task_id": "t-1",
    "status": "queued",
    "urls": {"status": "s", "cancel": "c", "ws": "ws://127.0.0.1:1/ws/tasks/t-1"},
}


def test_submit_retries_a_503_honouring_retry_after_with_the_same_idempotency_key() -> None:
    unavailable = Answer(503, {"error": {"code": "unavailable", "message": "down"}})
    with (
        FakeHTTP(
            Answer(503, unavailable.body, {"Retry-After": "0"}), Answer(202, ACCEPTED)
        ) as server,
        Fluxgate(server.url) as client,
    ):
        submitted = client.submit("flux", SMALL, cancel_after=30)

    assert submitted.task_id == "t-1" and submitted.status == "queued"
    assert [(r.method, r.path) for r in server.requests] == [("POST", "/flux")] * 2
    keys = {r.headers["idempotency-key"] for r in server.requests}
    assert len(keys) == 1 and uuid.UUID(keys.pop()).version == 4
    assert {r.headers["cancel-after"] for r in server.requests} == {"30"}
    assert json.loads(server.requests[0].body) == SMALL  # flux input is sent flat


def test_a_submit_still_being_accepted_is_retried_but_a_reused_key_is_not() -> None:
    in_progress = {"error": {"code": "idempotency_in_progress", "message": "retry"}}
    with (
        FakeHTTP(Answer(409, in_progress, {"Retry-After": "0"}), Answer(202, ACCEPTED)) as server,
        Fluxgate(server.url) as client,
    ):
        assert client.submit("flux", SMALL).task_id == "t-1"
    assert len(server.requests) == 2

    reused = {"error": {"code": "conflict", "message": "other body", "field": "Idempotency-Key"}}
    with (
        FakeHTTP(Answer(409, reused), Answer(202, ACCEPTED)) as server,
        Fluxgate(server.url) as client,
        pytest.raises(ConflictError),
    ):
        client.submit("flux", SMALL)
    assert len(server.requests) == 1


def test_a_get_waits_as_long_as_retry_after_says() -> None:
    answers = [
        Answer(503, {"error": {"code": "unavailable", "message": "x"}}, {"Retry-After": "1"})
    ]
    running = Answer(200, {"task_id": "t-1", "status": "running", "seq": 3})
    with FakeHTTP(*answers, running) as srv, Fluxgate(srv.url) as client:
        started = time.monotonic()
        got = client.get("t-1")
        waited = time.monotonic() - started
    assert got.status == "running" and got.seq == 3 and len(srv.requests) == 2
    # Our own first backoff is at most 0.5 s: this long means the server's 1 s was honoured.
    assert waited >= 0.9, waited


def test_retries_stop_at_max_retries_with_a_typed_error() -> None:
    busy = Answer(429, {"error": {"code": "rate_limited", "message": "slow"}}, {"Retry-After": "0"})
    with (
        FakeHTTP(default=busy) as server,
        Fluxgate(server.url, max_retries=2) as client,
        pytest.raises(RateLimitError) as caught,
    ):
        client.get("t-1")
    assert len(server.requests) == 3 and caught.value.retry_after == 0

    down = Answer(503, {"error": {"code": "unavailable", "message": "down"}})
    with (
        FakeHTTP(default=down) as server,
        Fluxgate(server.url, max_retries=0) as client,
        pytest.raises(ServiceUnavailableError) as unavailable,
    ):
        client.submit("flux", SMALL)
    assert len(server.requests) == 1 and unavailable.value.retry_after is None


def test_transport_errors_are_retried_only_where_that_is_safe() -> None:
    found = Answer(200, {"task_id": "t-1", "seq": 1})
    with FakeHTTP(Answer(drop=True), found) as server, Fluxgate(server.url) as client:
        assert client.get("t-1").task_id == "t-1"
    assert len(server.requests) == 2

    # Creating a key is not idempotent: a retry could make a second one.
    with (
        FakeHTTP(Answer(drop=True), Answer(201, {"id": "k"})) as server,
        Fluxgate(server.url) as client,
        pytest.raises(ConnectionFailed),
    ):
        client.admin("admin-token").create_key("acme")
    assert len(server.requests) == 1
    assert server.requests[0].headers["authorization"] == "Bearer admin-token"


def test_the_api_key_goes_to_our_server_only() -> None:
    with (
        FakeHTTP(default=Answer(200, {})) as ours,
        FakeHTTP(default=Answer(200, {})) as other,
        Fluxgate(ours.url, api_key="fg_secret") as client,
    ):
        client.get("t-1")
        client.download(f"{other.url}/files/x.png")
    assert ours.requests[0].headers["authorization"] == "Bearer fg_secret"
    assert "authorization" not in other.requests[0].headers


# --- the WebSocket, against a tiny real WebSocket server ----------------------------------------


def test_stream_reconnects_after_a_drop_without_repeating_a_view() -> None:
    with (
        FakeWS(
            send(
                view("t-1", 1, "queued", event="snapshot"),
                view("t-1", 2, "running", 50),
                close_code=1011,
            ),
            send(
                view("t-1", 2, "running", 50, "snapshot"),
                view("t-1", 3, "succeeded", 100, "succeeded"),
            ),
        ) as ws,
        Fluxgate("http://127.0.0.1:1", api_key="fg_key", ws_url=ws.base) as client,
    ):
        views = list(client.stream("t-1"))

    assert [v.seq for v in views] == [1, 2, 3]
    assert views[-1].status == "succeeded"
    assert len(ws.connections) == 2
    assert ws.paths == ["/ws/tasks/t-1"] * 2
    assert {c["authorization"] for c in ws.connections} == {"Bearer fg_key"}


def test_async_stream_reconnects_after_a_drop_without_repeating_a_view() -> None:
    async def main(base: str) -> list[JobView]:
        async with AsyncFluxgate("http://127.0.0.1:1", ws_url=base) as client:
            return [v async for v in client.stream("t-1")]

    with FakeWS(
        send(
            view("t-1", 1, "queued", event="snapshot"),
            view("t-1", 2, "running", 50),
            close_code=1011,
        ),
        send(view("t-1", 2, "running", 50, "snapshot"), view("t-1", 3, "failed", 50, "failed")),
    ) as ws:
        views = asyncio.run(main(ws.base))
    assert [(v.seq, v.status) for v in views] == [(1, "queued"), (2, "running"), (3, "failed")]
    assert len(ws.connections) == 2
    assert "authorization" not in ws.connections[0]


def test_stream_retries_a_first_handshake_that_fails() -> None:
    with (
        FakeWS(
            send(view("t-1", 1, "running", event="snapshot"), view("t-1", 2, "succeeded", 100)),
            refuse=2,
        ) as ws,
        Fluxgate("http://127.0.0.1:1", ws_url=ws.base) as client,
    ):
        views = list(client.stream("t-1"))
    assert ws.refused == 2
    assert [(v.seq, v.status) for v in views] == [(1, "running"), (2, "succeeded")]


def test_async_stream_retries_a_first_handshake_that_fails() -> None:
    async def main(base: str) -> list[JobView]:
        async with AsyncFluxgate("http://127.0.0.1:1", ws_url=base) as client:
            return [v async for v in client.stream("t-1")]

    with FakeWS(
        send(view("t-1", 1, "running", event="snapshot"), view("t-1", 2, "failed", 50, "failed")),
        refuse=1,
    ) as ws:
        views = asyncio.run(main(ws.base))
    assert ws.refused == 1
    assert [v.status for v in views] == ["running", "failed"]


def test_stream_polls_when_the_websocket_cannot_be_opened(stack: Stack) -> None:
    dead_ws = f"ws://127.0.0.1:{free_port()}"  # nothing listens there
    task_id = str(stack.submit(width=64, height=64, num_inference_steps=2)["task_id"])
    with Fluxgate(stack.gateway, ws_url=dead_ws) as client:
        views = list(client.stream(task_id))

    async def main() -> list[JobView]:
        async with AsyncFluxgate(stack.gateway, ws_url=dead_ws) as client:
            return [v async for v in client.stream(task_id)]

    for seen in (views, asyncio.run(main())):
        assert seen[-1].status == "succeeded"
        assert [v.seq for v in seen] == sorted({v.seq for v in seen})


def test_stream_polls_once_the_reconnect_budget_is_spent() -> None:
    with (
        FakeWS(
            send(view("t-1", 1, "running", event="snapshot"), close_code=1011),
            send(close_code=1011),
        ) as ws,
        FakeHTTP(Answer(200, json.loads(view("t-1", 3, "succeeded", 100, "snapshot")))) as http,
        Fluxgate(http.url, ws_url=ws.base, reconnect_budget=0.5) as client,
    ):
        seen = [got.seq for got in client.stream("t-1")]
    assert seen == [1, 3]
    assert 2 <= len(ws.connections) <= 6  # 0.2 s, then 0.3 s: backing off, not spinning
    assert [r.path for r in http.requests] == ["/tasks/t-1"]


def test_close_codes_4404_and_4401_are_typed_errors() -> None:
    with (
        FakeWS(send(close_code=4404, reason="task not found")) as ws,
        Fluxgate("http://127.0.0.1:1", ws_url=ws.base) as client,
        pytest.raises(NotFoundError, match="task not found"),
    ):
        list(client.stream("t-1"))
    with (
        FakeWS(send(close_code=4401, reason="API key required")) as ws,
        Fluxgate("http://127.0.0.1:1", ws_url=ws.base) as client,
        pytest.raises(AuthenticationError),
    ):
        list(client.stream("t-1"))
    assert len(ws.connections) == 1  # never retried


def test_wait_times_out() -> None:
    with (
        FakeWS(send_and_hold(view("t-1", 1, "running", 10, "snapshot"))) as ws,
        Fluxgate("http://127.0.0.1:1", ws_url=ws.base) as client,
    ):
        started = time.monotonic()
        with pytest.raises(WaitTimeout) as caught:
            client.wait("t-1", timeout=0.5)
        assert 0.4 <= time.monotonic() - started < 5
    assert isinstance(caught.value, TimeoutError) and "t-1" in str(caught.value)


# --- keys and auth, on a stack with auth on -----------------------------------------------------

ADMIN_TOKEN = "client-admin-token-0123456789"


@dataclass
class AuthStack:
    gateway: str
    notifier_ws: str


@pytest.fixture(scope="module")
def auth_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthStack]:
    """Gateway and notifier with API keys required and no worker: jobs stay queued."""
    tmp = tmp_path_factory.mktemp("client-auth")
    redis_proc, redis_url = start_redis(tmp)
    ports = {name: free_port() for name in ("gateway", "notifier", "balancer", "inference")}
    env = {
        **stack_env(redis_url, tmp, ports),
        "FLUXGATE_AUTH": "true",
        "FLUXGATE_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    procs: dict[str, Proc] = {
        name: Proc(name, python_module(f"apps.{name}"), env, tmp / f"{name}.log").start()
        for name in ("gateway", "notifier")
    }
    try:
        for name, proc in procs.items():
            wait_http_ok(f"http://127.0.0.1:{ports[name]}/readyz", timeout=60, proc=proc)
        yield AuthStack(
            f"http://127.0.0.1:{ports['gateway']}", f"ws://127.0.0.1:{ports['notifier']}"
        )
    finally:
        for proc in procs.values():
            proc.stop()
        redis_proc.stop()


def test_admin_keys_and_api_key_auth(auth_stack: AuthStack) -> None:
    with Fluxgate(auth_stack.gateway) as anonymous:
        admin = anonymous.admin(ADMIN_TOKEN)
        key = admin.create_key("client-tests", rate="50/s", max_queued=5, max_cost=90, weight=2)
        other = admin.create_key("someone-else")
        assert (key["max_cost"], key["weight"]) == (90, 2)
        assert (other["max_cost"], other["weight"]) == (None, 1)
        changed = admin.update_key(other["id"], weight=0.5, max_cost=40)
        assert (changed["max_cost"], changed["weight"], changed["max_active"]) == (40, 0.5, 100)
        assert admin.update_key(other["id"], max_cost=None)["max_cost"] is None
        with pytest.raises(BadRequestError) as bad_weight:
            admin.update_key(other["id"], weight=0)
        assert bad_weight.value.field == "weight"

        listed = {k["id"] for k in admin.list_keys()}
        with pytest.raises(AuthenticationError):
            anonymous.admin("wrong-token").list_keys()
        with pytest.raises(AuthenticationError) as no_key:
            anonymous.submit("flux", SMALL)

    assert key["token"].startswith("fg_") and {key["id"], other["id"]} <= listed
    assert no_key.value.status_code == 401

    with Fluxgate(auth_stack.gateway, key["token"], ws_url=auth_stack.notifier_ws) as client:
        submitted = client.submit("flux", SMALL)
        with contextlib.closing(client.stream(submitted.task_id)) as views:
            first = next(views)  # the job stays queued: there is no worker here
        assert (first.event, first.status) == ("snapshot", "queued")
    with Fluxgate(auth_stack.gateway, other["token"], ws_url=auth_stack.notifier_ws) as client:
        with pytest.raises(NotFoundError):  # another key's task does not exist for this one
            client.get(submitted.task_id)
        with pytest.raises(NotFoundError):  # 4404
            list(client.stream(submitted.task_id))
    with (
        Fluxgate(auth_stack.gateway, "fg_not_a_key", ws_url=auth_stack.notifier_ws) as client,
        pytest.raises(AuthenticationError),  # 4401
    ):
        list(client.stream(submitted.task_id))

    with Fluxgate(auth_stack.gateway) as anonymous:
        anonymous.admin(ADMIN_TOKEN).revoke_key(other["id"])
        with pytest.raises(NotFoundError):
            anonymous.admin(ADMIN_TOKEN).revoke_key(other["id"])
    with (
        Fluxgate(auth_stack.gateway, other["token"]) as revoked,
        pytest.raises(AuthenticationError),
    ):
        revoked.usage()

    async def change_a_key_asynchronously() -> dict[str, Any]:
        async with AsyncFluxgate(auth_stack.gateway) as client:
            async_admin = client.admin(ADMIN_TOKEN)
            made = await async_admin.create_key("async-admin", max_cost=30, weight=3)
            assert (made["max_cost"], made["weight"]) == (30, 3)
            return await async_admin.update_key(made["id"], max_cost=None, weight=1.5)

    changed_async = asyncio.run(change_a_key_asynchronously())
    assert (changed_async["max_cost"], changed_async["weight"]) == (None, 1.5)


def test_cli_manages_keys(auth_stack: AuthStack) -> None:
    created = fluxgate(
        "--url",
        auth_stack.gateway,
        "keys",
        "create",
        "cli",
        "--rate",
        "5/s",
        "--admin-token",
        ADMIN_TOKEN,
        "--json",
    )
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["name"] == "cli" and key["token"].startswith("fg_")

    listed = fluxgate(
        "--url", auth_stack.gateway, "keys", "list", env={"FLUXGATE_ADMIN_TOKEN": ADMIN_TOKEN}
    )
    assert listed.returncode == 0 and key["id"] in listed.stdout

    admin_env = {"FLUXGATE_ADMIN_TOKEN": ADMIN_TOKEN}
    capped = fluxgate(
        "--url", auth_stack.gateway, "--json", "keys", "create", "capped",
        "--max-cost", "100", "--weight", "2", env=admin_env,
    )  # fmt: skip
    assert capped.returncode == 0, capped.stderr
    capped_key = json.loads(capped.stdout)
    assert (capped_key["max_cost"], capped_key["weight"]) == (100, 2)
    updated = fluxgate(
        "--url", auth_stack.gateway, "keys", "update", capped_key["id"],
        "--weight", "3", "--max-active", "9", env=admin_env,
    )  # fmt: skip
    assert updated.returncode == 0, updated.stderr
    # What was not given stays: the cap of 100.
    assert "at most 9 active, their cost at most 100, weight 3" in updated.stdout
    uncapped = fluxgate(
        "--url", auth_stack.gateway, "keys", "update", capped_key["id"], "--max-cost", "none",
        env=admin_env,
    )  # fmt: skip
    assert uncapped.returncode == 0, uncapped.stderr
    assert "at most 9 active, weight 3" in uncapped.stdout  # the cap is gone
    listed = fluxgate("--url", auth_stack.gateway, "keys", "list", env=admin_env)
    assert f"{capped_key['id']}  capped  (5.0/s, at most 9 active, weight 3)" in listed.stdout
    bad = fluxgate(
        "--url", auth_stack.gateway, "keys", "update", capped_key["id"], "--weight", "0",
        env=admin_env,
    )  # fmt: skip
    assert bad.returncode == 2 and "weight" in bad.stderr

    no_token = fluxgate("--url", auth_stack.gateway, "keys", "list")
    assert no_token.returncode == 2 and "admin token" in no_token.stderr

    no_key = fluxgate("--url", auth_stack.gateway, "status", str(uuid.uuid4()))
    assert no_key.returncode == 3, no_key.stderr


# --- the CLI ------------------------------------------------------------------------------------


def fluxgate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLUXGATE_")}
    return subprocess.run(
        [str(FLUXGATE_CLI), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **(env or {})},
    )


def test_cli_run_saves_the_image_and_prints_the_view(stack: Stack, tmp_path: Path) -> None:
    out = tmp_path / "fox.png"
    done = fluxgate(
        "--url",
        stack.gateway,
        "run",
        "flux",
        "a fox",
        "--width",
        "64",
        "--height",
        "64",
        "--steps",
        "2",
        "--seed",
        "3",
        "-o",
        str(out),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    final = json.loads(done.stdout)
    assert final["status"] == "succeeded" and final["result"]["images"][0]["seed"] == 3
    assert png_size(out.read_bytes()) == (64, 64)
    # The id is told at submit (stderr), so `fluxgate watch` can pick the job up from another shell.
    assert done.stderr.splitlines()[0] == f"task {final['task_id']} submitted"

    status = fluxgate("--url", stack.gateway, "--json", "status", final["task_id"])
    assert status.returncode == 0 and json.loads(status.stdout)["seq"] == final["seq"]
    watch = fluxgate("--url", stack.gateway, "watch", final["task_id"], "--json")
    assert watch.returncode == 0
    assert [json.loads(line)["status"] for line in watch.stdout.splitlines()] == ["succeeded"]
    conflict = fluxgate("--url", stack.gateway, "cancel", final["task_id"])
    assert conflict.returncode == 8 and "already succeeded" in conflict.stderr

    # `fluxgate watch ID | head`: a reader gone before the first line ends the CLI quietly.
    read_end, write_end = os.pipe()
    os.close(read_end)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLUXGATE_")}
    try:
        closed = subprocess.run(
            [str(FLUXGATE_CLI), "--url", stack.gateway, "watch", final["task_id"]],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            env=clean,
        )
    finally:
        os.close(write_end)
    assert (closed.returncode, closed.stderr) == (141, "")


def test_cli_runs_image_task_types_from_files(stack: Stack, tmp_path: Path) -> None:
    picture = tmp_path / "in.png"
    Image.new("RGB", (30, 20), (20, 90, 200)).save(picture)
    out = tmp_path / "big.png"
    done = fluxgate(
        "--url", stack.gateway, "run", "upscale", "--image", str(picture),
        "--set", "scale=4", "--set", "method=lanczos", "-o", str(out), "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert png_size(out.read_bytes()) == (120, 80)
    missing = fluxgate("--url", stack.gateway, "run", "upscale", "--image", "no/such.png")
    assert missing.returncode == 2 and "cannot read no/such.png" in missing.stderr


def test_cli_saves_several_images_with_numbered_names(stack: Stack, tmp_path: Path) -> None:
    done = fluxgate(
        "--url",
        stack.gateway,
        "run",
        "flux",
        "two foxes",
        "--width",
        "64",
        "--height",
        "64",
        "--steps",
        "1",
        "--set",
        "num_images=2",
        "-o",
        str(tmp_path / "fox.png"),
    )
    assert done.returncode == 0, done.stderr
    # 64x64 pixels, 1 step, 2 images: 0.008192 megapixel-steps.
    assert done.stderr.splitlines()[-1].endswith("succeeded, cost 0.0082 megapixel-steps")
    paths = [tmp_path / "fox-1.png", tmp_path / "fox-2.png"]
    assert done.stdout.split() == [str(p) for p in paths]
    assert [png_size(p.read_bytes()) for p in paths] == [(64, 64)] * 2
    assert paths[0].read_bytes() != paths[1].read_bytes()  # seed and seed + 1


def test_cli_saves_the_previews_it_sees(stack: Stack, tmp_path: Path) -> None:
    folder = tmp_path / "previews"  # made by the CLI
    done = fluxgate(
        "--url", stack.gateway, "run", "flux", "a fox forming", "--width", "128", "--height",
        "128", "--steps", "12", "--previews", str(folder), "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "succeeded"
    saved = sorted(folder.iterdir())
    assert saved, done.stderr
    assert f"{len(saved)} preview(s) saved in {folder}" in done.stderr
    steps = []
    for path in saved:
        assert path.name.startswith("step-") and path.suffix == ".webp", path
        with Image.open(path) as image:
            assert image.format == "WEBP"
        steps.append(int(path.stem.removeprefix("step-")))
    assert all(0 < step <= 12 for step in steps), steps
    # `--set` has the last word: a job that does not ask for previews gets none to save.
    plain = fluxgate(
        "--url", stack.gateway, "run", "flux", "a fox", "--width", "64", "--height", "64",
        "--steps", "4", "--previews", str(tmp_path / "none"), "--set", "preview=false",
    )  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    assert list((tmp_path / "none").iterdir()) == []
    assert "0 preview(s) saved" in plain.stderr


def test_the_view_model_exposes_the_preview() -> None:
    preview = {
        "url": "http://x/files/t/p.webp",
        "content_type": "image/webp",
        "step": 3,
        "total": 8,
        "width": 32,
        "height": 32,
    }
    running = JobView.from_dict({"task_id": "t", "status": "running", "seq": 2, "preview": preview})
    assert running.preview == Preview(**preview)  # type: ignore[arg-type]
    assert running.preview is not None and running.preview.extension == "webp"
    assert JobView.from_dict({"task_id": "t", "status": "running", "seq": 2}).preview is None
    # An older server (no field) or a malformed one: no preview, no error.
    assert JobView.from_dict({"task_id": "t", "preview": "oops"}).preview is None


def test_cli_exit_codes(stack: Stack) -> None:
    unknown = fluxgate("--url", stack.gateway, "status", str(uuid.uuid4()))
    assert unknown.returncode == 4 and "not found" in unknown.stderr

    bad = fluxgate("--url", stack.gateway, "run", "flux", "a fox", "--width", "100")
    assert bad.returncode == 2 and "width" in bad.stderr

    down = fluxgate("--url", f"http://127.0.0.1:{free_port()}", "status", "t-1")
    assert down.returncode == 7 and "error" in down.stderr

    helped = fluxgate("--help")
    assert helped.returncode == 0
    assert "6  timed out waiting" in helped.stdout and "4  not found" in helped.stdout


def test_text_progress_bar_shows_queue_position_then_percent() -> None:
    class Sink:
        def __init__(self) -> None:
            self.text = ""

        def write(self, text: str) -> int:
            self.text += text
            return len(text)

        def flush(self) -> None:
            pass

    sink = Sink()
    bar = TextProgress(sink, width=10)  # type: ignore[arg-type]
    bar.update(
        JobView.from_dict(
            {"task_id": "t", "status": "queued", "progress": 0, "seq": 1, "queue_position": 2}
        )
    )
    bar.update(
        JobView.from_dict(
            {"task_id": "t", "status": "queued", "seq": 2, "waiting_for": "model_server"}
        )
    )
    bar.update(JobView.from_dict({"task_id": "t", "status": "running", "progress": 50, "seq": 3}))
    bar.close()
    frames = sink.text.split("\r")[1:]
    assert frames[0].rstrip() == "[..........]   0% queued, 2 ahead"
    assert frames[1].rstrip() == "[..........]   0% queued, waiting for a model server to start"
    assert frames[2].rstrip() == "[#####.....]  50% running"
    assert len(frames[2]) >= len(frames[1].rstrip())  # the longer line is fully overwritten
    assert sink.text.endswith("\n")


def test_the_view_reads_the_cost_and_status_prints_it() -> None:
    assert JobView.from_dict({"task_id": "t", "cost": 29.3601}).cost == 29.3601
    assert JobView.from_dict({"task_id": "t", "cost": 2}).cost == 2.0
    # An older server says nothing; a malformed one is not believed.
    assert JobView.from_dict({"task_id": "t"}).cost is None
    assert JobView.from_dict({"task_id": "t", "cost": True}).cost is None
    found = {"task_id": "t-1", "type": "flux", "status": "queued", "seq": 1, "cost": 117.4405}
    with FakeHTTP(default=Answer(200, found)) as server:
        shown = fluxgate("--url", server.url, "status", "t-1")
    assert shown.returncode == 0, shown.stderr
    assert "cost      117.4405 megapixel-steps" in shown.stdout.splitlines()
