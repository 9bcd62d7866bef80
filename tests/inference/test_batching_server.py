"""The inference server's window batching (`FLUXGATE_INFERENCE_SCHEDULER=window`), through its
HTTP API (real server, tiny model)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.procs import Proc, free_port, poll_until, python_module, wait_http_ok
from tests.inference.servers import body, inference_env, inference_server, stream

MAX_WAIT_MS = 300
STEP_DELAY_MS = 60


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with inference_server(
        tmp_path_factory.mktemp("batching"),
        FLUXGATE_INFERENCE_SCHEDULER="window",
        FLUXGATE_INFERENCE_MAX_BATCH_SIZE="4",
        FLUXGATE_INFERENCE_MAX_WAIT_MS=str(MAX_WAIT_MS),
        FLUXGATE_INFERENCE_BATCH_GAP_MS=str(MAX_WAIT_MS),
        FLUXGATE_INFERENCE_STEP_DELAY_MS=str(STEP_DELAY_MS),
    ) as (url, _):
        yield url


def run_all(
    url: str, payloads: list[dict[str, Any]], stop_after: dict[int, int] | None = None
) -> list[list[dict[str, Any]]]:
    async def main() -> list[list[dict[str, Any]]]:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(
                *(stream(client, url, p, (stop_after or {}).get(i)) for i, p in enumerate(payloads))
            )

    return asyncio.run(main())


# A request no other one can share a batch with (its own size and step count).
HOLD = body("hold", width=192, height=192, num_inference_steps=100)


def run_held(
    url: str, payloads: list[dict[str, Any]], stop_after: dict[int, int] | None = None
) -> list[list[dict[str, Any]]]:
    """Run `payloads` once all of them wait: the engine is held by a request of its own until
    the server counts them queued, so which batches form does not depend on arrival timing."""

    async def main() -> list[list[dict[str, Any]]]:
        async with httpx.AsyncClient(timeout=60) as client:
            async with client.stream("POST", f"{url}/v1/infer/flux", json=HOLD) as held:
                assert held.status_code == 200
                lines = held.aiter_lines()
                assert json.loads(await anext(lines))["step"] == 0, "the engine is held"
                others = asyncio.gather(
                    *(
                        stream(client, url, p, (stop_after or {}).get(i))
                        for i, p in enumerate(payloads)
                    )
                )
                deadline = time.monotonic() + 20
                while (await client.get(f"{url}/load")).json()["queued"] < len(payloads):
                    assert time.monotonic() < deadline, "the requests never queued"
                    await asyncio.sleep(0.02)
            # Leaving lets the engine go at its next step; then the queued requests batch.
            return await others

    return asyncio.run(main())


def test_compatible_requests_share_one_batch(server: str) -> None:
    results = run_held(server, [body(f"same-{i}", seed=i) for i in range(4)])
    finals = [lines[-1] for lines in results]
    assert all(f["type"] == "result" for f in finals)
    assert [f["batch_size"] for f in finals] == [4, 4, 4, 4]
    assert len({f["images"][0]["data_b64"] for f in finals}) == 4, "each keeps its own seed"


def test_incompatible_requests_form_separate_batches(server: str) -> None:
    payloads = [
        body("a1"),
        body("a2", seed=2),
        body("b1", width=128),
        body("c1", num_inference_steps=2),
    ]
    finals = [lines[-1] for lines in run_held(server, payloads)]
    assert [f["batch_size"] for f in finals] == [2, 2, 1, 1]


def test_progress_arrives_in_order_for_every_request(server: str) -> None:
    for lines in run_all(server, [body(f"p-{i}", num_inference_steps=4) for i in range(3)]):
        steps = [line["step"] for line in lines if line["type"] == "progress"]
        assert steps == [0, 1, 2, 3, 4], "step 0 first: the server took the request"
        assert lines[-1]["type"] == "result"


def test_a_request_that_leaves_does_not_stop_its_batch(server: str) -> None:
    payloads = [body(f"stay-{i}", num_inference_steps=6, seed=i) for i in range(3)]
    results = run_held(server, payloads, stop_after={0: 2})
    assert [line["step"] for line in results[0]] == [0, 1, 2]
    for lines in results[1:]:
        assert lines[-1]["type"] == "result" and lines[-1]["batch_size"] == 3
        assert [line["step"] for line in lines if line["type"] == "progress"] == list(range(7))
    load = httpx.get(f"{server}/load").json()
    assert load["running"] == 0 and load["queued"] == 0 and load["capacity"] == 4


def test_unknown_model_is_404_and_bad_body_422(server: str) -> None:
    response = httpx.post(f"{server}/v1/infer/sdxl", json=body("m"))
    assert response.status_code == 404
    response = httpx.post(f"{server}/v1/infer/flux", json={"task_id": "x", "input": {}})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "input.prompt"


def test_ready_only_after_warm_up(tmp_path: Path) -> None:
    port = free_port()
    # A slow step makes the warm-up long enough to be seen.
    env = inference_env(tmp_path, port, FLUXGATE_INFERENCE_STEP_DELAY_MS="2500")
    proc = Proc(
        "inference", python_module("apps.inference"), env, tmp_path / "inference.log"
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{url}/healthz", timeout=60, proc=proc)
        before = httpx.get(f"{url}/readyz")
        assert before.status_code == 503
        assert before.json()["error"]["code"] == "unavailable"
        poll_until(
            lambda: "warm-up done" in proc.log_tail(200), timeout=120, what="warm-up", watch=[proc]
        )
        wait_http_ok(f"{url}/readyz", timeout=30, proc=proc)
    finally:
        proc.stop()
