"""Platform overhead: submit -> result pushed on the WebSocket, minus the model's own compute time,
for Fluxgate and for the seeds' design on the same inference server, in the same run.

- fluxgate: the whole stack (gateway, worker, balancer, inference, notifier), `POST /flux` then
  the task's WebSocket until `succeeded`.
- seed:     FastAPI + Celery `send_task`, a worker that `requests.post`s the same inference server
  (no balancer) and POSTs the result to a WebSocket relay that pushes it to the client
  (`benchmarks/servers/seed_stack.py`, `seed_relay.py`), `POST /flux` then the relay's socket.

64x64, 2-step jobs arrive at a fixed rate (open loop: 20 jobs/s), each followed on its WebSocket
from the moment its submit answers, in interleaved blocks (fluxgate, seed, fluxgate, seed ...:
4 blocks of 15 s per side by default; a block's jobs all end before the next block starts). Both
workers run 8 processes. Overhead is everything that is not the pipeline call (the inference
result's `compute_ms`): the submit, the queue, the worker, the balancer, the batch wait, storing
the image, the events and the push. Percentiles pool every block of a side. Fluxgate's per-hop
breakdown comes from the job view's `timings`:

  gateway   POST /flux answered                      (client clock)
  queued    record created -> `started` recorded     (queue wait + pickup + the started event)
  running-  start -> work done, minus model compute  (balancer, batch wait, storing, progress)
  delivery  work done -> final state published       (the event hop through the notifier)
  push      the rest: publish -> the client's socket

Goal (docs/benchmarks.md): overhead p50 <= 10 ms, p99 <= 40 ms, no failed job; shown next to the
seed design's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine, summary_ms, write_result
from devtools.procs import (
    ROOT,
    Proc,
    free_port,
    start_redis,
    start_stack,
    wait_http_ok,
    wait_stack_ready,
)

FINAL = {"succeeded", "failed", "canceled", "expired"}
BODY = {"prompt": "a red fox", "width": 64, "height": 64, "num_inference_steps": 2}
WORKER_CONCURRENCY = 8
JOB_TIMEOUT_S = 120
VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Side:
    """How one design is driven: where to submit, which socket to follow, where compute is."""

    name: str
    submit_url: str
    socket_url: Callable[[dict[str, Any]], str]
    compute_ms: Callable[[dict[str, Any]], float]


def fluxgate_side(gateway: str) -> Side:
    return Side(
        "fluxgate",
        f"{gateway}/flux",
        socket_url=lambda answer: str(answer["urls"]["ws"]),
        compute_ms=lambda view: float(
            (view.get("result") or {}).get("timings", {}).get("compute_ms", 0)
        ),
    )


def seed_side(api: str, relay_ws: str) -> Side:
    return Side(
        "seed",
        f"{api}/flux",
        socket_url=lambda answer: f"{relay_ws}/ws/{answer['task_id']}",
        compute_ms=lambda view: float((view.get("result") or {}).get("compute_ms", 0)),
    )


async def one_job(client: httpx.AsyncClient, side: Side) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(JOB_TIMEOUT_S):
            answer = await client.post(side.submit_url, json=BODY)
            submitted = time.perf_counter()
            answer.raise_for_status()
            view: dict[str, Any] = {}
            async with connect(side.socket_url(answer.json()), compression=None) as ws:
                while view.get("status") not in FINAL:
                    view = json.loads(await ws.recv())
    except Exception as exc:  # a failed job is counted, not fatal to the run
        return {"status": f"error: {exc!r}"[:200]}
    finished = time.perf_counter()
    return {
        "status": view["status"],
        "total_ms": (finished - started) * 1000,
        "gateway_ms": (submitted - started) * 1000,
        "compute_ms": side.compute_ms(view),
        "timings": view.get("timings"),
    }


async def drive_block(
    client: httpx.AsyncClient, side: Side, rate: float, seconds: float
) -> list[dict[str, Any]]:
    jobs = []
    begin = time.perf_counter()
    for index in range(int(rate * seconds)):
        # Open loop: the next arrival does not wait for earlier jobs to finish.
        await asyncio.sleep(max(0.0, begin + index / rate - time.perf_counter()))
        jobs.append(asyncio.create_task(one_job(client, side)))
    return await asyncio.gather(*jobs)


async def drive(
    sides: list[Side], rate: float, seconds: float, blocks: int
) -> list[tuple[str, int, list[dict[str, Any]]]]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    out = []
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        for side in sides:
            # Warm-up, not counted: one job alone, then bursts that reach every worker process
            # (each sets up its own clients on its first job) and the model's batch sizes.
            warm = [await one_job(client, side)]
            for _ in range(2):
                burst = (one_job(client, side) for _ in range(2 * WORKER_CONCURRENCY))
                warm += await asyncio.gather(*burst)
            bad = [r["status"] for r in warm if r["status"] != "succeeded"]
            if bad:
                raise SystemExit(f"{side.name} warm-up jobs failed: {bad[:3]}")
        for block in range(blocks):
            for side in sides:
                results = await drive_block(client, side, rate, seconds)
                out.append((side.name, block + 1, results))
                done = [r for r in results if r["status"] == "succeeded"]
                stats = summary_ms([r["total_ms"] - r["compute_ms"] for r in done] or [0.0])
                print(
                    f"block {block + 1} {side.name:8s} {len(results)} jobs, "
                    f"{len(results) - len(done)} failed; overhead p50 {stats['p50']} ms, "
                    f"p99 {stats['p99']} ms",
                    flush=True,
                )
    return out


def start_seed(tmp: Path, redis_url: str, inference_port: int, procs: dict[str, Proc]) -> Side:
    """Start the seed design's three processes (its API, its relay and its Celery worker) into
    `procs`, and wait for its API and relay."""
    ports = {"api": free_port(), "relay": free_port()}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLUXGATE_")},
        # Its own Redis database as the broker, on the same redis-server.
        "BENCH_REDIS_URL": redis_url.rsplit("/", 1)[0] + "/1",
        "BENCH_INFERENCE_URL": f"http://127.0.0.1:{inference_port}",
        "BENCH_RELAY_URL": f"http://127.0.0.1:{ports['relay']}",
        "PYTHONPATH": str(ROOT),
    }

    def uvicorn(app: str, port: int) -> list[str]:
        return [
            str(VENV_BIN / "uvicorn"),
            app,
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ]

    procs |= {
        "seed-api": Proc(
            "seed-api",
            uvicorn("benchmarks.servers.seed_stack:api", ports["api"]),
            env,
            tmp / "seed-api.log",
        ),
        "seed-relay": Proc(
            "seed-relay",
            uvicorn("benchmarks.servers.seed_relay:app", ports["relay"]),
            env,
            tmp / "seed-relay.log",
        ),
        "seed-worker": Proc(
            "seed-worker",
            [
                str(VENV_BIN / "celery"),
                "-A",
                "benchmarks.servers.seed_stack:celery",
                "worker",
                "--concurrency",
                str(WORKER_CONCURRENCY),
                "--loglevel",
                "INFO",
            ],
            env,
            tmp / "seed-worker.log",
        ),
    }
    for proc in procs.values():
        proc.start()
    for name in ("api", "relay"):
        wait_http_ok(
            f"http://127.0.0.1:{ports[name]}/openapi.json", timeout=60, proc=procs[f"seed-{name}"]
        )
    return seed_side(f"http://127.0.0.1:{ports['api']}", f"ws://127.0.0.1:{ports['relay']}")


def hops(done: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Fluxgate's overhead split by the job view's stage timings."""

    def span(r: dict[str, Any], name: str) -> float:
        return float(r["timings"][name] or 0.0)

    split = {
        "gateway": [r["gateway_ms"] for r in done],
        "queued": [span(r, "queued_ms") for r in done],
        "running - compute": [max(0.0, span(r, "running_ms") - r["compute_ms"]) for r in done],
        "delivery": [span(r, "delivery_ms") for r in done],
        "compute (not overhead)": [r["compute_ms"] for r in done],
    }
    split["push (the rest)"] = [
        max(
            0.0,
            r["total_ms"]
            - r["gateway_ms"]
            - span(r, "queued_ms")
            - span(r, "running_ms")
            - span(r, "delivery_ms"),
        )
        for r in done
    ]
    return split


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=20.0, help="jobs per second (default 20)")
    parser.add_argument(
        "--seconds", type=float, default=15.0, help="per block and side (default 15)"
    )
    parser.add_argument("--blocks", type=int, default=4, help="blocks per side (default 4)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fluxgate-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        redis_proc, redis_url = start_redis(tmp)
        ports, _env, procs = start_stack(
            redis_url,
            tmp,
            extra_env={"FLUXGATE_WORKER_CONCURRENCY": str(WORKER_CONCURRENCY)},
            worker_concurrency=WORKER_CONCURRENCY,
        )
        seed_procs: dict[str, Proc] = {}
        try:
            wait_stack_ready(ports, procs)
            seed = start_seed(tmp, redis_url, ports["inference"], seed_procs)
            fluxgate = fluxgate_side(f"http://127.0.0.1:{ports['gateway']}")
            blocks = asyncio.run(drive([fluxgate, seed], args.rate, args.seconds, args.blocks))
        finally:
            for proc in [*procs.values(), *seed_procs.values()]:
                proc.stop()
            redis_proc.stop()

    results: dict[str, list[dict[str, Any]]] = {"fluxgate": [], "seed": []}
    per_block = []
    for name, block, block_results in blocks:
        results[name] += block_results
        ok = [r for r in block_results if r["status"] == "succeeded"]
        stats = summary_ms([r["total_ms"] - r["compute_ms"] for r in ok] or [0.0])
        per_block.append(
            {
                "side": name,
                "block": block,
                "jobs": len(block_results),
                "failed": len(block_results) - len(ok),
                "p50_ms": stats["p50"],
                "p99_ms": stats["p99"],
            }
        )
    done = {name: [r for r in rs if r["status"] == "succeeded"] for name, rs in results.items()}
    failed = {name: len(results[name]) - len(done[name]) for name in results}
    errors = sorted({r["status"] for rs in results.values() for r in rs} - FINAL)[:5]
    total = {
        name: summary_ms([r["total_ms"] - r["compute_ms"] for r in done[name]] or [0.0])
        for name in results
    }
    breakdown = {
        label: summary_ms(values or [0.0]) for label, values in hops(done["fluxgate"]).items()
    }
    seed_breakdown = {
        "submit": summary_ms([r["gateway_ms"] for r in done["seed"]] or [0.0]),
        "compute (not overhead)": summary_ms([r["compute_ms"] for r in done["seed"]] or [0.0]),
    }
    print()
    print(
        f"{args.blocks} blocks of {args.seconds:.0f} s per side at {args.rate}/s, 64x64, 2 steps; "
        f"failed: fluxgate {failed['fluxgate']}, seed {failed['seed']}"
        + (f" ({errors})" if errors else "")
    )
    print(f"{'ms':<30}{'p50':>8}{'p95':>8}{'p99':>8}")
    for name in ("fluxgate", "seed"):
        stats = total[name]
        label = f"{name} overhead (total-compute)"
        print(f"{label:<30}{stats['p50']:>8}{stats['p95']:>8}{stats['p99']:>8}")
        for hop, hop_stats in (breakdown if name == "fluxgate" else seed_breakdown).items():
            print(f"  {hop:<28}{hop_stats['p50']:>8}{hop_stats['p95']:>8}{hop_stats['p99']:>8}")
    result = {
        "overhead_p50_ms": total["fluxgate"]["p50"],
        "overhead_p99_ms": total["fluxgate"]["p99"],
        "seed_overhead_p50_ms": total["seed"]["p50"],
        "seed_overhead_p99_ms": total["seed"]["p99"],
        "p50_ratio": round(total["fluxgate"]["p50"] / total["seed"]["p50"], 2),
        "p99_ratio": round(total["fluxgate"]["p99"] / total["seed"]["p99"], 2),
        "jobs": len(results["fluxgate"]),
        "failed": failed["fluxgate"],
        "seed_jobs": len(results["seed"]),
        "seed_failed": failed["seed"],
        "errors": errors,
        "blocks": per_block,
        "breakdown_ms": breakdown,
        "seed_breakdown_ms": seed_breakdown,
        "machine": machine(),
        "params": {
            "rate_per_s": args.rate,
            "seconds_per_block": args.seconds,
            "blocks_per_side": args.blocks,
            "order": "fluxgate, seed, alternating blocks",
            "width": 64,
            "height": 64,
            "steps": 2,
            "worker_concurrency": WORKER_CONCURRENCY,
            "auth": False,
            "seed": "FastAPI + send_task; Celery prefork worker, requests.post to the inference "
            "server (no balancer), result POSTed to a FastAPI WebSocket relay",
        },
    }
    path = write_result("overhead", result)
    print(
        f"fluxgate/seed: p50 {result['p50_ratio']}x, p99 {result['p99_ratio']}x; "
        f"goal: p50 <= 10 ms, p99 <= 40 ms, 0 failed -> {path.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    main()
