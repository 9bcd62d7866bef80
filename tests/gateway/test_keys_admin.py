"""The admin routes: creating, listing and revoking keys, rotating a key's webhook secret (and
signing with both during the overlap), and reading usage per key."""

from __future__ import annotations

import json

import httpx
import redis

from apps.common.redis import keys
from apps.common.security.signing import webhook_signature_valid
from tests.gateway.auth_stack import AuthStack, admin, bearer


def test_admin_routes_need_the_admin_token(auth_stack: AuthStack) -> None:
    user = auth_stack.new_key("user")
    assert httpx.get(f"{auth_stack.gateway}/admin/keys", headers=bearer(user)).status_code == 401
    listed = httpx.get(f"{auth_stack.gateway}/admin/keys", headers=admin()).json()
    assert any(k["name"] == "user" for k in listed)
    assert "token" not in json.dumps(listed) and "whsec_" not in json.dumps(listed)
    bad = httpx.post(
        f"{auth_stack.gateway}/admin/keys", json={"name": "x", "rate": "fast"}, headers=admin()
    )
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "rate"


def test_the_cap_on_active_jobs_has_one_name_in_and_out(auth_stack: AuthStack) -> None:
    """`max_active` is what the admin API answers, and what it takes (`max_queued`, the older
    name, is still read)."""
    for field in ("max_active", "max_queued"):
        created = httpx.post(
            f"{auth_stack.gateway}/admin/keys", json={"name": field, field: 7}, headers=admin()
        )
        assert created.status_code == 201, created.text
        assert created.json()["max_active"] == 7


def test_a_revoked_key_stops_working(auth_stack: AuthStack) -> None:
    token = auth_stack.new_key("short-lived")
    assert auth_stack.submit(token).status_code == 202
    key_id = next(
        k["id"]
        for k in httpx.get(f"{auth_stack.gateway}/admin/keys", headers=admin()).json()
        if k["name"] == "short-lived"
    )
    assert (
        httpx.delete(f"{auth_stack.gateway}/admin/keys/{key_id}", headers=admin()).status_code
        == 204
    )
    assert auth_stack.submit(token).status_code == 401


def test_webhook_secret_rotation_signs_with_both_during_overlap(auth_stack: AuthStack) -> None:
    auth_stack.new_key("hooks")
    key_id = next(
        k["id"]
        for k in httpx.get(f"{auth_stack.gateway}/admin/keys", headers=admin()).json()
        if k["name"] == "hooks"
    )
    rotate = f"{auth_stack.gateway}/admin/keys/{key_id}/webhook-secret"
    old = httpx.post(rotate, headers=admin()).json()["webhook_secret"]
    new = httpx.post(rotate, headers=admin()).json()["webhook_secret"]
    assert old != new and new.startswith("whsec_")
    # What the worker signs with for this key: both secrets, newest first.
    from apps.common.security.apikeys import ApiKey
    from apps.common.security.signing import sign_webhook

    client = redis.Redis.from_url(auth_stack.redis_url, decode_responses=True)
    digest = client.get(keys.apikey_id_key(key_id))
    stored = ApiKey.model_validate_json(client.get(keys.apikey_key(str(digest))))  # type: ignore[arg-type]
    assert stored.webhook_secrets("whsec_global") == [new, old]
    headers = sign_webhook("msg_1", b"{}", stored.webhook_secrets("whsec_global"))
    assert webhook_signature_valid(headers, b"{}", new) and webhook_signature_valid(
        headers, b"{}", old
    )


def test_usage_is_metered_per_key_and_readable_by_its_owner_and_the_admin(
    auth_stack: AuthStack,
) -> None:
    metered, other = auth_stack.new_key("metered"), auth_stack.new_key("other")
    for _ in range(2):
        task_id = auth_stack.submit(metered).json()["task_id"]
        cancel = httpx.post(f"{auth_stack.gateway}/tasks/{task_id}/cancel", headers=bearer(metered))
        assert cancel.status_code == 202, cancel.text

    own = httpx.get(f"{auth_stack.gateway}/usage", headers=bearer(metered)).json()
    assert own["totals"]["flux"]["jobs"] == 2
    assert own["totals"]["flux"]["canceled"] == 2
    assert own["totals"]["flux"]["compute_seconds"] == 0
    assert len(own["days"]) == 1
    assert httpx.get(f"{auth_stack.gateway}/usage", headers=bearer(other)).json()["totals"] == {}

    assert (
        httpx.get(f"{auth_stack.gateway}/admin/usage", headers=bearer(metered)).status_code == 401
    )
    everyone = httpx.get(f"{auth_stack.gateway}/admin/usage", headers=admin()).json()
    assert own in everyone["keys"]
    one = httpx.get(
        f"{auth_stack.gateway}/admin/usage", params={"key": own["key"]}, headers=admin()
    ).json()
    assert one["keys"] == [own]

    backwards = httpx.get(
        f"{auth_stack.gateway}/usage",
        params={"since": "2026-02-01", "until": "2026-01-01"},
        headers=bearer(metered),
    )
    assert backwards.status_code == 422
    assert backwards.json()["error"]["field"] == "since"
