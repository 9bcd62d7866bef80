"""Least-outstanding vs round-robin over 3 inference servers, one 5x slower; then one killed.

Part 1 drives two balancers (one per policy) over the same three real inference servers (tiny
model, CPU; a per-step delay makes one 5x slower), `--jobs` requests each at `--concurrency`,
alternating blocks between the two so noise hits both alike, and reports request latency.
Part 2 runs `--jobs` real jobs through the whole stack (gateway, worker, least-outstanding
balancer) and SIGKILLs one fast inference server halfway: every job must still succeed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine, summary_ms, timed_inference, write_result
from devtools.procs import (
    Proc,
    free_port,
    poll_until,
    python_module,
    start_redis,
    start_stack,
    wait_http_ok,
    wait_stack_ready,
)

# Per-step delays dominate the tiny model's compute, as GPU time would: on this 2-core machine the
# servers' real compute contends for the same CPU and would blur which backend is the slow one.
FAST_MS, SLOW_MS = 100, 500
TERMINAL = {"succeeded", "failed", "canceled", "expired"}


def request_body(i: int) -> dict[str, object]:
    return {
        "task_id": f"bench-{i}",
        "input": {
            "prompt": f"fox {i}",
            "width": 64,
            "height": 64,
            "num_inference_steps": 4,
            "seed": i,
        },
    }


async def one_request(client: httpx.AsyncClient, balancer: str, i: int) -> float | None:
    return await timed_inference(client, f"{balancer}/v1/infer/flux", json=request_body(i))


async def block(
    client: httpx.AsyncClient, balancer: str, ids: range, concurrency: int
) -> list[float | None]:
    gate = asyncio.Semaphore(concurrency)

    async def run(i: int) -> float | None:
        async with gate:
            return await one_request(client, balancer, i)

    return await asyncio.gather(*(run(i) for i in ids))


async def compare(
    balancers: dict[str, str], jobs: int, concurrency: int, block_size: int
) -> dict[str, list[float | None]]:
    results: dict[str, list[float | None]] = {name: [] for name in balancers}
    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=100)) as client:
        for start in range(0, jobs, block_size):
            names = list(balancers) if (start // block_size) % 2 == 0 else list(balancers)[::-1]
            for name in names:
                ids = range(start, min(jobs, start + block_size))
                results[name] += await block(client, balancers[name], ids, concurrency)
    return results


async def kill_run(gateway: str, jobs: int, concurrency: int, kill: Proc) -> tuple[int, int]:
    """Submit `jobs` jobs; kill `kill` when half are done; returns (succeeded, failed)."""
    done = 0
    gate = asyncio.Semaphore(concurrency)
    outcomes: list[str] = []

    async def job(client: httpx.AsyncClient, i: int) -> None:
        nonlocal done
        async with gate:
            body = {
                "prompt": f"fox {i}",
                "width": 64,
                "height": 64,
                "num_inference_steps": 4,
                "seed": i,
            }
            answer = (await client.post(f"{gateway}/flux", json=body)).json()
            while True:
                view = (await client.get(answer["urls"]["status"])).json()
                if view["status"] in TERMINAL:
                    break
                await asyncio.sleep(0.05)  # polling interval of this client, not a sync point
            outcomes.append(view["status"])
            done += 1
            if done == jobs // 2:
                kill.stop(signal.SIGKILL)

    async with httpx.AsyncClient(timeout=300) as client:
        await asyncio.gather(*(job(client, i) for i in range(jobs)))
    succeeded = outcomes.count("succeeded")
    return succeeded, len(outcomes) - succeeded


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=12)
    parser.add_argument("--block", type=int, default=40)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fluxgate-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        redis_proc, redis_url = start_redis(tmp)
        backends = [
            {"FLUXGATE_INFERENCE_STEP_DELAY_MS": str(ms)} for ms in (FAST_MS, FAST_MS, SLOW_MS)
        ]
        ports, env, procs = start_stack(
            redis_url,
            tmp,
            worker_concurrency=args.concurrency,
            backends=backends,
            extra_env={"FLUXGATE_BALANCER_HEALTH_INTERVAL_S": "0.5"},
        )
        try:
            wait_stack_ready(ports, procs)
            rr_port = free_port()
            rr_env = {
                **env,
                "FLUXGATE_BALANCER_POLICY": "round_robin",
                "FLUXGATE_BALANCER_PORT": str(rr_port),
            }
            procs["balancer-rr"] = Proc(
                "balancer-rr", python_module("apps.balancer"), rr_env, tmp / "balancer-rr.log"
            ).start()
            wait_http_ok(
                f"http://127.0.0.1:{rr_port}/readyz", timeout=60, proc=procs["balancer-rr"]
            )
            balancers = {
                "least_outstanding": f"http://127.0.0.1:{ports['balancer']}",
                "round_robin": f"http://127.0.0.1:{rr_port}",
            }
            # Let both see all three backends healthy before measuring.
            for url in balancers.values():
                poll_until(
                    lambda u=url: (
                        sum(b["state"] == "healthy" for b in httpx.get(f"{u}/backends").json()) == 3
                    ),
                    timeout=30,
                    what="three healthy backends",
                )
            latencies = asyncio.run(compare(balancers, args.jobs, args.concurrency, args.block))
            spread = {
                name: {
                    row["url"]: (row["served"], row["latency_ms"])
                    for row in httpx.get(f"{url}/backends").json()
                }
                for name, url in balancers.items()
            }
            succeeded, failed = asyncio.run(
                kill_run(
                    f"http://127.0.0.1:{ports['gateway']}",
                    args.jobs,
                    args.concurrency,
                    procs["inference-0"],
                )
            )
        finally:
            for proc in procs.values():
                proc.stop()
            redis_proc.stop()

    stats = {
        name: summary_ms([v for v in values if v is not None]) for name, values in latencies.items()
    }
    failures = {name: sum(v is None for v in values) for name, values in latencies.items()}
    lor, rr = stats["least_outstanding"], stats["round_robin"]
    print(
        f"{args.jobs} requests per policy at concurrency {args.concurrency}; 3 backends, one "
        f"{SLOW_MS // FAST_MS}x slower; 64x64, 4 steps"
    )
    print(f"{'policy':<20}{'p50 ms':>9}{'p99 ms':>9}{'failed':>8}")
    for name, s in stats.items():
        print(f"{name:<20}{s['p50']:>9}{s['p99']:>9}{failures[name]:>8}")
    for name, rows in spread.items():
        print(f"  {name}: served and EWMA latency per backend: {rows}")
    print(f"round-robin p99 / least-outstanding p99: {rr['p99'] / lor['p99']:.2f}x (goal >= 2)")
    print(f"kill run: {succeeded} succeeded, {failed} failed of {args.jobs} jobs (goal: 0 failed)")
    path = write_result(
        "balancer",
        {
            "lor_p50_ms": lor["p50"],
            "lor_p99_ms": lor["p99"],
            "rr_p50_ms": rr["p50"],
            "rr_p99_ms": rr["p99"],
            "rr_over_lor_p99": round(rr["p99"] / lor["p99"], 2),
            "lor_failed": failures["least_outstanding"],
            "rr_failed": failures["round_robin"],
            "kill_succeeded": succeeded,
            "kill_failed": failed,
            "machine": machine(),
            "params": {
                "jobs": args.jobs,
                "concurrency": args.concurrency,
                "block": args.block,
                "fast_step_ms": FAST_MS,
                "slow_step_ms": SLOW_MS,
                "width": 64,
                "height": 64,
                "steps": 4,
                "model": os.environ.get("FLUXGATE_FLUX_MODEL") or "tiny-flux",
            },
        },
    )
    print(f"wrote {path}")
    print(json.dumps({"kill_failed": failed}))


if __name__ == "__main__":
    main()
