"""Continuous batching (the default scheduler) through the inference server's HTTP API: a real
server process on the tiny model, each step slowed so that joins, leaves and turns can be seen."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from devtools.procs import poll_until
from tests.inference.servers import body, inference_server, stream

STEP_DELAY_MS = 40


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with inference_server(
        tmp_path_factory.mktemp("continuous"),
        FLUXGATE_INFERENCE_MAX_BATCH_SIZE="4",
        FLUXGATE_INFERENCE_STEP_DELAY_MS=str(STEP_DELAY_MS),
        # Every step may carry a preview here, so which steps do is decided by the request alone.
        FLUXGATE_INFERENCE_PREVIEW_INTERVAL_MS="0",
    ) as (url, _):
        yield url


def pixels(data_b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_b64))), dtype=np.int16)


def progress_steps(lines: list[dict[str, Any]]) -> list[int]:
    return [line["step"] for line in lines if line["type"] == "progress"]


async def reached(lines: list[dict[str, Any]], step: int) -> None:
    """Wait (polling, with a deadline) until a stream's lines include progress `step`."""
    for _ in range(2000):
        if any(line.get("step", -1) >= step for line in lines):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"step {step} never came: {lines}")


async def stream_into(
    client: httpx.AsyncClient, url: str, payload: dict[str, Any], lines: list[dict[str, Any]]
) -> None:
    """Like `stream`, but the lines are visible to the test while they arrive."""
    async with client.stream("POST", f"{url}/v1/infer/flux", json=payload) as response:
        assert response.status_code == 200
        async for raw in response.aiter_lines():
            if raw.strip():
                lines.append(json.loads(raw))


def test_requests_join_a_running_batch_and_make_the_image_they_make_alone(server: str) -> None:
    first = body("first", num_inference_steps=8, seed=1)
    joining = [
        body("second", num_inference_steps=3, seed=2, guidance_scale=7.0),
        body("pair", num_inference_steps=5, seed=3, num_images=2),
    ]

    async def main() -> list[list[dict[str, Any]]]:
        async with httpx.AsyncClient(timeout=60) as client:
            first_lines: list[dict[str, Any]] = []
            running = asyncio.create_task(stream_into(client, server, first, first_lines))
            await reached(first_lines, 2)  # the first request is two steps in
            others = await asyncio.gather(*(stream(client, server, p) for p in joining))
            await running
            return [first_lines, *others]

    together = asyncio.run(main())
    for payload, lines in zip([first, *joining], together, strict=True):
        total = payload["input"]["num_inference_steps"]
        assert progress_steps(lines) == list(range(total + 1)), "every step, in order"
        assert lines[-1]["type"] == "result"
    # The joiners shared model calls with the first request (and each other) although all
    # three have their own step counts: images per call, averaged over their calls.
    assert together[1][-1]["batch_size"] >= 3 and together[2][-1]["batch_size"] >= 3
    for payload, lines in zip([first, *joining], together, strict=True):
        alone = asyncio.run(_alone(server, payload))
        assert alone[-1]["batch_size"] == payload["input"].get("num_images", 1)
        for mine, theirs in zip(lines[-1]["images"], alone[-1]["images"], strict=True):
            diff = np.abs(pixels(mine["data_b64"]) - pixels(theirs["data_b64"]))
            assert diff.max() <= 1, (payload["task_id"], diff.max())


async def _alone(url: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=60) as client:
        return await stream(client, url, {**payload, "task_id": payload["task_id"] + "-alone"})


def test_a_caller_that_leaves_takes_its_rows_out_at_the_next_step(server: str) -> None:
    async def main() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=60) as client:
            staying: list[dict[str, Any]] = []
            stays = asyncio.create_task(
                stream_into(client, server, body("stays", num_inference_steps=60), staying)
            )
            leaver = body("leaves", num_inference_steps=60, num_images=2, seed=9)
            left = await stream(client, server, leaver, stop_after_step=2)
            assert progress_steps(left) == [0, 1, 2]

            def one_row_runs() -> bool:
                load = httpx.get(f"{server}/load").json()
                assert not stays.done(), "the other request ended first"
                return bool(load["running"] == 1)

            await asyncio.to_thread(
                poll_until, one_row_runs, timeout=20, what="the leaver's 2 rows gone"
            )
            await stays
            return staying

    staying = asyncio.run(main())
    assert staying[-1]["type"] == "result"
    assert progress_steps(staying) == list(range(61))
    load = httpx.get(f"{server}/load").json()
    assert (load["running"], load["queued"], load["capacity"]) == (0, 0, 4)


