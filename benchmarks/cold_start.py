"""Cold start: from zero model servers, how long until the server is ready and the first job is
done, and did every job queued during the cold start succeed? Then: what do jobs waiting for a
model server cost Redis?

Part 1 (`rounds` times, medians): the whole stack runs with no model server; `--jobs` jobs are
submitted; then one model server starts. `ready_s` is its process start -> `/readyz` (the anchor:
the model server's own cold start, which nothing in the platform can shorten), `first_result_s`
its start -> the first job `succeeded`, `last_result_s` -> the last one. `first_result_s - ready_s`
is what the platform adds to a cold start.

Part 2: the stack with no model server, then 0, 10 and `--waiting` jobs queued (submitted through
the gateway); for each, the Redis commands per second the whole stack issues over `--window`
seconds (INFO's total_commands_processed, less this script's own). Waiting must cost the same
whatever the number of jobs: they sit in Redis lists, and only the worker's slots touch them.

On a GPU, `--model /path/to/FLUX.1-dev --device cuda` gives the number users care about; here the
tiny offline model loads in seconds, and `--load-delay` can stand in for a checkpoint's load.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apps.common.wire.queues import PRIORITY_LANES, lane_name
from apps.worker.unacked import UNACKED_KEY
from benchmarks.common import machine, write_result
from devtools.procs import Proc, poll_until, start_redis, start_stack, wait_http_ok

FINAL = {"succeeded", "failed", "canceled", "expired"}
BODY = {"prompt": "a red fox", "width": 64, "height": 64, "num_inference_steps": 2}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=6, help="jobs queued during each cold start")
    parser.add_argument("--waiting", type=int, default=10_000, help="jobs waiting in part 2")
    parser.add_argument("--window", type=float, default=30.0, help="seconds Redis is watched")
    parser.add_argument("--concurrency", type=int, default=4, help="worker slots")
    parser.add_argument("--model", default="", help="FLUXGATE_FLUX_MODEL (default: tiny)")
    parser.add_argument("--device", default="auto", help="FLUXGATE_INFERENCE_DEVICE")
    parser.add_argument("--load-delay", type=float, default=0.0, help="extra seconds of loading")
    return parser.parse_args()


def start(tmp: Path, args: argparse.Namespace) -> tuple[dict[str, Any], Proc]:
    redis_proc, redis_url = start_redis(tmp)
    env = {
        "FLUXGATE_FLUX_MODEL": args.model,
        "FLUXGATE_INFERENCE_DEVICE": args.device,
        "FLUXGATE_INFERENCE_LOAD_DELAY_S": str(args.load_delay),
        "FLUXGATE_LOG_LEVEL": "WARNING",
    }
    ports, env, procs = start_stack(
        redis_url, tmp, extra_env=env, worker_concurrency=args.concurrency
    )
    procs["inference"].stop(signal.SIGKILL)  # zero model servers
    for name in ("gateway", "notifier"):
        wait_http_ok(f"http://127.0.0.1:{ports[name]}/readyz", timeout=60, proc=procs[name])
    wait_http_ok(f"http://127.0.0.1:{ports['balancer']}/healthz", timeout=60)
    return {"ports": ports, "env": env, "procs": procs, "redis_url": redis_url}, redis_proc


async def submit(
    client: httpx.AsyncClient, gateway: str, count: int, parallel: int = 32
) -> list[str]:
    ids: list[str] = []
    semaphore = asyncio.Semaphore(parallel)

    async def one(seed: int) -> None:
        async with semaphore:
            answer = await client.post(f"{gateway}/flux", json={**BODY, "seed": seed})
            answer.raise_for_status()
            ids.append(answer.json()["task_id"])

    await asyncio.gather(*(one(i) for i in range(count)))
    return ids


def cold_start_round(stack: dict[str, Any], jobs: int) -> dict[str, Any]:
    gateway = f"http://127.0.0.1:{stack['ports']['gateway']}"
    inference_url = f"http://127.0.0.1:{stack['ports']['inference']}"

    async def run() -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=30) as client:
            ids = await submit(client, gateway, jobs)
            old = stack["procs"]["inference"]
            started = time.perf_counter()
            stack["procs"]["inference"] = Proc(old.name, old.args, old.env, old.log_path).start()
            ready_s = first_s = None
            finished: dict[str, str] = {}
            while len(finished) < len(ids):
                if time.perf_counter() - started > 900:
                    raise AssertionError(f"cold start took over 900 s: {finished}")
                if ready_s is None:
                    try:
                        if (await client.get(f"{inference_url}/readyz")).status_code == 200:
                            ready_s = time.perf_counter() - started
                    except httpx.TransportError:
                        pass
                for task_id in ids:
                    if task_id in finished:
                        continue
                    view = (await client.get(f"{gateway}/tasks/{task_id}")).json()
                    if view["status"] in FINAL:
                        finished[task_id] = view["status"]
                        if first_s is None and view["status"] == "succeeded":
                            first_s = time.perf_counter() - started
                await asyncio.sleep(0.05)
            last_s = time.perf_counter() - started
            failed = sum(1 for status in finished.values() if status != "succeeded")
            return {
                "ready_s": ready_s,
                "first_result_s": first_s,
                "last_result_s": last_s,
                "jobs": len(ids),
                "failed": failed,
            }

    result = asyncio.run(run())
    stack["procs"]["inference"].stop(signal.SIGKILL)
    poll_until(
        lambda: (
            httpx.get(f"http://127.0.0.1:{stack['ports']['balancer']}/readyz").status_code == 503
        ),
        timeout=30,
        what="the balancer to see zero model servers",
    )
    return result


def commands_per_s(client: redis.Redis, window: float) -> tuple[float, dict[str, int]]:
    """The Redis commands per second of everything but this function, and the busiest ones."""
    before_total = int(client.info("stats")["total_commands_processed"])
    before = {k: int(v["calls"]) for k, v in client.info("commandstats").items()}
    started = time.perf_counter()
    time.sleep(window)
    elapsed = time.perf_counter() - started
    after = {k: int(v["calls"]) for k, v in client.info("commandstats").items()}
    after_total = int(client.info("stats")["total_commands_processed"])
    own = 3  # the INFO calls between the two totals
    rate = (after_total - before_total - own) / elapsed
    busiest = {
        k.removeprefix("cmdstat_"): after[k] - before.get(k, 0)
        for k in after
        if after[k] - before.get(k, 0) > 0
    }
    return rate, dict(sorted(busiest.items(), key=lambda kv: -kv[1])[:8])


def waiting_cost(stack: dict[str, Any], counts: list[int], window: float) -> list[dict[str, Any]]:
    gateway = f"http://127.0.0.1:{stack['ports']['gateway']}"
    client = redis.Redis.from_url(stack["redis_url"], decode_responses=True)
    rows = []
    queued_so_far = 0
    for count in counts:
        extra = count - queued_so_far

        async def fill(n: int = extra) -> None:
            async with httpx.AsyncClient(timeout=30) as http:
                await submit(http, gateway, n)

        if extra > 0:
            asyncio.run(fill())
            queued_so_far = count
        time.sleep(min(5.0, window))  # let the worker slots take their jobs first
        rate, busiest = commands_per_s(client, window)
        in_lanes = sum(int(client.llen(lane_name("gpu", p))) for p in range(PRIORITY_LANES))
        rows.append(
            {
                "waiting_jobs": count,
                "redis_commands_per_s": round(rate, 1),
                "in_redis_lanes": in_lanes,
                "held_by_worker": int(client.hlen(UNACKED_KEY)),
                "busiest_commands": busiest,
            }
        )
        print(
            f"  {count:>6} waiting: {rate:7.1f} Redis commands/s "
            f"({in_lanes} in lanes, {rows[-1]['held_by_worker']} held by the worker)",
            flush=True,
        )
    return rows


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="fluxgate-cold-") as raw_tmp:
        tmp = Path(raw_tmp)
        stack, redis_proc = start(tmp, args)
        try:
            print(f"cold start: {args.rounds} rounds, {args.jobs} jobs queued each", flush=True)
            rounds = []
            for index in range(args.rounds):
                rounds.append(cold_start_round(stack, args.jobs))
                r = rounds[-1]
                print(
                    f"  round {index + 1}: ready {r['ready_s']:.2f} s, first result "
                    f"{r['first_result_s']:.2f} s, last {r['last_result_s']:.2f} s, "
                    f"{r['jobs']} jobs, {r['failed']} failed",
                    flush=True,
                )
            print(f"Redis load of waiting jobs ({args.window:.0f} s windows):", flush=True)
            counts = sorted({0, min(10, args.waiting), args.waiting})
            waiting = waiting_cost(stack, counts, args.window)
        finally:
            for proc in stack["procs"].values():
                proc.stop()
            redis_proc.stop()

    def median(key: str) -> float:
        return round(statistics.median(r[key] for r in rounds), 2)

    result = {
        "ready_s": median("ready_s"),
        "first_result_s": median("first_result_s"),
        "last_result_s": median("last_result_s"),
        "platform_added_s": round(
            statistics.median(r["first_result_s"] - r["ready_s"] for r in rounds), 2
        ),
        "jobs": sum(r["jobs"] for r in rounds),
        "failed": sum(r["failed"] for r in rounds),
        "idle_redis_commands_per_s": waiting[0]["redis_commands_per_s"],
        "waiting_redis_commands_per_s": waiting[-1]["redis_commands_per_s"],
        "rounds": rounds,
        "waiting": waiting,
        "machine": {**machine(), "device": args.device},
        "params": {
            "model": args.model or "tiny",
            "load_delay_s": args.load_delay,
            "jobs_per_round": args.jobs,
            "waiting_jobs": args.waiting,
            "window_s": args.window,
            "worker_slots": args.concurrency,
            "size": "64x64",
            "steps": 2,
        },
    }
    path = write_result("cold_start", result)
    print(
        f"ready {result['ready_s']} s, first result {result['first_result_s']} s "
        f"(platform adds {result['platform_added_s']} s), {result['jobs']} jobs, "
        f"{result['failed']} failed; Redis {result['idle_redis_commands_per_s']}/s idle vs "
        f"{result['waiting_redis_commands_per_s']}/s with {args.waiting} jobs waiting -> {path}"
    )
    if result["failed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
