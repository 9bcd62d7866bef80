"""The subscriber side of `benchmarks/fanout.py`, in its own process: N WebSocket subscribers
per task; prints READY once every socket has its snapshot, then records when each one receives
its task's final view and writes the receive times to a JSON file."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import time
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect

FINAL = {"succeeded", "failed", "canceled", "expired"}


async def subscriber(
    url: str, ready: asyncio.Semaphore, connected: list[int], received: list[float]
) -> None:
    async with ready:  # connect a few hundred at a time, as real clients trickle in
        ws: ClientConnection = await connect(url, compression=None, open_timeout=60)
    try:
        snapshot = json.loads(await ws.recv())
        connected[0] += 1
        if snapshot["status"] in FINAL:
            return
        while True:
            view = json.loads(await ws.recv())
            if view["status"] in FINAL:
                received.append(time.time())
                return
    finally:
        await ws.close()


async def main_async(args: argparse.Namespace, task_ids: list[str]) -> dict[str, object]:
    connected = [0]
    received: list[float] = []
    gate = asyncio.Semaphore(200)
    subscribers = [
        asyncio.create_task(subscriber(f"{args.ws}/ws/tasks/{task_id}", gate, connected, received))
        for task_id in task_ids
        for _ in range(args.per_task)
    ]
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        # Ready once every subscriber has its snapshot or has given up (a failed connect).
        failed = sum(1 for s in subscribers if s.done() and s.exception() is not None)
        if connected[0] + failed >= len(subscribers):
            break
        await asyncio.sleep(0.05)
    # The 10,000 sockets' objects live until the end: keep the collector from walking them
    # while the final views arrive, so the receive times are the servers', not our GC's.
    gc.freeze()
    print(f"READY {connected[0]}", flush=True)
    done, pending = await asyncio.wait(subscribers, timeout=args.timeout)
    errors = [repr(t.exception()) for t in done if t.exception() is not None][:5]
    for task in pending:
        task.cancel()
    return {"connected": connected[0], "received": received, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ws", required=True)
    parser.add_argument("--tasks", required=True)
    parser.add_argument("--per-task", type=int, default=100)
    parser.add_argument("--out", required=True)
    parser.add_argument("--timeout", type=float, default=240)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    task_ids = json.loads(Path(args.tasks).read_text())
    outcome = asyncio.run(main_async(args, task_ids))
    Path(args.out).write_text(json.dumps(outcome))


if __name__ == "__main__":
    main()
