"""Fair share across API keys vs first come, first served (issue #19, item 4).

With auth on, key A submits `--a-jobs` jobs at once (64x64, 2 steps; a per-step delay stands in
for GPU time, so the queue builds up and the run is dominated by queueing, not by the 2 cores);
key B then submits `--b-jobs`. B's wait (submit -> start, from the job views) is measured with
fair share on (`FLUXGATE_FAIR_SHARE=true`) and off (FIFO), each mode on a fresh stack and a fresh
redis-server per round, interleaved fair, fifo, fair, fifo ... (`--rounds` of each), medians.
Also A's total (its first job's submit -> its last job's finish), B's submit -> finish, and the
failed jobs (must be 0). Before the measured jobs, a third key's warm-up jobs run on each stack
(a worker pool process's first job takes a second or more). Per round, to tell noise from cost:
the time until every job (B's too) finished, the model server's batches, and the CPU seconds
the whole stack spent on the jobs.

Goal: B's p50 wait >= 10x shorter with fair share, and A's total <= 1.1x FIFO's. Under fair share
B's jobs run among A's, so A's total includes them (210 jobs of work against FIFO's 200, +5%).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine, percentile, write_result
from devtools.procs import Proc, poll_until, start_redis, start_stack, wait_stack_ready

ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"  # noqa: S105 - a throwaway local stack's
TERMINAL = {"succeeded", "failed", "canceled", "expired"}
WIDTH = HEIGHT = 64
STEPS = 2
# The keys' limits: never the bottleneck (every job of A is active at once).
KEY_LIMITS = {"rate": "1000/s", "burst": 2000, "max_active": 1000}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each mode")
    parser.add_argument("--a-jobs", type=int, default=200)
    parser.add_argument("--b-jobs", type=int, default=10)
    parser.add_argument("--parallel", type=int, default=20, help="submits in flight at once")
    parser.add_argument("--step-delay-ms", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4, help="worker slots")
    parser.add_argument("--max-batch", type=int, default=4, help="inference max batch size")
    parser.add_argument("--ready", type=int, default=2, help="FLUXGATE_FAIR_SHARE_READY")
    parser.add_argument("--deadline", type=float, default=180.0, help="seconds per round")
    return parser.parse_args()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def submit_all(
    gateway: str, tokens: dict[str, str], counts: dict[str, int], parallel: int
) -> dict[str, list[str]]:
    """Each key's jobs in turn (all of A's accepted before B's first): task ids per key."""
    ids: dict[str, list[str]] = {}
    gate = asyncio.Semaphore(parallel)
    async with httpx.AsyncClient(timeout=30) as client:

        async def one(key: str, i: int) -> str:
            body = {
                "prompt": f"{key} fox {i}",
                "width": WIDTH,
                "height": HEIGHT,
                "num_inference_steps": STEPS,
                "seed": i,
            }
            headers = bearer(tokens[key])
            async with gate:
                answer = await client.post(f"{gateway}/flux", json=body, headers=headers)
            if answer.status_code != 202:
                raise AssertionError(f"submit of {key}#{i}: {answer.status_code} {answer.text}")
            return str(answer.json()["task_id"])

        for key, count in counts.items():
            ids[key] = list(await asyncio.gather(*(one(key, i) for i in range(count))))
    return ids


