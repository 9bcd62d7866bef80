"""Submit -> WebSocket `succeeded` for one 256x256, 4-step FLUX job at a time, on the real stack.

Starts redis and every service on free ports (tiny model, CPU), warms up, then runs N jobs one
after another and reports the end-to-end time, the model's compute time and the difference (what
Fluxgate itself adds: queueing, hops, events, storing the image).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine, summary_ms, write_result
from devtools.procs import start_redis, start_stack, wait_stack_ready

BODY = {"prompt": "a red fox", "width": 256, "height": 256, "num_inference_steps": 4, "seed": 7}


def one_job(client: httpx.Client, gateway: str) -> tuple[float, float, float]:
    """(submit ms, submit->succeeded ms, compute ms) of one job."""
    started = time.perf_counter()
    answer = client.post(f"{gateway}/flux", json=BODY, timeout=30)
    submitted = time.perf_counter()
    answer.raise_for_status()
    with connect(answer.json()["urls"]["ws"], compression=None) as ws:
        for message in ws:
            view = json.loads(message)
            if view["status"] in ("succeeded", "failed", "canceled", "expired"):
                break
    finished = time.perf_counter()
    if view["status"] != "succeeded":
        raise RuntimeError(f"job ended {view['status']}: {view['error']}")
    return (
        (submitted - started) * 1000,
        (finished - started) * 1000,
        float(view["result"]["timings"]["compute_ms"]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fluxgate-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        redis_proc, redis_url = start_redis(tmp)
        ports, _env, procs = start_stack(redis_url, tmp)
        try:
            wait_stack_ready(ports, procs)
            gateway = f"http://127.0.0.1:{ports['gateway']}"
            # One client for all jobs, as a real caller keeps its connection (and TLS context).
            with httpx.Client() as client:
                for _ in range(args.warmup):
                    one_job(client, gateway)
                samples = [one_job(client, gateway) for _ in range(args.jobs)]
        finally:
            for proc in procs.values():
                proc.stop()
            redis_proc.stop()

    submit = summary_ms([s[0] for s in samples])
    total = summary_ms([s[1] for s in samples])
    compute = summary_ms([s[2] for s in samples])
    overhead = summary_ms([s[1] - s[2] for s in samples])
    print(f"{args.jobs} jobs, 256x256, 4 steps, tiny FLUX on CPU, one at a time")
    print(f"{'ms':<28}{'p50':>8}{'p95':>8}{'max':>8}")
    for label, stats in (
        ("submit (POST /flux)", submit),
        ("submit -> succeeded", total),
        ("model compute", compute),
        ("overhead (total - compute)", overhead),
    ):
        print(f"{label:<28}{stats['p50']:>8}{stats['p95']:>8}{stats['max']:>8}")
    path = write_result(
        "submit_to_result",
        {
            "submit_p50_ms": submit["p50"],
            "result_p50_ms": total["p50"],
            "result_p95_ms": total["p95"],
            "compute_p50_ms": compute["p50"],
            "overhead_p50_ms": overhead["p50"],
            "overhead_p95_ms": overhead["p95"],
            "jobs": args.jobs,
            "machine": machine(),
            "params": {
                "width": 256,
                "height": 256,
                "steps": 4,
                "concurrency": 1,
                "auth": False,
                "model": "tiny-flux",
            },
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
