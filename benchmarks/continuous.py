"""Continuous batching vs window batching on the inference server (issue #20, item 4).

Starts two inference servers of the same build, `FLUXGATE_INFERENCE_SCHEDULER=continuous` and
`window`, same batch limit, and drives them directly (no stack), interleaved round by round so
machine noise hits both alike:

(a) saturation: the same burst of mixed requests sent at once to each (images/s); then Poisson
    arrivals of mixed requests (sides 64-256 px, 2-8 steps, one image each; the same
    trace for both servers within a round) at a rate near the window server's saturation (its
    images/s on a burst of the same mix, times `--load`): images/s over the round (images / first
    submit -> last result) and per-request latency p50 / p99.
(b) a 64x64 4-step job submitted while a big long job (`--big-size`, `--big-steps`) runs, against
    the same job alone on the idle server; the big job's step time turns the difference into big
    steps.
(c) the cost of live previews on the continuous server: a burst of requests with `preview: true`
    vs without, interleaved (images/s), and the server's own time per preview (its histogram).

Every model call also sleeps `--step-delay-ms` (`FLUXGATE_INFERENCE_STEP_DELAY_MS`), standing in
for a GPU's step time as in bench-fairness: with the tiny model on 2 CPU cores the per-image work
(prompt encoding, VAE decode, PNG) otherwise outweighs the steps, which is not what a GPU running
FLUX sees. The delay is per call whatever the call holds, so in this model more rows per call are
free (a GPU's call grows with its rows: expect a smaller images/s gain there, the same latency
behaviour). `--step-delay-ms 0` measures the CPU-bound case. Images/s over an open-loop round
equals the arrival rate while a server keeps up; it falls below it only when one does not.

Goals: >= 1.3x images/s at no worse p99, or p99 <= 0.5x at no worse images/s; the small job
during the big one within a few of the big job's steps of its time alone.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine, summary_ms, write_result
from devtools.procs import Proc, free_port, python_module, wait_http_ok

MODES = ("continuous", "window")
SIDES = (64, 128, 192, 256)
STEPS = range(2, 9)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--burst", type=int, default=36, help="requests of a saturation burst")
    parser.add_argument("--rounds", type=int, default=2, help="Poisson rounds per server")
    parser.add_argument("--requests", type=int, default=60, help="requests per Poisson round")
    parser.add_argument("--load", type=float, default=1.0, help="rate / window's burst rate")
    parser.add_argument("--rate", type=float, default=0.0, help="requests/s (0: calibrate)")
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--big-size", type=int, default=512)
    parser.add_argument("--big-steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3, help="small-during-big repeats")
    parser.add_argument("--preview-burst", type=int, default=24)
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument(
        "--step-delay-ms", type=int, default=25, help="stands in for a GPU's time per model call"
    )
    return parser.parse_args()


def start_server(tmp: Path, mode: str, max_batch: int, step_delay_ms: int) -> tuple[Proc, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUXGATE_INFERENCE_")}
    env.update(
        {
            "FLUXGATE_INFERENCE_PORT": str(port),
            "FLUXGATE_INFERENCE_SCHEDULER": mode,
            "FLUXGATE_INFERENCE_MAX_BATCH_SIZE": str(max_batch),
            "FLUXGATE_INFERENCE_STEP_DELAY_MS": str(step_delay_ms),
            "FLUXGATE_MODEL_CACHE_DIR": env.get("FLUXGATE_MODEL_CACHE_DIR", ".data/models"),
            "HF_HUB_OFFLINE": env.get("HF_HUB_OFFLINE", "1"),
        }
    )
    proc = Proc(f"inference-{mode}", python_module("apps.inference"), env, tmp / f"{mode}.log")
    return proc.start(), f"http://127.0.0.1:{port}"


def payload(task: str, side: int, steps: int, seed: int, **extra: Any) -> dict[str, Any]:
    spec = {
        "prompt": f"a red fox {task}",
        "width": side,
        "height": side,
        "num_inference_steps": steps,
        "seed": seed,
        **extra,
    }
    return {"task_id": task, "input": spec}


async def infer(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    on_line: Any = None,
) -> tuple[float, dict[str, Any]]:
    """Submit one request; (ms from submit to its last line, that line)."""
    started = time.perf_counter()
    last: dict[str, Any] = {}
    async with client.stream("POST", f"{url}/v1/infer/flux", json=body) as response:
        async for raw in response.aiter_lines():
            if raw.strip():
                last = json.loads(raw)
                if on_line is not None:
                    on_line(last)
    assert last.get("type") == "result", last
    return (time.perf_counter() - started) * 1000, last


def mixed(rng: random.Random, n: int, prefix: str) -> list[dict[str, Any]]:
    return [
        payload(f"{prefix}-{i}", rng.choice(SIDES), rng.choice(STEPS), rng.randrange(10**6))
        for i in range(n)
    ]


async def burst(client: httpx.AsyncClient, url: str, bodies: list[dict[str, Any]]) -> float:
    """All at once: images/s."""
    started = time.perf_counter()
    await asyncio.gather(*(infer(client, url, b) for b in bodies))
    return len(bodies) / (time.perf_counter() - started)


async def poisson(
    client: httpx.AsyncClient, url: str, bodies: list[dict[str, Any]], gaps: list[float]
) -> tuple[float, list[float]]:
    """Open-loop arrivals: each request at its time whatever the server does; (images/s over
    first submit -> last result, latencies)."""
    started = time.perf_counter()
    tasks = []
    due = started
    for body, gap in zip(bodies, gaps, strict=True):
        due += gap
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(infer(client, url, body)))
    results = await asyncio.gather(*tasks)
    return len(bodies) / (time.perf_counter() - started), [ms for ms, _ in results]


async def small_during_big(
    client: httpx.AsyncClient, url: str, args: argparse.Namespace, i: int
) -> tuple[float, float, float]:
    """(the small job alone, ms; while the big job runs, ms; the big job's step, ms)."""
    small = payload(f"small-alone-{i}", 64, 4, 7 + i)
    alone_ms, _ = await infer(client, url, small)
    stamps: list[float] = []
    started = asyncio.Event()

    def on_big(line: dict[str, Any]) -> None:
        if line.get("type") == "progress" and line["step"] > 0:
            stamps.append(time.perf_counter())
            if line["step"] >= 3:
                started.set()

    big = payload(f"big-{i}", args.big_size, args.big_steps, 100 + i)
    big_task = asyncio.create_task(infer(client, url, big, on_big))
    await asyncio.wait_for(started.wait(), timeout=120)
    during_ms, _ = await infer(client, url, {**small, "task_id": f"small-during-{i}"})
    await big_task
    step_ms = statistics.median(b - a for a, b in itertools.pairwise(stamps)) * 1000
    return alone_ms, during_ms, step_ms


def preview_seconds(url: str) -> tuple[float, float]:
    """The server's preview histogram: (sum of seconds, count)."""
    total = count = 0.0
    for line in httpx.get(f"{url}/metrics", follow_redirects=True).text.splitlines():
        if line.startswith("fluxgate_inference_preview_seconds_sum"):
            total = float(line.split()[-1])
        elif line.startswith("fluxgate_inference_preview_seconds_count"):
            count = float(line.split()[-1])
    return total, count


async def measure(urls: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    out: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=600) as client:
        for mode in MODES:  # warm-up: first uses of each shape and step count, not counted
            await burst(client, urls[mode], mixed(rng, 12, f"warm-{mode}"))
        # Saturation: the same burst of the mix on each, twice, interleaved. The window server's
        # rate sets the Poisson rate: near what the current batching sustains.
        bursts: dict[str, list[float]] = {m: [] for m in MODES}
        for r in range(2):
            bodies = mixed(rng, args.burst, f"burst{r}")
            for mode in MODES if r == 0 else tuple(reversed(MODES)):
                tagged = [{**b, "task_id": f"{mode}-{b['task_id']}"} for b in bodies]
                bursts[mode].append(await burst(client, urls[mode], tagged))
        out["burst_images_per_s"] = {m: round(statistics.median(v), 2) for m, v in bursts.items()}
        rate = args.rate or args.load * out["burst_images_per_s"]["window"]
        out["rate_per_s"] = round(rate, 2)

        rates: dict[str, list[float]] = {m: [] for m in MODES}
        latencies: dict[str, list[float]] = {m: [] for m in MODES}
        for r in range(args.rounds):
            bodies = mixed(rng, args.requests, f"r{r}")
            gaps = [rng.expovariate(rate) for _ in bodies]
            order = MODES if r % 2 == 0 else tuple(reversed(MODES))
            for mode in order:
                tagged = [{**b, "task_id": f"{mode}-{b['task_id']}"} for b in bodies]
                images_per_s, lat = await poisson(client, urls[mode], tagged, gaps)
                rates[mode].append(images_per_s)
                latencies[mode] += lat
        for mode in MODES:
            out[mode] = {
                "images_per_s": round(statistics.median(rates[mode]), 2),
                **{f"{k}_ms": v for k, v in summary_ms(latencies[mode]).items()},
            }

        smalls: dict[str, list[tuple[float, float, float]]] = {m: [] for m in MODES}
        for i in range(args.repeats):
            for mode in MODES if i % 2 == 0 else tuple(reversed(MODES)):
                smalls[mode].append(await small_during_big(client, urls[mode], args, i))
        for mode in MODES:
            alone, during, step = (statistics.median(v) for v in zip(*smalls[mode], strict=True))
            out[mode].update(
                small_alone_ms=round(alone, 1),
                small_during_big_ms=round(during, 1),
                big_step_ms=round(step, 1),
                small_extra_big_steps=round((during - alone) / step, 1),
            )

        url = urls["continuous"]
        before = preview_seconds(url)
        with_previews: list[float] = []
        without: list[float] = []
        for r in range(2):
            plain = [payload(f"pv{r}-{i}", 256, 8, i) for i in range(args.preview_burst)]
            asked = [{**b, "input": {**b["input"], "preview": True}} for b in plain]
            for name in ("off", "on") if r == 0 else ("on", "off"):
                bodies = asked if name == "on" else plain
                tagged = [{**b, "task_id": f"{name}-{b['task_id']}"} for b in bodies]
                (with_previews if name == "on" else without).append(
                    await burst(client, url, tagged)
                )
        after = preview_seconds(url)
        previews = after[1] - before[1]
        out["previews"] = {
            "on_images_per_s": round(statistics.median(with_previews), 2),
            "off_images_per_s": round(statistics.median(without), 2),
            "count": int(previews),
            "per_request": round(previews / (2 * args.preview_burst), 2),
            "mean_ms": round((after[0] - before[0]) / max(1, previews) * 1000, 3),
        }
    return out


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="fluxgate-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        servers = {
            mode: start_server(tmp, mode, args.max_batch, args.step_delay_ms) for mode in MODES
        }
        try:
            # Both load at once: a few seconds less of the 2 cores' time.
            waits = [
                threading.Thread(
                    target=wait_http_ok,
                    args=(f"{url}/readyz",),
                    kwargs={"timeout": 300, "proc": proc},
                )
                for proc, url in servers.values()
            ]
            for wait in waits:
                wait.start()
            for wait in waits:
                wait.join()
            for proc, url in servers.values():
                wait_http_ok(f"{url}/readyz", timeout=10, proc=proc)
            out = asyncio.run(measure({m: url for m, (_, url) in servers.items()}, args))
        finally:
            for proc, _ in servers.values():
                proc.stop()

    c, w = out["continuous"], out["window"]
    saturated = out["burst_images_per_s"]
    print(
        f"(a) saturation, {args.burst} mixed requests at once: {saturated['continuous']} vs "
        f"{saturated['window']} images/s "
        f"({saturated['continuous'] / saturated['window']:.2f}x)"
    )
    print(
        f"    Poisson {args.requests} x {args.rounds} rounds per server at {out['rate_per_s']}/s "
        f"(window's burst rate x {args.load}), sides {SIDES}, {STEPS.start}-{STEPS.stop - 1} steps"
    )
    print(f"{'':<12}{'images/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for name, s in (("continuous", c), ("window", w)):
        print(f"{name:<12}{s['images_per_s']:>10.2f}{s['p50_ms']:>9.0f}{s['p99_ms']:>9.0f}")
    throughput = c["images_per_s"] / w["images_per_s"]
    tail = c["p99_ms"] / w["p99_ms"]
    print(f"continuous / window: images/s {throughput:.2f}x, p99 {tail:.2f}x")
    print(
        f"(b) 64x64 4 steps alone / during a {args.big_size}x{args.big_size} {args.big_steps}-step "
        f"job (medians of {args.repeats})"
    )
    for name, s in (("continuous", c), ("window", w)):
        print(
            f"{name:<12}{s['small_alone_ms']:>8.0f} / {s['small_during_big_ms']:.0f} ms: "
            f"+{s['small_extra_big_steps']} big steps of {s['big_step_ms']:.0f} ms"
        )
    p = out["previews"]
    print(
        f"(c) previews, burst of {args.preview_burst} 256x256 8-step requests: "
        f"{p['on_images_per_s']} images/s on vs {p['off_images_per_s']} off; "
        f"{p['per_request']} previews a request, {p['mean_ms']} ms each (server-side)"
    )
    path = write_result(
        "continuous",
        {
            "continuous_images_per_s": c["images_per_s"],
            "window_images_per_s": w["images_per_s"],
            "images_per_s_ratio": round(throughput, 2),
            "continuous_saturated_images_per_s": saturated["continuous"],
            "window_saturated_images_per_s": saturated["window"],
            "continuous_p50_ms": c["p50_ms"],
            "continuous_p99_ms": c["p99_ms"],
            "window_p50_ms": w["p50_ms"],
            "window_p99_ms": w["p99_ms"],
            "p99_ratio": round(tail, 2),
            "small_alone_ms": c["small_alone_ms"],
            "small_during_big_ms": c["small_during_big_ms"],
            "small_during_big_extra_big_steps": c["small_extra_big_steps"],
            "big_step_ms": c["big_step_ms"],
            "window_small_alone_ms": w["small_alone_ms"],
            "window_small_during_big_ms": w["small_during_big_ms"],
            "preview_on_images_per_s": p["on_images_per_s"],
            "preview_off_images_per_s": p["off_images_per_s"],
            "preview_mean_ms": p["mean_ms"],
            "previews_per_request": p["per_request"],
            "detail": out,
            "machine": machine(),
            "params": {
                "rounds": args.rounds,
                "requests": args.requests,
                "burst": args.burst,
                "rate_per_s": out["rate_per_s"],
                "load": args.load,
                "sides": list(SIDES),
                "steps": [STEPS.start, STEPS.stop - 1],
                "max_batch_size": args.max_batch,
                "step_delay_ms": args.step_delay_ms,
                "big": [args.big_size, args.big_steps],
                "small": [64, 4],
                "repeats": args.repeats,
                "preview_burst": args.preview_burst,
                "model": os.environ.get("FLUXGATE_FLUX_MODEL") or "tiny-flux",
            },
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
