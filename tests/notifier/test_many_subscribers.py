"""Hundreds of WebSocket subscriptions arriving at once are all served (none refused because
the notifier ran out of Redis connections)."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.client import connect

from tests.conftest import Stack

SUBSCRIBERS = 400


async def _snapshot(url: str) -> dict[str, object]:
    async with connect(url, compression=None, open_timeout=30) as ws:
        return json.loads(await asyncio.wait_for(ws.recv(), timeout=30))  # type: ignore[no-any-return]


def test_a_burst_of_subscribers_all_get_their_snapshot(stack: Stack) -> None:
    job = stack.submit(num_inference_steps=1, width=64, height=64)
    url = str(job["urls"]["ws"])  # type: ignore[index]

    async def burst() -> list[dict[str, object] | BaseException]:
        return await asyncio.gather(
            *(_snapshot(url) for _ in range(SUBSCRIBERS)), return_exceptions=True
        )

    answers = asyncio.run(burst())
    failures = [a for a in answers if isinstance(a, BaseException)]
    assert failures == [], f"{len(failures)} of {SUBSCRIBERS} failed, e.g. {failures[:3]}"
    assert {a["task_id"] for a in answers if isinstance(a, dict)} == {job["task_id"]}
    assert all(a["event"] == "snapshot" for a in answers if isinstance(a, dict))