def wait_all_terminal(
    client: httpx.Client,
    gateway: str,
    tokens: dict[str, str],
    ids: dict[str, list[str]],
    **kw: Any,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Poll until every job is terminal; the final views per key and task id. Each pass looks at
    the unfinished jobs in submit order and stops at the first one still going, so polling costs
    a few requests a pass, not hundreds, while the stack works."""
    views: dict[str, dict[str, dict[str, Any]]] = {key: {} for key in ids}

    def check() -> bool:
        for key, task_ids in ids.items():
            for task_id in task_ids:
                if task_id in views[key]:
                    continue
                view = client.get(f"{gateway}/tasks/{task_id}", headers=bearer(tokens[key]))
                view.raise_for_status()
                if view.json()["status"] not in TERMINAL:
                    break
                views[key][task_id] = view.json()
        return all(len(views[key]) == len(task_ids) for key, task_ids in ids.items())

    poll_until(check, what="every job terminal", **kw)
    return views


def batches(inference: str) -> tuple[float, float]:
    """The inference server's pipeline calls and images so far (its Prometheus histogram)."""
    calls = images = 0.0
    for line in httpx.get(f"{inference}/metrics/").text.splitlines():
        if line.startswith("fluxgate_inference_batch_images_count"):
            calls = float(line.split()[-1])
        elif line.startswith("fluxgate_inference_batch_images_sum"):
            images = float(line.split()[-1])
    return calls, images


def cpu_s(procs: list[Proc]) -> float:
    """CPU seconds used so far by these processes and their children (the worker's pool)."""
    total = 0.0
    for proc in procs:
        if proc.popen is None:
            continue
        try:
            root = psutil.Process(proc.popen.pid)
            for each in [root, *root.children(recursive=True)]:
                times = each.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def warm_up(gateway: str, token: str, count: int, deadline: float) -> None:
    """Jobs of a third key first, until they all succeeded: every worker pool process has made
    its clients and imported its handlers (the first job of each one takes a second or more)
    and the inference server has run a batch, so neither mode pays for that."""
    ids = asyncio.run(submit_all(gateway, {"warm": token}, {"warm": count}, count))
    with httpx.Client(timeout=30) as client:
        views = wait_all_terminal(
            client, gateway, {"warm": token}, ids, timeout=deadline, interval=0.1
        )
    failed = [v["status"] for v in views["warm"].values() if v["status"] != "succeeded"]
    if failed:
        raise AssertionError(f"warm-up jobs did not succeed: {failed}")


def one_round(mode: str, models: Path, args: argparse.Namespace) -> dict[str, Any]:
    extra_env = {
        "FLUXGATE_AUTH": "true",
        "FLUXGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "FLUXGATE_FAIR_SHARE": "true" if mode == "fair" else "false",
        "FLUXGATE_FAIR_SHARE_READY": str(args.ready),
        "FLUXGATE_INFERENCE_STEP_DELAY_MS": str(args.step_delay_ms),
        "FLUXGATE_INFERENCE_MAX_BATCH_SIZE": str(args.max_batch),
        "FLUXGATE_INFERENCE_DEVICE": "cpu",
        # The tiny model is built once and shared by every round's fresh stack.
        "FLUXGATE_MODEL_CACHE_DIR": str(models),
        "FLUXGATE_LOG_LEVEL": "WARNING",
    }
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"fluxgate-fair-{mode}-") as raw_tmp:
        tmp = Path(raw_tmp)
        redis_proc, redis_url = start_redis(tmp)
        ports, _env, procs = start_stack(
            redis_url, tmp, extra_env=extra_env, worker_concurrency=args.concurrency
        )
        try:
            wait_stack_ready(ports, procs)
            stack_up_s = time.perf_counter() - began
            gateway = f"http://127.0.0.1:{ports['gateway']}"
            tokens = {}
            for key in ("A", "B", "warm"):
                made = httpx.post(
                    f"{gateway}/admin/keys",
                    json={"name": f"bench-{key}", **KEY_LIMITS},
                    headers=bearer(ADMIN_TOKEN),
                )
                if made.status_code != 201:
                    raise AssertionError(f"key {key}: {made.status_code} {made.text}")
                tokens[key] = made.json()["token"]
            warm_up(gateway, tokens["warm"], 2 * args.concurrency, args.deadline)
            inference = f"http://127.0.0.1:{ports['inference']}"
            calls_before, images_before = batches(inference)
            stack = [redis_proc, *procs.values()]
            cpu_before = cpu_s(stack)
            started = time.perf_counter()
            ids = asyncio.run(
                submit_all(gateway, tokens, {"A": args.a_jobs, "B": args.b_jobs}, args.parallel)
            )
            submitted_s = time.perf_counter() - started
            with httpx.Client(timeout=30) as client:
                views = wait_all_terminal(
                    client,
                    gateway,
                    tokens,
                    ids,
                    timeout=args.deadline,
                    interval=0.25,
                    watch=list(procs.values()),
                )
            wall_s = time.perf_counter() - started
            calls_after, images_after = batches(inference)
            stack_cpu_s = cpu_s(stack) - cpu_before
        finally:
            for proc in procs.values():
                proc.stop()
            redis_proc.stop()
    result = summarize(mode, views, submitted_s, wall_s)
    result["stack_up_s"] = round(stack_up_s, 1)
    # What the stack (Redis, gateway, worker and its pool, model server ...) spent on CPU for
    # these jobs: fair share's own work (staging, releasing) shows here, less noisy than times.
    result["stack_cpu_s"] = round(stack_cpu_s, 1)
    # The model server's pipeline calls for these jobs: fewer, fuller batches finish sooner.
    result["batches"] = int(calls_after - calls_before)
    result["images_per_batch"] = round(
        (images_after - images_before) / max(1, result["batches"]), 2
    )
    return result


def summarize(
    mode: str, views: dict[str, dict[str, dict[str, Any]]], submitted_s: float, wall_s: float
) -> dict[str, Any]:
    def span_ms(view: dict[str, Any], start: str, end: str) -> float:
        return (epoch(view[end]) - epoch(view[start])) * 1000

    a, b = list(views["A"].values()), list(views["B"].values())
    everything = a + b
    failed = sum(view["status"] != "succeeded" for view in everything)
    ok_a = [v for v in a if v["started_at"] and v["finished_at"]]
    ok_b = [v for v in b if v["started_at"] and v["finished_at"]]
    b_wait = [span_ms(v, "created_at", "started_at") for v in ok_b]
    b_finish = [span_ms(v, "created_at", "finished_at") for v in ok_b]
    a_wait = [span_ms(v, "created_at", "started_at") for v in ok_a]
    first_a = min(epoch(v["created_at"]) for v in a)
    a_total = (max(epoch(v["finished_at"]) for v in ok_a) - first_a) * 1000
    # Every job, B's included: under fair share B's 10 run among A's, so A's last job ends
    # after all of them; under FIFO after A's only.
    all_total = (max(epoch(v["finished_at"]) for v in ok_a + ok_b) - first_a) * 1000
    return {
        "mode": mode,
        "b_wait_p50_ms": round(statistics.median(b_wait), 1),
        "b_wait_p99_ms": round(percentile(b_wait, 99), 1),
        "b_finish_p50_ms": round(statistics.median(b_finish), 1),
        "b_finish_max_ms": round(max(b_finish), 1),
        "a_wait_p50_ms": round(statistics.median(a_wait), 1),
        "a_total_ms": round(a_total, 1),
        "all_total_ms": round(all_total, 1),
        "jobs": len(everything),
        "failed": failed,
        "submit_s": round(submitted_s, 2),
        "wall_s": round(wall_s, 2),
    }


