"""With auth on, every route needs a key and shows a key only its own tasks (REST, WebSocket,
events, the demo page), and tokens never reach logs or records."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import redis
from playwright.sync_api import Page

from apps.common.redis import keys
from tests.e2e.wsclient import watch
from tests.gateway.auth_stack import ADMIN_TOKEN, FLUX, AuthStack, bearer


def test_a_key_is_required(auth_stack: AuthStack) -> None:
    for headers in ({}, bearer("fg_not-a-real-key"), {"Authorization": "Basic abc"}):
        response = httpx.post(f"{auth_stack.gateway}/flux", json=FLUX, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{auth_stack.gateway}/tasks/{uuid.uuid4()}").status_code == 401


def test_tasks_are_private_to_their_key(auth_stack: AuthStack) -> None:
    alice, bob = auth_stack.new_key("alice"), auth_stack.new_key("bob")
    task_id = auth_stack.submit(alice).json()["task_id"]
    gw = auth_stack.gateway
    assert httpx.get(f"{gw}/tasks/{task_id}", headers=bearer(alice)).status_code == 200
    for response in (
        httpx.get(f"{gw}/tasks/{task_id}", headers=bearer(bob)),
        httpx.post(f"{gw}/tasks/{task_id}/cancel", headers=bearer(bob)),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    mine = httpx.get(f"{gw}/tasks", headers=bearer(alice)).json()["tasks"]
    assert [t["task_id"] for t in mine] == [task_id]
    assert httpx.get(f"{gw}/tasks", headers=bearer(bob)).json()["tasks"] == []


def test_listing_pages_newest_first_and_filters(auth_stack: AuthStack) -> None:
    token = auth_stack.new_key("lister")
    ids = [auth_stack.submit(token, seed=i).json()["task_id"] for i in range(5)]
    httpx.post(f"{auth_stack.gateway}/tasks/{ids[0]}/cancel", headers=bearer(token))
    first = httpx.get(
        f"{auth_stack.gateway}/tasks", params={"limit": 3}, headers=bearer(token)
    ).json()
    rest = httpx.get(
        f"{auth_stack.gateway}/tasks",
        params={"limit": 3, "cursor": first["next_cursor"]},
        headers=bearer(token),
    ).json()
    assert [t["task_id"] for t in first["tasks"] + rest["tasks"]] == ids[::-1]
    canceled = httpx.get(
        f"{auth_stack.gateway}/tasks", params={"status": "canceled"}, headers=bearer(token)
    ).json()["tasks"]
    assert [t["task_id"] for t in canceled] == [ids[0]]
    bad = httpx.get(f"{auth_stack.gateway}/tasks", params={"cursor": "soon"}, headers=bearer(token))
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "cursor"


def test_websocket_needs_the_owners_key(auth_stack: AuthStack) -> None:
    alice, bob = auth_stack.new_key("ws-alice"), auth_stack.new_key("ws-bob")
    task_id = auth_stack.submit(alice).json()["task_id"]
    url = f"{auth_stack.notifier_ws}/ws/tasks/{task_id}"
    assert watch(url, timeout=5).close_code == 4401
    assert watch(f"{url}?token={bob}", timeout=5).close_code == 4404
    httpx.post(f"{auth_stack.gateway}/tasks/{task_id}/cancel", headers=bearer(alice))
    own = watch(f"{url}?token={alice}", timeout=5)
    assert own.events == ["snapshot"] and own.messages[0]["status"] == "canceled"


def test_events_need_the_owners_key_and_answer_503_without_a_notifier(
    auth_stack: AuthStack,
) -> None:
    owner, stranger = auth_stack.new_key("events-owner"), auth_stack.new_key("events-stranger")
    task_id = auth_stack.submit(owner).json()["task_id"]
    url = f"{auth_stack.gateway}/tasks/{task_id}/events"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers=bearer(stranger)).status_code == 404
    # This stack's notifier URL leads nowhere: a clear 503, not a hung or broken stream.
    down = httpx.get(url, headers=bearer(owner), timeout=10)
    assert down.status_code == 503
    assert down.json()["error"]["code"] == "unavailable"
    assert down.headers["retry-after"] == "1"


def test_secrets_never_reach_logs_or_records(auth_stack: AuthStack) -> None:
    token = auth_stack.new_key("secretive")
    task_id = auth_stack.submit(token, webhook_url="http://127.0.0.1:9/hook").json()["task_id"]
    client = redis.Redis.from_url(auth_stack.redis_url, decode_responses=True)
    record = json.dumps(client.hgetall(keys.job_key(task_id)))
    assert token not in record and ADMIN_TOKEN not in record
    stored_keys = json.dumps([client.get(k) for k in client.scan_iter("fluxgate:apikey:*")])
    assert token not in stored_keys, "only the digest of a token is stored"
    for proc in auth_stack.procs.values():
        log = Path(proc.log_path).read_text()
        assert token not in log and ADMIN_TOKEN not in log, proc.name


def test_the_demo_page_works_with_auth_on(auth_stack: AuthStack, page: Page) -> None:
    """The page sends the key on fetches and as `?token=` on its WebSocket."""
    token = auth_stack.new_key("browser")
    page.goto(f"{auth_stack.gateway}/")
    page.fill("#field-width", "64")
    page.fill("#field-height", "64")
    page.click("#submit")
    error = page.locator("#error")
    error.wait_for(state="visible", timeout=10_000)
    assert "API key" in error.inner_text()

    # The refusal opened the key field and put the cursor in it.
    assert page.get_attribute("#key-box", "open") is not None
    assert page.evaluate("() => document.activeElement.id") == "api-key"
    page.fill("#api-key", token)
    page.click("#submit")
    # No worker in this stack: the job stays queued, and the snapshot over the authenticated
    # WebSocket says where it stands.
    page.wait_for_selector('#status[data-status="queued"]', timeout=10_000)
    assert page.inner_text("#status").startswith("Queued")
    assert page.is_hidden("#error")
