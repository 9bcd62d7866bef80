"""LoRA adapter affinity vs plain least-outstanding routing: 3 inference servers per policy
(tiny model, CPU), 12 adapters, a Zipf-like request mix.

Each policy gets a balancer and three servers of its own (each server keeps at most
`--max-adapters` adapters loaded, so the 12 fit in the pool only when each server keeps to its
share), so one policy's loads never warm the other's servers. Both see the same request sequence
(seeded), sent as the worker sends it (`route_headers`, `wire_json`), in blocks that alternate
between the two so machine noise hits both alike. Loads are the servers' own adapter misses
(`fluxgate_inference_adapter_requests_total{result="miss"}`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apps.common.wire.contracts import FluxInput
from apps.common.wire.inference import InferenceRequest
from apps.inference.pipelines.tiny import ensure_tiny_flux
from apps.worker.balancer_client import route_headers
from benchmarks.common import machine, summary_ms, timed_inference, write_result
from devtools.loras import write_loras
from devtools.procs import Proc, free_port, poll_until, python_module, wait_http_ok

ADAPTERS = [f"style-{i:02d}" for i in range(12)]
POLICIES = ("affinity", "plain")
# A real adapter takes 0.3-2 s to load on a GPU and a 1024 px step ~0.1 s; the tiny model's steps
# take milliseconds, so a per-step delay keeps compute the larger part of a request, as there.
STEP_DELAY_MS = 20


def zipf_mix(count: int, s: float, seed: int) -> list[str]:
    """`count` adapter names, the k-th most popular drawn with weight 1 / k^s."""
    rng = random.Random(seed)
    weights = [1 / (k + 1) ** s for k in range(len(ADAPTERS))]
    return rng.choices(ADAPTERS, weights=weights, k=count)


def inference_request(i: int, adapter: str) -> InferenceRequest:
    spec = FluxInput.model_validate(
        {
            "prompt": f"a product shot {i}",
            "width": 64,
            "height": 64,
            "num_inference_steps": 4,
            "seed": i,
            "loras": [{"name": adapter, "scale": 0.8}],
        }
    )
    return InferenceRequest(task_id=f"bench-{i}", input=spec)


async def one_request(
    client: httpx.AsyncClient, balancer: str, i: int, adapter: str
) -> float | None:
    request = inference_request(i, adapter)
    headers = {"content-type": "application/json", **route_headers(request, "default")}
    return await timed_inference(
        client,
        f"{balancer}/v1/infer/flux",
        content=request.wire_json(default_model="default"),
        headers={**headers, "x-fluxgate-wait-s": "60"},
    )


async def block(
    client: httpx.AsyncClient, balancer: str, mix: list[str], ids: range, concurrency: int
) -> list[float | None]:
    gate = asyncio.Semaphore(concurrency)

    async def run(i: int) -> float | None:
        async with gate:
            return await one_request(client, balancer, i, mix[i])

    return await asyncio.gather(*(run(i) for i in ids))


async def compare(
    balancers: dict[str, str], mix: list[str], concurrency: int, block_size: int
) -> dict[str, list[float | None]]:
    results: dict[str, list[float | None]] = {name: [] for name in balancers}
    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=100)) as client:
        for start in range(0, len(mix), block_size):
            names = list(balancers) if (start // block_size) % 2 == 0 else list(balancers)[::-1]
            for name in names:
                ids = range(start, min(len(mix), start + block_size))
                results[name] += await block(client, balancers[name], mix, ids, concurrency)
    return results


def adapter_misses(url: str) -> float:
    """The server's adapter loads so far (its Prometheus counter)."""
    for line in httpx.get(f"{url}/metrics/", timeout=10).text.splitlines():
        if line.startswith('fluxgate_inference_adapter_requests_total{result="miss"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=240, help="requests per policy")
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--block", type=int, default=40)
    parser.add_argument("--zipf", type=float, default=1.1, help="popularity exponent")
    parser.add_argument("--max-adapters", type=int, default=4, help="adapters per server")
    args = parser.parse_args()
    mix = zipf_mix(args.jobs, args.zipf, seed=25)

    with tempfile.TemporaryDirectory(prefix="fluxgate-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        loras = tmp / "loras"
        write_loras(loras, ensure_tiny_flux(tmp / "models"), ADAPTERS)
        base = {k: v for k, v in os.environ.items() if not k.startswith("FLUXGATE_")}
        base |= {
            "FLUXGATE_MODEL_CACHE_DIR": str(tmp / "models"),
            "FLUXGATE_LORA_DIR": str(loras),
            "FLUXGATE_INFERENCE_MAX_ADAPTERS": str(args.max_adapters),
            "FLUXGATE_INFERENCE_STEP_DELAY_MS": str(STEP_DELAY_MS),
            "FLUXGATE_BALANCER_HEALTH_INTERVAL_S": "0.5",
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        procs: dict[str, Proc] = {}
        servers: dict[str, list[str]] = {}
        balancers: dict[str, str] = {}
        try:
            for policy in POLICIES:
                servers[policy] = []
                for index in range(3):
                    port = free_port()
                    name = f"{policy}-inference-{index}"
                    env = {**base, "FLUXGATE_INFERENCE_PORT": str(port)}
                    procs[name] = Proc(
                        name, python_module("apps.inference"), env, tmp / f"{name}.log"
                    ).start()
                    servers[policy].append(f"http://127.0.0.1:{port}")
                port = free_port()
                env = {
                    **base,
                    "FLUXGATE_BALANCER_PORT": str(port),
                    "FLUXGATE_BALANCER_BACKENDS": ",".join(servers[policy]),
                    "FLUXGATE_BALANCER_AFFINITY": str(policy == "affinity").lower(),
                }
                name = f"{policy}-balancer"
                procs[name] = Proc(
                    name, python_module("apps.balancer"), env, tmp / f"{name}.log"
                ).start()
                balancers[policy] = f"http://127.0.0.1:{port}"
            for name, proc in procs.items():
                if "inference" in name:
                    policy, index = name.split("-inference-")
                    wait_http_ok(f"{servers[policy][int(index)]}/readyz", timeout=300, proc=proc)
            for url in balancers.values():
                poll_until(
                    lambda u=url: (
                        sum(b["state"] == "healthy" for b in httpx.get(f"{u}/backends").json()) == 3
                    ),
                    timeout=30,
                    what="three healthy backends",
                )
            latencies = asyncio.run(compare(balancers, mix, args.concurrency, args.block))
            loads = {p: sum(adapter_misses(url) for url in servers[p]) for p in POLICIES}
            spread = {
                p: {row["url"]: row["served"] for row in httpx.get(f"{u}/backends").json()}
                for p, u in balancers.items()
            }
        finally:
            for proc in procs.values():
                proc.stop()

    stats = {p: summary_ms([v for v in values if v is not None]) for p, values in latencies.items()}
    failures = {p: sum(v is None for v in values) for p, values in latencies.items()}
    per_100 = {p: round(loads[p] * 100 / args.jobs, 1) for p in POLICIES}
    print(
        f"{args.jobs} requests per policy at concurrency {args.concurrency}; 3 servers per policy, "
        f"{len(ADAPTERS)} adapters (Zipf s={args.zipf}), {args.max_adapters} loaded per server"
    )
    print(f"{'policy':<10}{'loads/100':>10}{'p50 ms':>9}{'p99 ms':>9}{'failed':>8}")
    for p in POLICIES:
        print(f"{p:<10}{per_100[p]:>10}{stats[p]['p50']:>9}{stats[p]['p99']:>9}{failures[p]:>8}")
    for p, rows in spread.items():
        print(f"  {p}: requests per server: {list(rows.values())}")
    fewer = per_100["plain"] / max(per_100["affinity"], 0.1)
    print(f"plain loads / affinity loads: {fewer:.1f}x (goal >= 3, at no worse p99)")
    path = write_result(
        "adapters",
        {
            "affinity_loads_per_100": per_100["affinity"],
            "plain_loads_per_100": per_100["plain"],
            "affinity_p50_ms": stats["affinity"]["p50"],
            "plain_p50_ms": stats["plain"]["p50"],
            "affinity_p99_ms": stats["affinity"]["p99"],
            "plain_p99_ms": stats["plain"]["p99"],
            "plain_over_affinity_loads": round(fewer, 2),
            "affinity_failed": failures["affinity"],
            "plain_failed": failures["plain"],
            "machine": machine(),
            "params": {
                "jobs": args.jobs,
                "concurrency": args.concurrency,
                "block": args.block,
                "zipf_s": args.zipf,
                "adapters": len(ADAPTERS),
                "max_adapters_per_server": args.max_adapters,
                "step_delay_ms": STEP_DELAY_MS,
                "width": 64,
                "height": 64,
                "steps": 4,
                "model": "tiny-flux",
            },
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
