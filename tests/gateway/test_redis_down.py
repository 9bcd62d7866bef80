"""A gateway whose Redis is gone answers 503 `unavailable`, never 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devtools.procs import Proc, free_port, python_module, stack_env, wait_http_ok


@pytest.fixture
def orphan_gateway(tmp_path: Path) -> Iterator[str]:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    port = free_port()
    ports = {
        "gateway": port,
        "notifier": free_port(),
        "balancer": free_port(),
        "inference": free_port(),
    }
    proc = Proc(
        "gateway",
        python_module("apps.gateway"),
        stack_env(dead_redis, tmp_path, ports),
        tmp_path / "gateway.log",
    ).start()
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", timeout=30, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


def test_submit_and_status_are_503_when_redis_is_down(orphan_gateway: str) -> None:
    submit = httpx.post(f"{orphan_gateway}/flux", json={"prompt": "a fox"}, timeout=15)
    assert submit.status_code == 503
    assert submit.json()["error"]["code"] == "unavailable"
    assert submit.headers["retry-after"] == "1"
    status = httpx.get(f"{orphan_gateway}/tasks/abc", timeout=15)
    assert status.status_code == 503
    ready = httpx.get(f"{orphan_gateway}/readyz", timeout=15)
    assert ready.status_code == 503
