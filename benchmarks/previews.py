"""What live previews cost: submit -> WebSocket `succeeded` of one job at a time without previews,
with previews at the default rate, and with one asked for every step, interleaved on one stack.

Starts redis and every service on free ports (tiny model, CPU, each step slowed to a GPU-like
50 ms so previews come at the rate they would on a real model), then runs the three kinds in turn,
round after round. Reports the end-to-end time and the model's compute time per kind and their
difference to no previews; the views and previews each job got; the size of a preview; the model
server's time to make one (its `fluxgate_inference_preview_seconds`); and the worker's own time to
store one (decode, check, write), measured in this process.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apps.common.storage.local import LocalOutputStore
from apps.common.storage.names import fixed_key
from apps.common.wire.inference import InferenceProgress
from apps.worker.previews import store_preview
from benchmarks.common import machine, summary_ms, write_result
from devtools.procs import start_redis, start_stack, wait_stack_ready

SIZE, STEPS, STEP_DELAY_MS = 512, 20, 50
KINDS: dict[str, dict[str, Any]] = {
    "off": {},
    "default": {"preview": True},
    "every_step": {"preview": True, "preview_every_n_steps": 1},
}


def one_job(client: httpx.Client, gateway: str, extra: dict[str, Any], seed: int) -> dict[str, Any]:
    body = {"prompt": "a red fox", "width": SIZE, "height": SIZE, "num_inference_steps": STEPS}
    started = time.perf_counter()
    answer = client.post(f"{gateway}/flux", json={**body, "seed": seed, **extra}, timeout=30)
    answer.raise_for_status()
    views = []
    with connect(answer.json()["urls"]["ws"], compression=None) as ws:
        for message in ws:
            views.append(json.loads(message))
            if views[-1]["status"] in ("succeeded", "failed", "canceled", "expired"):
                break
    finished = time.perf_counter()
    final = views[-1]
    if final["status"] != "succeeded":
        raise RuntimeError(f"job ended {final['status']}: {final['error']}")
    urls = list(dict.fromkeys(v["preview"]["url"] for v in views if v.get("preview")))
    sizes = [len(client.get(url, timeout=10).content) for url in urls]
    return {
        "total_ms": (finished - started) * 1000,
        "compute_ms": float(final["result"]["timings"]["compute_ms"]),
        "progress_views": sum(1 for v in views if v["event"] == "progress"),
        "previews": len(urls),
        "preview_bytes": sizes,
    }


def preview_seconds(client: httpx.Client, inference: str) -> tuple[float, float]:
    """The model server's time making previews so far: (seconds in all, steps that made one)."""
    text = client.get(f"{inference}/metrics", timeout=10, follow_redirects=True).text
    found = {"sum": 0.0, "count": 0.0}
    for family in text_string_to_metric_families(text):
        if family.name == "fluxgate_inference_preview_seconds":
            for sample in family.samples:
                kind = sample.name.rsplit("_", 1)[1]
                if kind in found:
                    found[kind] += sample.value
    return found["sum"], found["count"]


def store_time_ms(sample: bytes, tmp: Path, reps: int = 200) -> float:
    """The worker's median time to take one preview from a progress line to the store."""
    outputs = LocalOutputStore(tmp / "store", public_base="http://x", name_key=fixed_key("k"))
    line = InferenceProgress(step=1, total=STEPS, preview_b64=base64.b64encode(sample).decode())
    times = []
    for step in range(reps):
        started = time.perf_counter()
        store_preview("bench", line.model_copy(update={"step": step}), outputs)
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()

    samples: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    with tempfile.TemporaryDirectory(prefix="fluxgate-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        redis_proc, redis_url = start_redis(tmp)
        ports, _env, procs = start_stack(
            redis_url, tmp, extra_env={"FLUXGATE_INFERENCE_STEP_DELAY_MS": str(STEP_DELAY_MS)}
        )
        try:
            wait_stack_ready(ports, procs)
            gateway = f"http://127.0.0.1:{ports['gateway']}"
            inference = f"http://127.0.0.1:{ports['inference']}"
            with httpx.Client() as client:
                seed = 0
                rendered_before = preview_seconds(client, inference)
                for round_ in range(args.warmup + args.rounds):
                    for kind, extra in KINDS.items():
                        seed += 1  # identical requests in flight would share a run
                        result = one_job(client, gateway, extra, seed)
                        if round_ >= args.warmup:
                            samples[kind].append(result)
                    if round_ == args.warmup - 1:
                        rendered_before = preview_seconds(client, inference)
                rendered_after = preview_seconds(client, inference)
        finally:
            for proc in procs.values():
                proc.stop()
            redis_proc.stop()
        sizes = [size for s in samples["every_step"] for size in s["preview_bytes"]]
        typical = io.BytesIO()
        Image.effect_noise((SIZE // 8, SIZE // 8), 64).convert("RGB").save(
            typical, format="WEBP", quality=70
        )
        store_ms = store_time_ms(typical.getvalue(), tmp)

    base = summary_ms([s["total_ms"] for s in samples["off"]])["p50"]
    rows: dict[str, dict[str, Any]] = {}
    print(f"{args.rounds} rounds, {SIZE}x{SIZE}, {STEPS} steps of {STEP_DELAY_MS} ms, tiny FLUX")
    print(f"{'kind':<12}{'total p50':>10}{'vs off':>9}{'compute':>9}{'views':>7}{'previews':>10}")
    for kind, results in samples.items():
        total = summary_ms([s["total_ms"] for s in results])
        compute = summary_ms([s["compute_ms"] for s in results])
        rows[kind] = {
            "total_p50_ms": total["p50"],
            "total_p95_ms": total["p95"],
            "compute_p50_ms": compute["p50"],
            "extra_p50_ms": round(total["p50"] - base, 1),
            "progress_views_per_job": statistics.median(s["progress_views"] for s in results),
            "previews_per_job": statistics.median(s["previews"] for s in results),
        }
        row = rows[kind]
        print(
            f"{kind:<12}{total['p50']:>10}{row['extra_p50_ms']:>+9}{compute['p50']:>9}"
            f"{row['progress_views_per_job']:>7}{row['previews_per_job']:>10}"
        )
    preview_bytes = round(statistics.median(sizes)) if sizes else 0
    render_s, render_steps = (b - a for a, b in zip(rendered_before, rendered_after, strict=True))
    render_ms = round(render_s / render_steps * 1000, 3) if render_steps else 0.0
    print(f"model server: {render_ms} ms to make one (latents to RGB, WebP; {render_steps:.0f})")
    print(f"preview: {SIZE // 8}x{SIZE // 8} WebP, median {preview_bytes} bytes")
    print(f"worker: {store_ms} ms to store one (decode, check, write; median of 200)")
    path = write_result(
        "previews",
        {
            **{f"{kind}_{key}": value for kind, row in rows.items() for key, value in row.items()},
            "preview_bytes_p50": preview_bytes,
            "worker_store_ms": store_ms,
            "server_render_ms": render_ms,
            "rounds": args.rounds,
            "machine": machine(),
            "params": {
                "width": SIZE,
                "height": SIZE,
                "steps": STEPS,
                "step_delay_ms": STEP_DELAY_MS,
                "preview_interval_ms": 250,
                "concurrency": 1,
                "auth": False,
                "model": "tiny-flux",
            },
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