def test_a_small_request_waits_only_a_few_steps_of_a_big_one(server: str) -> None:
    async def main() -> tuple[list[dict[str, Any]], int]:
        async with httpx.AsyncClient(timeout=60) as client:
            big_lines: list[dict[str, Any]] = []
            big = body("big", width=256, height=256, num_inference_steps=100)
            running = asyncio.create_task(stream_into(client, server, big, big_lines))
            await reached(big_lines, 2)
            before = max(progress_steps(big_lines))
            small = await stream(client, server, body("small", num_inference_steps=3, seed=4))
            during = max(progress_steps(big_lines)) - before
            running.cancel()  # the big one is not needed any more
            await asyncio.gather(running, return_exceptions=True)
            return small, during

    small, big_steps_during_small = asyncio.run(main())
    assert small[-1]["type"] == "result"
    # The bound: the big call in flight when the small one arrived, then at most one big call
    # between two of the small one's steps (a call of either takes about the step delay here);
    # one more each for the big step that may pass while the small request connects and for a
    # progress line still on its way. Window batching: all ~98 remaining steps.
    assert big_steps_during_small <= 5, big_steps_during_small


def test_previews_come_only_when_asked_and_are_small_webp_images(server: str) -> None:
    payloads = [
        body("timed", preview=True, width=128, num_inference_steps=4),
        body("every-2", preview_every_n_steps=2, num_inference_steps=6, seed=2),
        body("none", num_inference_steps=4, seed=3),
    ]

    async def main() -> list[list[dict[str, Any]]]:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*(stream(client, server, p) for p in payloads))

    timed, every_2, none = asyncio.run(main())

    def previews(lines: list[dict[str, Any]]) -> dict[int, str]:
        return {ln["step"]: ln["preview_b64"] for ln in lines if ln.get("preview_b64")}

    # Not at step 0 (nothing computed yet) nor at the last step (the image itself follows).
    assert sorted(previews(timed)) == [1, 2, 3]
    assert sorted(previews(every_2)) == [2, 4]
    assert previews(none) == {} and all(ln["type"] != "error" for ln in none)
    for data in [*previews(timed).values(), *previews(every_2).values()]:
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        assert image.format == "WEBP"
    sizes = {Image.open(io.BytesIO(base64.b64decode(d))).size for d in previews(timed).values()}
    assert sizes == {(16, 8)}, "the latents' resolution: 1/8 of 128x64"


def test_load_counts_running_and_queued_images(server: str) -> None:
    async def main() -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            tasks = [
                asyncio.create_task(
                    stream(client, server, body(f"l{i}", num_inference_steps=80, seed=i))
                )
                for i in range(5)
            ]

            def four_run_one_waits() -> bool:
                load = httpx.get(f"{server}/load").json()
                return bool((load["running"], load["queued"]) == (4, 1))

            await asyncio.to_thread(
                poll_until, four_run_one_waits, timeout=30, what="a full group and one waiting"
            )
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())

    def idle() -> bool:
        load = httpx.get(f"{server}/load").json()
        return bool((load["running"], load["queued"]) == (0, 0))

    poll_until(idle, timeout=20, what="the leavers' rows gone")


def test_out_of_memory_splits_the_running_rows(tmp_path: Path) -> None:
    with inference_server(
        tmp_path,
        FLUXGATE_INFERENCE_MAX_BATCH_SIZE="4",
        FLUXGATE_INFERENCE_TEST_OOM_ABOVE_ROWS="2",
        FLUXGATE_INFERENCE_STEP_DELAY_MS="150",
    ) as (url, proc):
        payloads = [body(f"o{i}", seed=i, num_inference_steps=4) for i in range(4)]
        payloads.append(body("too-big", width=128, num_images=3))

        async def main() -> list[list[dict[str, Any]]]:
            async with httpx.AsyncClient(timeout=60) as client:
                return await asyncio.gather(*(stream(client, url, p) for p in payloads))

        *fitting, too_big = asyncio.run(main())
        assert all(lines[-1]["type"] == "result" for lines in fitting)
        assert all(lines[-1]["batch_size"] <= 2 for lines in fitting)
        assert too_big[-1]["type"] == "error" and too_big[-1]["code"] == "out_of_memory"
        poll_until(
            lambda: "splitting the step group" in proc.log_tail(400),
            timeout=10,
            what="the split in the log",
        )
