"""Real inference server processes for the tests of this folder, and how to talk to them."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from devtools.procs import Proc, free_port, python_module, wait_http_ok


def inference_env(tmp: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUXGATE_")}
    env.update(
        {
            "FLUXGATE_INFERENCE_PORT": str(port),
            "FLUXGATE_MODEL_CACHE_DIR": str(tmp / "models"),
            "HF_HUB_OFFLINE": "1",
            **extra,
        }
    )
    return env


@contextmanager
def inference_server(tmp: Path, **env: str) -> Iterator[tuple[str, Proc]]:
    """A ready inference server with these `FLUXGATE_*` settings: its URL and process."""
    port = free_port()
    proc = Proc(
        "inference", python_module("apps.inference"), inference_env(tmp, port, **env), tmp / "log"
    ).start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{url}/readyz", timeout=180, proc=proc)
        yield url, proc
    finally:
        proc.stop()


def body(task: str, **fields: Any) -> dict[str, Any]:
    spec = {
        "prompt": f"prompt {task}",
        "width": 64,
        "height": 64,
        "num_inference_steps": 3,
        "seed": 1,
        **fields,
    }
    return {"task_id": task, "input": spec}


async def stream(
    client: httpx.AsyncClient, url: str, payload: dict[str, Any], stop_after_step: int | None = None
) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    async with client.stream("POST", f"{url}/v1/infer/flux", json=payload) as response:
        assert response.status_code == 200
        async for raw in response.aiter_lines():
            if raw.strip():
                lines.append(json.loads(raw))
                if stop_after_step is not None and lines[-1].get("step") == stop_after_step:
                    return lines  # closing the stream is how a caller leaves
    return lines
