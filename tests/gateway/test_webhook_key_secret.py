"""With auth on, a key's own webhook secret signs its tasks' webhooks: a real webhooks-only
Celery worker on the auth stack delivers the `task.canceled` message the gateway's cancel
queues (the stack's jobs stay queued: the worker takes no job queue)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from apps.common.security.signing import webhook_signature_valid
from apps.common.service.settings import DEV_WEBHOOK_SECRET
from apps.common.wire.queues import QUEUE_WEBHOOKS
from devtools.procs import Proc, python_module
from tests.gateway.auth_stack import AuthStack, admin, bearer
from tests.webhook_receiver import Delivery, WebhookReceiver

# The auth stack sets no FLUXGATE_WEBHOOK_SECRET: the global secret is the dev one.
GLOBAL_SECRET = DEV_WEBHOOK_SECRET


@pytest.fixture(scope="module")
def webhook_worker(
    auth_stack: AuthStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proc]:
    env = dict(auth_stack.procs["gateway"].env)
    log = tmp_path_factory.mktemp("webhook-worker") / "worker.log"
    args = python_module("apps.worker", "--queues", QUEUE_WEBHOOKS, "--concurrency", "1")
    worker = Proc("webhook-worker", args, env, log).start()
    yield worker
    worker.stop()


def new_key(auth_stack: AuthStack, name: str) -> tuple[str, str]:
    """A new key's id and token."""
    response = httpx.post(f"{auth_stack.gateway}/admin/keys", json={"name": name}, headers=admin())
    assert response.status_code == 201, response.text
    return str(response.json()["id"]), str(response.json()["token"])


def canceled_webhook(auth_stack: AuthStack, receiver: WebhookReceiver, token: str) -> Delivery:
    """Submit a job with a webhook, cancel it, and return the `task.canceled` delivery."""
    path = f"key-{uuid.uuid4().hex[:8]}"
    submitted = auth_stack.submit(token, webhook_url=receiver.url(path))
    assert submitted.status_code == 202, submitted.text
    task_id = submitted.json()["task_id"]
    cancel = httpx.post(f"{auth_stack.gateway}/tasks/{task_id}/cancel", headers=bearer(token))
    assert cancel.status_code == 202, cancel.text
    [delivery] = receiver.wait_for(path, 1, timeout=60)
    assert delivery.body["type"] == "task.canceled"
    assert delivery.body["data"]["task_id"] == task_id
    return delivery


def test_a_keys_own_webhook_secret_signs_its_webhooks(
    auth_stack: AuthStack, receiver: WebhookReceiver, webhook_worker: Proc
) -> None:
    key_id, token = new_key(auth_stack, f"own-secret-{uuid.uuid4().hex[:6]}")
    rotate = f"{auth_stack.gateway}/admin/keys/{key_id}/webhook-secret"
    old = httpx.post(rotate, headers=admin()).json()["webhook_secret"]
    new = httpx.post(rotate, headers=admin()).json()["webhook_secret"]
    _, plain = new_key(auth_stack, f"global-secret-{uuid.uuid4().hex[:6]}")
    try:
        own = canceled_webhook(auth_stack, receiver, token)
        fallback = canceled_webhook(auth_stack, receiver, plain)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- worker log ---\n{webhook_worker.log_tail()}") from None

    assert webhook_signature_valid(own.headers, own.raw, new), "signed with the key's newest secret"
    assert webhook_signature_valid(own.headers, own.raw, old), "and with its previous one (overlap)"
    assert not webhook_signature_valid(own.headers, own.raw, GLOBAL_SECRET), (
        "not with the global one"
    )
    # A key without a secret of its own falls back to the global one (the same the worker has).
    assert webhook_signature_valid(fallback.headers, fallback.raw, GLOBAL_SECRET)
    assert not webhook_signature_valid(fallback.headers, fallback.raw, new)
