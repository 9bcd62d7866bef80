"""Does the platform waste the GPU it fronts? Images/s at saturation through the whole stack
(submit -> WebSocket result) against the SAME inference server driven directly, same batch
settings, alternating rounds on one running stack. 256x256, 4 steps, tiny FLUX on the CPU.

On this 2-core machine the platform's processes (gateway, worker, balancer, notifier, redis)
share the cores with the inference server, so every CPU cycle they use is taken from the model;
on a GPU host they would not compete. Goal (docs/benchmarks.md): stack >= 0.85x direct.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine, write_result
from devtools.procs import start_redis, start_stack, wait_stack_ready

FINAL = {"succeeded", "failed", "canceled", "expired"}
BODY = {"prompt": "a red fox", "width": 256, "height": 256, "num_inference_steps": 4}


async def direct_job(client: httpx.AsyncClient, inference: str) -> bool:
    request = {"task_id": str(uuid.uuid4()), "input": {**BODY, "seed": 7}}
    async with client.stream("POST", f"{inference}/v1/infer/flux", json=request) as response:
        async for line in response.aiter_lines():
            if line and json.loads(line).get("type") == "result":
                return True
    return False


async def stack_job(client: httpx.AsyncClient, gateway: str) -> bool:
    answer = await client.post(f"{gateway}/flux", json=BODY)
    answer.raise_for_status()
    view: dict[str, Any] = {}
    async with connect(answer.json()["urls"]["ws"], compression=None) as ws:
        while view.get("status") not in FINAL:
            view = json.loads(await ws.recv())
    return view["status"] == "succeeded"


async def saturate(job: Any, target: str, concurrency: int, seconds: float) -> float:
    """Images per second with `concurrency` clients each running jobs back to back."""
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        await asyncio.gather(*(job(client, target) for _ in range(concurrency)))  # warm-up
        done = 0
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()

        async def loop() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                if await job(client, target):
                    done += 1

        await asyncio.gather(*(loop() for _ in range(concurrency)))
        return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="per round (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--concurrency", type=int, default=12, help="clients (default 12)")
    args = parser.parse_args()

    direct: list[float] = []
    stacked: list[float] = []
    with tempfile.TemporaryDirectory(prefix="fluxgate-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        redis_proc, redis_url = start_redis(tmp)
        ports, _env, procs = start_stack(redis_url, tmp, worker_concurrency=args.concurrency)
        try:
            wait_stack_ready(ports, procs)
            gateway = f"http://127.0.0.1:{ports['gateway']}"
            inference = f"http://127.0.0.1:{ports['inference']}"
            for round_index in range(args.rounds):
                direct.append(
                    asyncio.run(saturate(direct_job, inference, args.concurrency, args.seconds))
                )
                stacked.append(
                    asyncio.run(saturate(stack_job, gateway, args.concurrency, args.seconds))
                )
                print(
                    f"round {round_index + 1}: direct {direct[-1]:.2f} img/s, "
                    f"stack {stacked[-1]:.2f} img/s"
                )
        finally:
            for proc in procs.values():
                proc.stop()
            redis_proc.stop()

    direct_median, stack_median = statistics.median(direct), statistics.median(stacked)
    ratio = round(stack_median / direct_median, 3)
    print(f"median: direct {direct_median:.2f}, stack {stack_median:.2f} img/s -> {ratio}x")
    path = write_result(
        "efficiency",
        {
            "stack_images_per_s": round(stack_median, 2),
            "direct_images_per_s": round(direct_median, 2),
            "ratio": ratio,
            "rounds": {"direct": direct, "stack": stacked},
            "machine": machine(),
            "params": {
                "width": 256,
                "height": 256,
                "steps": 4,
                "concurrency": args.concurrency,
                "seconds": args.seconds,
                "rounds": args.rounds,
                "auth": False,
                "model": "tiny-flux",
            },
        },
    )
    print(f"goal: stack >= 0.85x direct -> wrote {path}")


if __name__ == "__main__":
    main()
