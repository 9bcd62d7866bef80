"""One notifier process fanning out to 10,000 WebSocket subscribers (100 per task, 100 tasks; the
clients live in another process). All 100 tasks get their final event at once; we measure the
time from sending the events to each subscriber holding its final view.
Goal (docs/benchmarks.md): all 10,000 connected, p99 <= 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apps.common.jobs.record import new_job
from apps.common.redis import keys
from apps.common.security.signing import sign_internal
from apps.common.wire.contracts import EventKind, TaskEvent
from benchmarks.common import machine, summary_ms, write_result
from devtools.procs import TRANSIENT, free_port, poll_until, python_module, stack_env, start_redis

SECRET = secrets.token_hex(16)


def _raise_file_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def publish_all(notifier: str, task_ids: list[str]) -> float:
    """Send every task's final event at once; returns when the sending began."""
    bodies = [
        TaskEvent(task_id=task_id, event=EventKind.CANCELED).model_dump_json().encode()
        for task_id in task_ids
    ]
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=100)) as client:
        sent_at = time.time()
        answers = await asyncio.gather(
            *(
                client.post(
                    f"{notifier}/internal/events",
                    content=body,
                    headers={"content-type": "application/json", **sign_internal(body, SECRET)},
                )
                for body in bodies
            )
        )
    bad = [a.status_code for a in answers if a.status_code != 200]
    if bad:
        raise SystemExit(f"events refused: {bad[:5]}")
    return sent_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--per-task", type=int, default=100)
    parser.add_argument(
        "--client-processes",
        type=int,
        default=1,
        help="processes holding the subscribers (default 1, as docs/benchmarks.md has it)",
    )
    args = parser.parse_args()
    _raise_file_limit()

    with tempfile.TemporaryDirectory(prefix="fluxgate-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        redis_proc, redis_url = start_redis(tmp)
        port = free_port()
        ports = {"gateway": 1, "notifier": port, "balancer": 1, "inference": 1}
        env = {
            **stack_env(redis_url, tmp, ports),
            "FLUXGATE_INTERNAL_SECRET": SECRET,
            "FLUXGATE_LOG_LEVEL": "WARNING",
        }
        notifier_log = (tmp / "notifier.log").open("wb")
        notifier = subprocess.Popen(
            python_module("apps.notifier"),
            env=env,
            stdout=notifier_log,
            stderr=subprocess.STDOUT,
            preexec_fn=_raise_file_limit,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            poll_until(
                lambda: httpx.get(f"{base}/readyz").status_code == 200,
                timeout=30,
                what="the notifier",
                retry_on=TRANSIENT,
            )
            client = redis.Redis.from_url(redis_url)
            task_ids = []
            for _ in range(args.tasks):
                record = new_job("flux", {"prompt": "fan-out"})
                client.hset(keys.job_key(record.task_id), mapping=record.to_hash())  # type: ignore[arg-type]
                task_ids.append(record.task_id)
            # Each client process takes a share of the tasks (all 100 subscribers of a task in one).
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
            sent_at = asyncio.run(publish_all(base, task_ids))
            outcome: dict[str, list[Any]] = {"received": [], "errors": []}
            for index, client_proc in enumerate(clients):
                client_proc.wait(timeout=600)
                part = json.loads((tmp / f"received-{index}.json").read_text())
                outcome["received"] += part["received"]
                outcome["errors"] += part["errors"]
        finally:
            notifier.terminate()
            notifier.wait(timeout=30)
            redis_proc.stop()

    latencies = [(at - sent_at) * 1000 for at in outcome["received"]]
    wanted = args.tasks * args.per_task
    stats = summary_ms(latencies) if latencies else {"p50": 0, "p95": 0, "p99": 0, "max": 0}
    print(
        f"{connected}/{wanted} subscribers connected in {connect_s:.1f} s; "
        f"{len(latencies)} got their final view"
    )
    print(
        f"event -> subscriber: p50 {stats['p50']} ms, p95 {stats['p95']} ms, "
        f"p99 {stats['p99']} ms, max {stats['max']} ms"
    )
    if outcome["errors"]:
        print("client errors:", outcome["errors"])
    path = write_result(
        "fanout",
        {
            "subscribers": wanted,
            "connected": connected,
            "delivered": len(latencies),
            "p50_ms": stats["p50"],
            "p99_ms": stats["p99"],
            "max_ms": stats["max"],
            "connect_seconds": round(connect_s, 2),
            "machine": machine(),
            "params": {
                "tasks": args.tasks,
                "per_task": args.per_task,
                "client_processes": args.client_processes,
                "compression": "off",
            },
        },
    )
    print(f"goal: all connected, p99 <= 250 ms -> wrote {path}")


if __name__ == "__main__":
    main()
