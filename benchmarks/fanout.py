"""One notifier process fanning out to 10,000 WebSocket subscribers (100 per task, 100 tasks; the
clients live in another process), against its anchor in the same run: a bare `websockets` server
(`benchmarks/servers/bare_fanout.py`) with the same URLs, snapshot and protocol.

Rounds alternate notifier, bare, notifier, bare ... (3 each by default), each with a fresh server
process, fresh tasks and a fresh client process (`fanout_clients.py`). Once every subscriber has
its snapshot, all 100 tasks' final views are published on Redis at once (applied to the job
hashes first, then one PUBLISH each, as a peer notifier's ingest does), so both servers get the
same messages the same way. Measured per round: the time from publishing to each subscriber
holding its final view, and the server process's CPU seconds (user + system) over that phase,
scaled to 10,000 deliveries. Reported: medians over rounds and notifier/bare ratios.

Goal (docs/benchmarks.md): all 10,000 connected, p99 <= 1.2x the bare server's, same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apps.common.jobs.record import new_job
from apps.common.jobs.store import SyncJobStore
from apps.common.jobs.view import JobViews
from apps.common.redis import keys
from apps.common.wire.contracts import EventKind, TaskEvent
from benchmarks.common import machine, summary_ms, write_result
from devtools.procs import (
    ROOT,
    Proc,
    free_port,
    python_module,
    stack_env,
    start_redis,
    wait_http_ok,
)

SIDES = ("notifier", "bare")
PER_DELIVERIES = 10_000


def _raise_file_limit() -> None:
    # Inherited by every process started from here (servers and clients).
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_server(side: str, tmp: Path, redis_url: str, round_index: int) -> tuple[Proc, int]:
    port = free_port()
    ports = {"gateway": 1, "notifier": port, "balancer": 1, "inference": 1}
    env = {**stack_env(redis_url, tmp, ports), "FLUXGATE_LOG_LEVEL": "WARNING"}
    if side == "notifier":
        args = python_module("apps.notifier")
    else:
        args = python_module(
            "benchmarks.servers.bare_fanout",
            "--port",
            str(port),
            "--redis-url",
            redis_url,
            "--public-url",
            env["FLUXGATE_PUBLIC_URL"],
        )
    proc = Proc(side, args, env, tmp / f"{side}-{round_index}.log").start()
    wait_http_ok(f"http://127.0.0.1:{port}/readyz", timeout=60, proc=proc)
    return proc, port


def publish_finals(client: redis.Redis, views: JobViews, task_ids: list[str]) -> float:
    """Apply every task's final event, then publish all the views at once; returns when the
    publishing began."""
    store = SyncJobStore(client, ttl_s=3600)
    texts = []
    for task_id in task_ids:
        outcome = store.apply(TaskEvent(task_id=task_id, event=EventKind.CANCELED))
        assert outcome.record is not None and outcome.applied
        texts.append(views.render(outcome.record, EventKind.CANCELED).model_dump_json())
    pipe = client.pipeline(transaction=False)
    for task_id, text in zip(task_ids, texts, strict=True):
        pipe.publish(keys.events_channel(task_id), text)
    sent_at = time.time()
    pipe.execute()
    return sent_at


def run_round(
    side: str, round_index: int, tmp: Path, redis_url: str, args: argparse.Namespace
) -> dict[str, Any]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    server, port = start_server(side, tmp, redis_url, round_index)
    views = JobViews(public_base="http://127.0.0.1:1", public_ws_base=f"ws://127.0.0.1:{port}")
    try:
        task_ids = []
        for _ in range(args.tasks):
            record = new_job("flux", {"prompt": "fan-out"})
            client.hset(keys.job_key(record.task_id), mapping=record.to_hash())  # type: ignore[arg-type]
            task_ids.append(record.task_id)
        # Each client process takes a share of the tasks (all subscribers of a task in one).
        shares = [task_ids[i :: args.client_processes] for i in range(args.client_processes)]
        clients = []
        for index, share in enumerate(shares):
            (tmp / f"tasks-{index}.json").write_text(json.dumps(share))
            clients.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(Path(__file__).with_name("fanout_clients.py")),
                        "--ws",
                        f"ws://127.0.0.1:{port}",
                        "--tasks",
                        str(tmp / f"tasks-{index}.json"),
                        "--per-task",
                        str(args.per_task),
                        "--out",
                        str(tmp / f"received-{index}.json"),
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        connect_started = time.perf_counter()
        connected = 0
        for client_proc in clients:
            assert client_proc.stdout is not None
            ready = client_proc.stdout.readline().split()
            connected += int(ready[1]) if len(ready) == 2 else 0
        connect_s = time.perf_counter() - connect_started
        assert server.popen is not None
        server_ps = psutil.Process(server.popen.pid)
        cpu_before = server_ps.cpu_times()
        sent_at = publish_finals(client, views, task_ids)
        received: list[float] = []
        errors: list[str] = []
        for index, client_proc in enumerate(clients):
            client_proc.wait(timeout=600)
            part = json.loads((tmp / f"received-{index}.json").read_text())
            received += part["received"]
            errors += part["errors"]
        cpu_after = server_ps.cpu_times()
    finally:
        server.stop()
    latencies = [(at - sent_at) * 1000 for at in received]
    stats = summary_ms(latencies) if latencies else {"p50": 0.0, "p99": 0.0, "max": 0.0}
    cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    return {
        "side": side,
        "round": round_index + 1,
        "connected": connected,
        "delivered": len(latencies),
        "p50_ms": stats["p50"],
        "p99_ms": stats["p99"],
        "max_ms": stats["max"],
        "cpu_s": round(cpu * PER_DELIVERIES / max(1, len(latencies)), 3),
        "connect_seconds": round(connect_s, 2),
        "errors": errors[:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--per-task", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server (default 3)")
    parser.add_argument(
        "--client-processes",
        type=int,
        default=1,
        help="processes holding the subscribers (default 1, as docs/benchmarks.md has it)",
    )
    args = parser.parse_args()
    _raise_file_limit()

    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fluxgate-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        redis_proc, redis_url = start_redis(tmp)
        try:
            for round_index in range(args.rounds):
                for side in SIDES:
                    result = run_round(side, round_index, tmp, redis_url, args)
                    rounds.append(result)
                    print(
                        f"round {result['round']} {side:8s} {result['connected']:6d} connected "
                        f"in {result['connect_seconds']:5.1f} s  p50 {result['p50_ms']:7.1f} ms"
                        f"  p99 {result['p99_ms']:7.1f} ms  cpu {result['cpu_s']:6.3f} s/10k"
                        + (f"  errors {result['errors']}" if result["errors"] else ""),
                        flush=True,
                    )
        finally:
            redis_proc.stop()

    def median(side: str, key: str) -> float:
        return round(statistics.median(r[key] for r in rounds if r["side"] == side), 3)

    def worst(side: str, key: str) -> int:
        return min(int(r[key]) for r in rounds if r["side"] == side)

    wanted = args.tasks * args.per_task
    result = {
        "subscribers": wanted,
        "connected": worst("notifier", "connected"),
        "delivered": worst("notifier", "delivered"),
        "p50_ms": median("notifier", "p50_ms"),
        "p99_ms": median("notifier", "p99_ms"),
        "max_ms": median("notifier", "max_ms"),
        "cpu_s": median("notifier", "cpu_s"),
        "connect_seconds": median("notifier", "connect_seconds"),
        "anchor_connected": worst("bare", "connected"),
        "anchor_delivered": worst("bare", "delivered"),
        "anchor_p50_ms": median("bare", "p50_ms"),
        "anchor_p99_ms": median("bare", "p99_ms"),
        "anchor_max_ms": median("bare", "max_ms"),
        "anchor_cpu_s": median("bare", "cpu_s"),
        "anchor_connect_seconds": median("bare", "connect_seconds"),
        "p99_ratio": round(median("notifier", "p99_ms") / median("bare", "p99_ms"), 2),
        "cpu_ratio": round(median("notifier", "cpu_s") / median("bare", "cpu_s"), 2),
        "rounds": rounds,
        "machine": machine(),
        "params": {
            "tasks": args.tasks,
            "per_task": args.per_task,
            "rounds": args.rounds,
            "order": "notifier, bare, alternating; a fresh server per round",
            "client_processes": args.client_processes,
            "events": "final views applied, then published on Redis at once (one PUBLISH each)",
            "cpu_s": f"server process user+system CPU seconds per {PER_DELIVERIES} deliveries",
            "compression": "off",
        },
    }
    path = write_result("fanout", result)
    print()
    print(f"{'server':10s} {'p50 ms':>8s} {'p99 ms':>8s} {'cpu s/10k':>10s}")
    for side, prefix in (("notifier", ""), ("bare", "anchor_")):
        print(
            f"{side:10s} {result[prefix + 'p50_ms']:8.1f} {result[prefix + 'p99_ms']:8.1f}"
            f" {result[prefix + 'cpu_s']:10.3f}"
        )
    print(
        f"notifier/bare: p99 {result['p99_ratio']}x (goal <= 1.2), cpu {result['cpu_ratio']}x;"
        f" {result['connected']}/{wanted} connected -> {path.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    main()
