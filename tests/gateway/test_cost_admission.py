"""A job's cost over HTTP, auth on: shown in the view, 422 `too_expensive` over the limit of one
job, 429 `too_much_work` over a key's `max_cost` until one of its jobs ends, metered in usage only
for jobs that started; and the admin API and `keyadmin` set a key's `max_cost` and `weight`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx

from apps.common.security.signing import sign_internal
from apps.common.service.settings import DEV_INTERNAL_SECRET
from devtools.procs import ROOT
from tests.gateway.auth_stack import AuthStack, admin, bearer

BIG = {"width": 2048, "height": 2048, "num_inference_steps": 100, "num_images": 4}
# A default FLUX job: 1024x1024 (1.048576 megapixels), 28 steps, one image.
DEFAULT = {"width": 1024, "height": 1024, "num_inference_steps": 28}
DEFAULT_COST = 29.3601


def key_id(auth_stack: AuthStack, token: str) -> str:
    return str(httpx.get(f"{auth_stack.gateway}/usage", headers=bearer(token)).json()["key"])


def report(auth_stack: AuthStack, task_id: str, event: str) -> None:
    """What a worker reports, signed, to the notifier (which meters a final state)."""
    notifier = auth_stack.notifier_ws.replace("ws://", "http://")
    body = json.dumps({"task_id": task_id, "event": event}).encode()
    answer = httpx.post(
        f"{notifier}/internal/events",
        content=body,
        headers={"content-type": "application/json", **sign_internal(body, DEV_INTERNAL_SECRET)},
    )
    assert answer.status_code == 200, answer.text


def test_a_job_over_the_limit_is_422_too_expensive_and_nothing_is_stored(
    auth_stack: AuthStack,
) -> None:
    token = auth_stack.new_key("too-expensive")
    refused = auth_stack.submit(token, **BIG)
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "too_expensive" and error["field"] == "num_images"
    assert "1677.7216" in error["message"] and "128" in error["message"]
    as_task = httpx.post(
        f"{auth_stack.gateway}/tasks",
        json={"type": "flux", "input": {"prompt": "a fox", **BIG}},
        headers=bearer(token),
    )
    assert as_task.status_code == 422
    assert as_task.json()["error"]["field"] == "input.num_images"
    listed = httpx.get(f"{auth_stack.gateway}/tasks", headers=bearer(token)).json()
    assert listed["tasks"] == []
    # The default limit lets a 1024x1024, 28-step, 4-image job through.
    allowed = auth_stack.submit(token, **DEFAULT, num_images=4)
    assert allowed.status_code == 202, allowed.text


def test_a_keys_max_cost_answers_429_too_much_work_until_a_job_ends(
    auth_stack: AuthStack,
) -> None:
    token = auth_stack.new_key("budgeted", rate="100/s", max_cost=60)
    first, second = (auth_stack.submit(token, **DEFAULT).json()["task_id"] for _ in range(2))
    view = httpx.get(f"{auth_stack.gateway}/tasks/{first}", headers=bearer(token)).json()
    assert view["cost"] == DEFAULT_COST
    refused = auth_stack.submit(token, **DEFAULT)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_much_work"
    assert "60" in refused.json()["error"]["message"]
    assert int(refused.headers["retry-after"]) >= 1
    # A small job still fits beside the two.
    assert auth_stack.submit(token).status_code == 202
    # The first runs and ends: its cost is freed, and charged; the second is canceled while
    # queued: freed, and not charged.
    report(auth_stack, first, "started")
    report(auth_stack, first, "succeeded")
    assert auth_stack.submit(token, **DEFAULT).status_code == 202
    cancel = httpx.post(f"{auth_stack.gateway}/tasks/{second}/cancel", headers=bearer(token))
    assert cancel.status_code == 202
    usage = httpx.get(f"{auth_stack.gateway}/usage", headers=bearer(token)).json()
    assert usage["totals"]["flux"]["jobs"] == 2
    assert usage["totals"]["flux"]["cost"] == DEFAULT_COST
    # One job bigger than the key's max_cost could never fit: refused outright, not "later".
    never = auth_stack.submit(token, **DEFAULT, num_images=3)
    assert never.status_code == 422
    assert never.json()["error"]["code"] == "too_expensive"
    assert "max_cost" in never.json()["error"]["message"]


def test_admins_set_and_change_max_cost_and_weight(auth_stack: AuthStack) -> None:
    created = httpx.post(
        f"{auth_stack.gateway}/admin/keys",
        json={"name": "weighted", "max_cost": 500, "weight": 2.5},
        headers=admin(),
    )
    assert created.status_code == 201, created.text
    key = created.json()
    assert key["max_cost"] == 500 and key["weight"] == 2.5
    plain = httpx.post(f"{auth_stack.gateway}/admin/keys", json={"name": "plain"}, headers=admin())
    assert plain.json()["max_cost"] is None and plain.json()["weight"] == 1.0

    url = f"{auth_stack.gateway}/admin/keys/{key['id']}"
    changed = httpx.patch(url, json={"weight": 4, "max_active": 7}, headers=admin())
    assert changed.status_code == 200, changed.text
    assert changed.json()["weight"] == 4 and changed.json()["max_active"] == 7
    assert changed.json()["max_cost"] == 500, "fields left out stay as they were"
    uncapped = httpx.patch(url, json={"max_cost": None, "rate": "10/s"}, headers=admin())
    assert uncapped.json()["max_cost"] is None and uncapped.json()["rate_per_s"] == 10
    listed = httpx.get(f"{auth_stack.gateway}/admin/keys", headers=admin()).json()
    assert next(k for k in listed if k["id"] == key["id"])["weight"] == 4

    for bad in ({"weight": 0}, {"weight": 1001}, {"max_cost": -1}, {"rate": "0/s"}, {"x": 1}):
        answer = httpx.patch(url, json=bad, headers=admin())
        assert answer.status_code == 422, (bad, answer.text)
        assert answer.json()["error"]["field"] == next(iter(bad)), (bad, answer.text)
    missing = httpx.patch(f"{url}-gone", json={"weight": 2}, headers=admin())
    assert missing.status_code == 404
    user = auth_stack.new_key("not-an-admin")
    assert httpx.patch(url, json={"weight": 9}, headers=bearer(user)).status_code == 401


def keyadmin(auth_stack: AuthStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "apps.gateway.keyadmin", *args],
        cwd=ROOT,
        env={**os.environ, "FLUXGATE_REDIS_URL": auth_stack.redis_url},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_keyadmin_creates_and_updates_max_cost_and_weight(auth_stack: AuthStack) -> None:
    made = keyadmin(auth_stack, "create", "--name", "cli", "--max-cost", "250", "--weight", "3")
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert key["max_cost"] == 250 and key["weight"] == 3
    # The key works, with its limits.
    assert auth_stack.submit(key["token"], **BIG).json()["error"]["code"] == "too_expensive"

    changed = keyadmin(auth_stack, "update", key["id"], "--weight", "0.5", "--max-cost", "none")
    assert changed.returncode == 0, changed.stderr
    updated = json.loads(changed.stdout)
    assert updated["weight"] == 0.5 and updated["max_cost"] is None
    assert updated["max_active"] == key["max_active"], "limits not given stay as they were"
    shown = next(
        k
        for k in httpx.get(f"{auth_stack.gateway}/admin/keys", headers=admin()).json()
        if k["id"] == key["id"]
    )
    assert shown["weight"] == 0.5 and shown["max_cost"] is None

    bad = keyadmin(auth_stack, "update", key["id"], "--weight", "0")
    assert bad.returncode == 2 and "weight" in bad.stderr
    gone = keyadmin(auth_stack, "update", "key_nope", "--weight", "2")
    assert gone.returncode == 1 and "no key" in gone.stderr
