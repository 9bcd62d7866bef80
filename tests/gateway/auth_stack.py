"""A gateway and notifier with auth on and no worker (submitted jobs stay queued), shared by the
tests of keys, admission and the OpenAPI document; the `auth_stack` fixture is in conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from devtools.procs import Proc, free_port, python_module, stack_env, start_redis, wait_http_ok

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
# The one browser origin the stack's CORS lets in.
CORS_ORIGIN = "https://app.example"
FLUX = {"prompt": "a fox", "width": 64, "height": 64, "num_inference_steps": 1}


@dataclass
class AuthStack:
    gateway: str
    notifier_ws: str
    redis_url: str
    procs: dict[str, Proc]
    # Its redis-server, for tests that take it away for a while.
    redis: Proc

    def new_key(self, name: str, **limits: object) -> str:
        response = httpx.post(
            f"{self.gateway}/admin/keys", json={"name": name, **limits}, headers=admin()
        )
        assert response.status_code == 201, response.text
        return str(response.json()["token"])

    def submit(self, token: str, **body: object) -> httpx.Response:
        return httpx.post(f"{self.gateway}/flux", json={**FLUX, **body}, headers=bearer(token))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def admin() -> dict[str, str]:
    return bearer(ADMIN_TOKEN)


def start_auth_stack(tmp: Path, *, relay_events: bool = False) -> Iterator[AuthStack]:
    """Gateway and notifier with auth on and no worker: submitted jobs stay queued. The gateway
    reaches the notifier (for `GET /tasks/{id}/events`) only with `relay_events`."""
    redis_proc, redis_url = start_redis(tmp)
    ports = {name: free_port() for name in ("gateway", "notifier", "balancer", "inference")}
    env = {
        **stack_env(redis_url, tmp, ports),
        "FLUXGATE_AUTH": "true",
        "FLUXGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "FLUXGATE_WEBHOOK_ALLOW": "loopback",
        "FLUXGATE_CORS_ORIGINS": CORS_ORIGIN,
    }
    if not relay_events:
        # Nothing answers there: `Prefer: wait` falls back to 202 at once.
        env["FLUXGATE_NOTIFIER_URL"] = f"http://127.0.0.1:{free_port()}"
    procs = {
        name: Proc(name, python_module(f"apps.{name}"), env, tmp / f"{name}.log").start()
        for name in ("gateway", "notifier")
    }
    try:
        for name in procs:
            wait_http_ok(f"http://127.0.0.1:{ports[name]}/readyz", timeout=60, proc=procs[name])
        yield AuthStack(
            f"http://127.0.0.1:{ports['gateway']}",
            f"ws://127.0.0.1:{ports['notifier']}",
            redis_url,
            procs,
            redis_proc,
        )
    finally:
        for proc in procs.values():
            proc.stop()
        redis_proc.stop()
