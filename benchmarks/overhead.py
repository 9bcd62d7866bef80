"""Platform overhead: submit -> WebSocket `succeeded` minus the model's own compute time.

64x64, 2-step jobs arrive at a fixed rate (open loop: 20 jobs/s for 60 s by default), each
followed on its WebSocket from the moment its submit answers. Overhead is everything that is not
the pipeline call: the submit, the queue, the worker, the balancer, the batch wait, storing the
image, the events and the push. A per-hop breakdown comes from the job view's `timings`:

  gateway   POST /flux answered                      (client clock)
  queued    record created -> `started` recorded     (queue wait + pickup + the started event)
  running-  start -> work done, minus model compute  (balancer, batch wait, storing, progress)
  delivery  work done -> final state published       (the event hop through the notifier)
  push      the rest: publish -> the client's socket

Goal (docs/benchmarks.md): overhead p50 <= 10 ms, p99 <= 40 ms, no failed job.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine, summary_ms, write_result
from devtools.procs import start_redis, start_stack, wait_stack_ready

FINAL = {"succeeded", "failed", "canceled", "expired"}
BODY = {"prompt": "a red fox", "width": 64, "height": 64, "num_inference_steps": 2}


async def one_job(client: httpx.AsyncClient, gateway: str) -> dict[str, Any]:
    started = time.perf_counter()
    answer = await client.post(f"{gateway}/flux", json=BODY)
    submitted = time.perf_counter()
    answer.raise_for_status()
    view: dict[str, Any] = {}
    async with connect(answer.json()["urls"]["ws"], compression=None) as ws:
        while view.get("status") not in FINAL:
            view = json.loads(await ws.recv())
    finished = time.perf_counter()
    return {
        "status": view["status"],
        "total_ms": (finished - started) * 1000,
        "gateway_ms": (submitted - started) * 1000,
        "compute_ms": float((view.get("result") or {}).get("timings", {}).get("compute_ms", 0)),
        "timings": view["timings"],
    }


async def drive(gateway: str, rate: float, seconds: float) -> list[dict[str, Any]]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        for _ in range(5):  # warm-up: connections, the model's first batches
            await one_job(client, gateway)
        jobs = []
        begin = time.perf_counter()
        for index in range(int(rate * seconds)):
            # Open loop: the next arrival does not wait for earlier jobs to finish.
            await asyncio.sleep(max(0.0, begin + index / rate - time.perf_counter()))
            jobs.append(asyncio.create_task(one_job(client, gateway)))
        return await asyncio.gather(*jobs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=20.0, help="jobs per second (default 20)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long (default 60)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fluxgate-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        redis_proc, redis_url = start_redis(tmp)
        ports, _env, procs = start_stack(
            redis_url, tmp, extra_env={"FLUXGATE_WORKER_CONCURRENCY": "8"}, worker_concurrency=8
        )
        try:
            wait_stack_ready(ports, procs)
            gateway = f"http://127.0.0.1:{ports['gateway']}"
            results = asyncio.run(drive(gateway, args.rate, args.seconds))
        finally:
            for proc in procs.values():
                proc.stop()
            redis_proc.stop()

    done = [r for r in results if r["status"] == "succeeded"]
    failed = len(results) - len(done)
    overhead = [r["total_ms"] - r["compute_ms"] for r in done]
    hops = {
        "gateway": [r["gateway_ms"] for r in done],
        "queued": [r["timings"]["queued_ms"] or 0.0 for r in done],
        "running - compute": [
            max(0.0, (r["timings"]["running_ms"] or 0.0) - r["compute_ms"]) for r in done
        ],
        "delivery": [r["timings"]["delivery_ms"] or 0.0 for r in done],
        "compute (not overhead)": [r["compute_ms"] for r in done],
    }
    hops["push (the rest)"] = [
        max(
            0.0,
            r["total_ms"]
            - r["gateway_ms"]
            - (r["timings"]["queued_ms"] or 0.0)
            - (r["timings"]["running_ms"] or 0.0)
            - (r["timings"]["delivery_ms"] or 0.0),
        )
        for r in done
    ]
    total = summary_ms(overhead)
    print(
        f"{len(results)} jobs at {args.rate}/s for {args.seconds:.0f} s, 64x64, 2 steps; "
        f"{failed} failed"
    )
    print(f"{'ms':<26}{'p50':>8}{'p95':>8}{'p99':>8}")
    print(f"{'overhead (total-compute)':<26}{total['p50']:>8}{total['p95']:>8}{total['p99']:>8}")
    breakdown = {}
    for label, values in hops.items():
        stats = summary_ms(values)
        breakdown[label] = stats
        print(f"  {label:<24}{stats['p50']:>8}{stats['p95']:>8}{stats['p99']:>8}")
    path = write_result(
        "overhead",
        {
            "overhead_p50_ms": total["p50"],
            "overhead_p99_ms": total["p99"],
            "jobs": len(results),
            "failed": failed,
            "breakdown_ms": breakdown,
            "machine": machine(),
            "params": {
                "rate_per_s": args.rate,
                "seconds": args.seconds,
                "width": 64,
                "height": 64,
                "steps": 2,
                "worker_concurrency": 8,
                "auth": False,
            },
        },
    )
    print(f"goal: p50 <= 10 ms, p99 <= 40 ms -> wrote {path}")


if __name__ == "__main__":
    main()
