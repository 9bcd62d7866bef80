"""A second gateway with every compat surface on, over the session's stack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.procs import Proc, free_port, python_module, wait_http_ok
from tests.conftest import Stack


@pytest.fixture(scope="module")
def compat(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {**stack.env, "FLUXGATE_GATEWAY_PORT": str(port), "FLUXGATE_COMPAT": "all"}
    log = Path(tmp_path_factory.mktemp("compat")) / "gateway.log"
    gateway = Proc("gateway-compat", python_module("apps.gateway"), env, log).start()
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/readyz", timeout=30, proc=gateway)
        yield f"http://127.0.0.1:{port}"
    finally:
        gateway.stop()
