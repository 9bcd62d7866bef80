"""Dynamic batching on the inference server: N concurrent same-shape requests, batching on vs
`max_batch_size=1`, tiny FLUX on the CPU (or the configured model and device).

Starts one inference server per setting on a free port, fires `--rounds` waves of `--concurrency`
concurrent requests (128x128, 4 steps by default) at it, alternating the two servers wave by wave
so machine noise hits both alike, and reports images/s and per-request latency.

On a GPU, run it with e.g. `FLUXGATE_FLUX_MODEL=black-forest-labs/FLUX.1-schnell --size 1024
--concurrency 16 --max-batch 16` to size `FLUXGATE_INFERENCE_MAX_BATCH_SIZE` for the card.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine, summary_ms, write_result
from devtools.procs import Proc, free_port, python_module, wait_http_ok


def start_server(tmp: Path, max_batch: int, wait_ms: int, gap_ms: int) -> tuple[Proc, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUXGATE_INFERENCE_")}
    env.update(
        {
            "FLUXGATE_INFERENCE_PORT": str(port),
            "FLUXGATE_INFERENCE_MAX_BATCH_SIZE": str(max_batch),
            "FLUXGATE_INFERENCE_MAX_WAIT_MS": str(wait_ms),
            "FLUXGATE_MODEL_CACHE_DIR": env.get("FLUXGATE_MODEL_CACHE_DIR", ".data/models"),
            "HF_HUB_OFFLINE": env.get("HF_HUB_OFFLINE", "1"),
        }
    )
    proc = Proc(
        f"inference-b{max_batch}",
        python_module("apps.inference"),
        env,
        tmp / f"inference-b{max_batch}.log",
    ).start()
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/readyz", timeout=300, proc=proc)
    return proc, url


async def wave(
    client: httpx.AsyncClient, url: str, n: int, size: int, steps: int, offset: int
) -> tuple[float, list[float], list[int]]:
    async def one(i: int) -> tuple[float, int]:
        payload = {
            "task_id": f"bench-{offset}-{i}",
            "input": {
                "prompt": f"a red fox number {i}",
                "width": size,
                "height": size,
                "num_inference_steps": steps,
                "seed": offset + i,
            },
        }
        started = time.perf_counter()
        async with client.stream("POST", f"{url}/v1/infer/flux", json=payload) as response:
            last = b""
            async for line in response.aiter_lines():
                if line.strip():
                    last = line.encode()
        result = json.loads(last)
        assert result["type"] == "result", result
        return (time.perf_counter() - started) * 1000, int(result["batch_size"])

    started = time.perf_counter()
    outcomes = await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - started, [o[0] for o in outcomes], [o[1] for o in outcomes]


async def measure(urls: dict[str, str], args: argparse.Namespace) -> dict[str, dict[str, float]]:
    totals = {name: 0.0 for name in urls}
    latencies: dict[str, list[float]] = {name: [] for name in urls}
    batch_sizes: dict[str, list[int]] = {name: [] for name in urls}
    async with httpx.AsyncClient(timeout=600) as client:
        for url in urls.values():  # one warm-up wave each, not counted
            await wave(client, url, args.concurrency, args.size, args.steps, 0)
        for r in range(args.rounds):
            for name, url in urls.items():
                seconds, lat, sizes = await wave(
                    client, url, args.concurrency, args.size, args.steps, 1000 * (r + 1)
                )
                totals[name] += seconds
                latencies[name] += lat
                batch_sizes[name] += sizes
    images = args.rounds * args.concurrency
    return {
        name: {
            "images_per_s": images / totals[name],
            "mean_batch": statistics.mean(batch_sizes[name]),
            **{f"{k}_ms": v for k, v in summary_ms(latencies[name]).items()},
        }
        for name in urls
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--wait-ms", type=int, default=40)
    parser.add_argument("--gap-ms", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fluxgate-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        procs = []
        try:
            batched, batched_url = start_server(tmp, args.max_batch, args.wait_ms, args.gap_ms)
            procs.append(batched)
            single, single_url = start_server(tmp, 1, args.wait_ms, args.gap_ms)
            procs.append(single)
            stats = asyncio.run(measure({"batched": batched_url, "unbatched": single_url}, args))
            assert batched.popen is not None
            # Resident memory of the whole server after the run (the budget: < 1.5 GB).
            rss_mb = psutil.Process(batched.popen.pid).memory_info().rss / 2**20
        finally:
            for proc in procs:
                proc.stop()

    print(
        f"{args.rounds} waves x {args.concurrency} concurrent requests, {args.size}x{args.size}, "
        f"{args.steps} steps, max_batch_size {args.max_batch} vs 1 (alternating waves)"
    )
    print(f"{'':<12}{'images/s':>10}{'mean batch':>12}{'p50 ms':>9}{'p99 ms':>9}")
    for name, s in stats.items():
        print(
            f"{name:<12}{s['images_per_s']:>10.1f}{s['mean_batch']:>12.1f}"
            f"{s['p50_ms']:>9.0f}{s['p99_ms']:>9.0f}"
        )
    ratio = stats["batched"]["images_per_s"] / stats["unbatched"]["images_per_s"]
    print(f"ratio batched/unbatched: {ratio:.2f}x (goal >= 2)")
    print(f"batched server RSS after the run: {rss_mb:.0f} MB")
    path = write_result(
        "batching",
        {
            "batched_images_per_s": round(stats["batched"]["images_per_s"], 2),
            "unbatched_images_per_s": round(stats["unbatched"]["images_per_s"], 2),
            "ratio": round(ratio, 2),
            "batched_p50_ms": stats["batched"]["p50_ms"],
            "batched_p99_ms": stats["batched"]["p99_ms"],
            "unbatched_p50_ms": stats["unbatched"]["p50_ms"],
            "unbatched_p99_ms": stats["unbatched"]["p99_ms"],
            "batched_rss_mb": round(rss_mb, 1),
            "machine": machine(),
            "params": {
                "concurrency": args.concurrency,
                "width": args.size,
                "height": args.size,
                "steps": args.steps,
                "rounds": args.rounds,
                "max_batch_size": args.max_batch,
                "max_wait_ms": args.wait_ms,
                "model": os.environ.get("FLUXGATE_FLUX_MODEL") or "tiny-flux",
            },
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