def main() -> None:
    args = parse_args()
    began = time.perf_counter()
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fluxgate-fair-models-") as models:
        for index in range(args.rounds):
            for mode in ("fair", "fifo"):
                r = one_round(mode, Path(models), args)
                r["round"] = index + 1
                rounds.append(r)
                print(
                    f"  round {index + 1} {mode}: B wait p50 {r['b_wait_p50_ms']:.0f} ms, p99 "
                    f"{r['b_wait_p99_ms']:.0f} ms; B finish p50 {r['b_finish_p50_ms']:.0f} ms; "
                    f"A total {r['a_total_ms']:.0f} ms, all {r['all_total_ms']:.0f} ms; "
                    f"{r['batches']} batches ({r['images_per_batch']} images each); "
                    f"stack CPU {r['stack_cpu_s']} s; "
                    f"{r['failed']} of {r['jobs']} failed (stack up {r['stack_up_s']} s, "
                    f"submits {r['submit_s']} s, jobs {r['wall_s']} s)",
                    flush=True,
                )

    def median(mode: str, key: str) -> float:
        return round(statistics.median(r[key] for r in rounds if r["mode"] == mode), 1)

    keys = ["b_wait_p50_ms", "b_wait_p99_ms", "b_finish_p50_ms", "b_finish_max_ms"]
    keys += ["a_wait_p50_ms", "a_total_ms", "all_total_ms", "batches", "images_per_batch"]
    keys += ["stack_cpu_s"]
    result: dict[str, Any] = {
        f"{mode}_{key}": median(mode, key) for mode in ("fair", "fifo") for key in keys
    }
    b_ratio = round(result["fifo_b_wait_p50_ms"] / result["fair_b_wait_p50_ms"], 2)
    a_ratio = round(result["fair_a_total_ms"] / result["fifo_a_total_ms"], 3)
    failed = sum(r["failed"] for r in rounds)
    result |= {
        "b_wait_p50_ratio": b_ratio,
        "a_total_ratio": a_ratio,
        "jobs": sum(r["jobs"] for r in rounds),
        "failed": failed,
        "goal_met": b_ratio >= 10 and a_ratio <= 1.1 and failed == 0,
        "rounds": rounds,
        "elapsed_s": round(time.perf_counter() - began, 1),
        "machine": machine(),
        "params": {
            "auth": True,
            "rounds_per_mode": args.rounds,
            "order": "fair, fifo, fair, fifo ...; a fresh stack and redis-server each round",
            "a_jobs": args.a_jobs,
            "b_jobs": args.b_jobs,
            "submit_parallel": args.parallel,
            "width": WIDTH,
            "height": HEIGHT,
            "steps": STEPS,
            "step_delay_ms": args.step_delay_ms,
            "worker_concurrency": args.concurrency,
            "inference_max_batch_size": args.max_batch,
            "fair_share_ready": args.ready,
            "key_limits": KEY_LIMITS,
            "model": "tiny",
        },
    }
    path = write_result("fairness", result)
    print(
        f"{args.a_jobs} jobs of key A, then {args.b_jobs} of key B; 64x64, 2 steps, "
        f"{args.step_delay_ms} ms/step; {args.concurrency} worker slots, batches of "
        f"<= {args.max_batch}; medians of {args.rounds} rounds each"
    )
    print(
        f"{'mode':<6}{'B wait p50':>12}{'B wait p99':>12}{'B finish p50':>14}{'A total':>10}"
        f"{'all jobs':>10}"
    )
    for mode in ("fair", "fifo"):
        print(
            f"{mode:<6}{result[f'{mode}_b_wait_p50_ms']:>10.0f}ms"
            f"{result[f'{mode}_b_wait_p99_ms']:>10.0f}ms"
            f"{result[f'{mode}_b_finish_p50_ms']:>12.0f}ms"
            f"{result[f'{mode}_a_total_ms']:>8.0f}ms"
            f"{result[f'{mode}_all_total_ms']:>8.0f}ms"
        )
    print(
        f"B p50 wait FIFO/fair {b_ratio}x (goal >= 10); A total fair/FIFO {a_ratio}x "
        f"(goal <= 1.1); {failed} failed; goal {'met' if result['goal_met'] else 'NOT met'}; "
        f"{result['elapsed_s']} s -> {path}"
    )
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
