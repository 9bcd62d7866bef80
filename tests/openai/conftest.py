"""A gateway with auth on and the OpenAI Images API, behind a real nginx front door, over the
session's stack (its worker, inference server and notifier run the jobs)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from devtools.procs import Proc, free_port, poll_until, python_module, wait_http_ok
from tests.conftest import INTERNAL_SECRET, Stack
from tests.gateway.auth_stack import ADMIN_TOKEN, admin, bearer
from tests.nginx.front import start_front_door

# Two steps of 100 ms: a job takes well under a second (OpenAI requests cannot name steps).
OPENAI_STEPS = 2
MODELS = ["flux", "dall-e-3"]


@dataclass
class OpenAIDoor:
    """The front door's URL, the gateway behind it, and the session's stack."""

    url: str
    gateway: str
    stack: Stack

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def new_key(self, name: str, **limits: object) -> str:
        answer = httpx.post(
            f"{self.gateway}/admin/keys",
            json={"name": name, "rate": "100/s", **limits},
            headers=admin(),
        )
        assert answer.status_code == 201, answer.text
        return str(answer.json()["token"])

    def client(self, key: str, **options: object) -> openai.OpenAI:
        # No retries: a test sees each answer as the server gave it.
        return openai.OpenAI(base_url=self.base_url, api_key=key, max_retries=0, **options)  # type: ignore[arg-type]

    def view(self, key: str, task_id: str) -> dict[str, object]:
        answer = httpx.get(f"{self.url}/tasks/{task_id}", headers=bearer(key), timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]

    def newest_task(self, key: str) -> dict[str, object]:
        """The key's latest task: a client that never got an answer learns its id nowhere else."""

        def listed() -> dict[str, object] | None:
            answer = httpx.get(f"{self.url}/tasks", headers=bearer(key), timeout=10)
            assert answer.status_code == 200, answer.text
            tasks = answer.json()["tasks"]
            return tasks[0] if tasks else None

        return poll_until(listed, timeout=10, what="the key's task to be listed")

    def wait_status(self, key: str, task_id: str, *statuses: str) -> dict[str, object]:
        def reached() -> dict[str, object] | None:
            view = self.view(key, task_id)
            return view if view["status"] in statuses else None

        return poll_until(reached, timeout=60, what=f"task {task_id} to reach {statuses}")


@pytest.fixture(scope="package")
def door(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenAIDoor]:
    tmp = Path(tmp_path_factory.mktemp("openai"))
    port, front_port = free_port(), free_port()
    env = {
        **stack.env,
        "FLUXGATE_GATEWAY_PORT": str(port),
        "FLUXGATE_AUTH": "true",
        "FLUXGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "FLUXGATE_OPENAI_STEPS": str(OPENAI_STEPS),
        "FLUXGATE_OPENAI_MODELS": ",".join(MODELS),
    }
    gateway = Proc("gateway-openai", python_module("apps.gateway"), env, tmp / "gateway.log")
    gateway.start()
    try:
        gateway_url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{gateway_url}/readyz", timeout=30, proc=gateway)
        nginx, url = start_front_door(
            tmp / "nginx",
            gateway=gateway_url,
            notifier=stack.notifier,
            internal_secret=INTERNAL_SECRET,
            port=front_port,
        )
        try:
            yield OpenAIDoor(url, gateway_url, stack)
        finally:
            nginx.stop()
    finally:
        gateway.stop()


@pytest.fixture
def key(door: OpenAIDoor, request: pytest.FixtureRequest) -> str:
    """A key of the test's own, so its tasks are its alone."""
    return door.new_key(request.node.name[:60])
