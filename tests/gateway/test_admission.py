"""What a key may submit, over HTTP: its rate (429 `rate_limited`), its cap of active jobs
(429 `too_many_jobs`), and Idempotency-Keys (a replay spends no rate; a key still being accepted
asks for a retry)."""

from __future__ import annotations

import json
import uuid

import httpx
import redis

from apps.common.redis import keys
from apps.common.wire.contracts import FluxRequest
from apps.gateway.idempotency import digest as idempotency_digest
from apps.gateway.jobs_in import flux_job
from tests.gateway.auth_stack import FLUX, AuthStack, bearer


def test_rate_limit_answers_429_with_retry_after(auth_stack: AuthStack) -> None:
    token = auth_stack.new_key("slow", rate="1/m", burst=2)
    assert [auth_stack.submit(token).status_code for _ in range(2)] == [202, 202]
    limited = auth_stack.submit(token)
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60


def test_an_idempotent_replay_spends_no_rate(auth_stack: AuthStack) -> None:
    token = auth_stack.new_key("replayer", rate="1/m", burst=1)
    key = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    first = httpx.post(f"{auth_stack.gateway}/flux", json=FLUX, headers={**bearer(token), **key})
    assert first.status_code == 202
    replay = httpx.post(f"{auth_stack.gateway}/flux", json=FLUX, headers={**bearer(token), **key})
    assert replay.status_code == 200 and replay.json()["task_id"] == first.json()["task_id"]
    assert auth_stack.submit(token).status_code == 429, "a new job still meets the limit"


def test_active_job_cap_answers_429_until_one_ends(auth_stack: AuthStack) -> None:
    token = auth_stack.new_key("capped", rate="100/s", max_queued=2)
    first, _second = (auth_stack.submit(token).json()["task_id"] for _ in range(2))
    refused = auth_stack.submit(token)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_jobs"
    assert int(refused.headers["retry-after"]) >= 1
    httpx.post(f"{auth_stack.gateway}/tasks/{first}/cancel", headers=bearer(token))
    assert auth_stack.submit(token).status_code == 202


def test_a_key_still_being_accepted_answers_retry_not_conflict(auth_stack: AuthStack) -> None:
    """Another request holds the Idempotency-Key but its job is not written yet: the answer
    must say "retry shortly", distinct from a key reused with another body."""
    token = auth_stack.new_key("in-progress")
    owner = httpx.get(f"{auth_stack.gateway}/usage", headers=bearer(token)).json()["key"]
    # What POST /flux binds a key to (the fingerprint the route computes).
    body = flux_job(FluxRequest.model_validate(FLUX)).idempotency_body
    claim = {"task_id": str(uuid.uuid4()), "body": idempotency_digest(body)}
    client = redis.Redis.from_url(auth_stack.redis_url)
    client.set(keys.idempotency_key(owner, idempotency_digest("held-key")), json.dumps(claim))
    held = httpx.post(
        f"{auth_stack.gateway}/flux",
        json=FLUX,
        headers={**bearer(token), "Idempotency-Key": "held-key"},
        timeout=10,
    )
    assert held.status_code == 409
    assert held.json()["error"]["code"] == "idempotency_in_progress"
    assert held.headers["retry-after"] == "1"
    other_body = httpx.post(
        f"{auth_stack.gateway}/flux",
        json={**FLUX, "prompt": "something else"},
        headers={**bearer(token), "Idempotency-Key": "held-key"},
        timeout=10,
    )
    assert other_body.status_code == 409
    assert other_body.json()["error"]["code"] == "conflict"
