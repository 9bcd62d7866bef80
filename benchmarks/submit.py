"""Accepted `POST /flux` per second from ONE server process, three servers side by side:

- fluxgate: the gateway as shipped (auth on: API key, rate limit and job cap checked per submit),
- bare:     FastAPI on uvicorn+uvloop validating the same model and LPUSHing it (the ceiling),
- seed:     Flask + Celery `apply_async` on gunicorn (1 process, 8 gthreads), the recipes' way.

Same load generator for all (wrk, 50 connections, one thread), interleaved rounds, medians.
Goal (docs/benchmarks.md): fluxgate >= 0.6x bare and >= 3x seed.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine, write_result
from devtools.procs import (
    ROOT,
    TRANSIENT,
    Proc,
    free_port,
    poll_until,
    python_module,
    stack_env,
    start_redis,
    wait_http_ok,
)

ADMIN_TOKEN = secrets.token_urlsafe(24)
LUA = Path(__file__).resolve().parent / "submit.lua"
VENV_BIN = Path(sys.executable).parent


def run_wrk(url: str, *, seconds: int, connections: int, token: str = "") -> dict[str, float]:
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(LUA), url],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "BENCH_TOKEN": token},
    )
    out = done.stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: .*", out)

    def latency_ms(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(match.group(1)), match.group(2)  # type: ignore[union-attr]
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {
        "per_s": rate,
        "p50_ms": latency_ms("50"),
        "p99_ms": latency_ms("99"),
        "non_2xx": float(bad.group(1)) if bad else 0.0,
        "socket_errors": 1.0 if errors else 0.0,
    }


class Servers:
    """One server process of each kind, on free ports, sharing one redis-server."""

    def __init__(self, tmp: Path, redis_url: str) -> None:
        self.redis_url = redis_url
        self.redis = redis.Redis.from_url(redis_url)
        self.ports = {name: free_port() for name in ("fluxgate", "bare", "seed")}
        # Only the gateway runs; the other services' ports just fill in its environment.
        ports = {"gateway": self.ports["fluxgate"], "notifier": 1, "balancer": 1, "inference": 1}
        env = {
            **stack_env(redis_url, tmp, ports),
            "FLUXGATE_AUTH": "true",
            "FLUXGATE_ADMIN_TOKEN": ADMIN_TOKEN,
            # As deployed: the chart's default (`logJson: true`), one JSON access line a submit.
            "FLUXGATE_LOG_JSON": "true",
            "BENCH_REDIS_URL": redis_url,
        }
        self.procs = {
            "fluxgate": Proc("gateway", python_module("apps.gateway"), env, tmp / "gw.log"),
            "bare": Proc(
                "bare",
                [
                    str(VENV_BIN / "uvicorn"),
                    "benchmarks.servers.bare_app:app",
                    "--port",
                    str(self.ports["bare"]),
                    "--loop",
                    "uvloop",
                    "--http",
                    "httptools",
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ],
                env,
                tmp / "bare.log",
            ),
            "seed": Proc(
                "seed",
                [
                    str(VENV_BIN / "gunicorn"),
                    "-w",
                    "1",
                    "-k",
                    "gthread",
                    "--threads",
                    "8",
                    "-b",
                    f"127.0.0.1:{self.ports['seed']}",
                    "benchmarks.servers.seed_app:app",
                ],
                env,
                tmp / "seed.log",
            ),
        }

    def start(self) -> None:
        for proc in self.procs.values():
            proc.start()
        wait_http_ok(f"{self.url('fluxgate').rsplit('/', 1)[0]}/readyz", timeout=60)
        for name in ("bare", "seed"):
            url = self.url(name)
            # Only POST is routed: a 405 to GET means the server is up.
            poll_until(
                lambda u=url: httpx.get(u).status_code == 405,
                timeout=60,
                what=url,
                retry_on=TRANSIENT,
                watch=self.procs.values(),
            )

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}/flux"

    def fresh_key(self) -> str:
        """Empty Redis (queues grow by the thousand per round) and a key that never limits."""
        self.redis.flushdb()
        answer = httpx.post(
            self.url("fluxgate").replace("/flux", "/admin/keys"),
            json={"name": "bench", "rate": "1000000/s", "max_queued": 1_000_000},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        answer.raise_for_status()
        return str(answer.json()["token"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="per run (default: 10)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default: 3)")
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt install wrk (make bench-submit does it as root)")

    runs: dict[str, list[dict[str, float]]] = {"fluxgate": [], "bare": [], "seed": []}
    with tempfile.TemporaryDirectory(prefix="fluxgate-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        redis_proc, redis_url = start_redis(tmp)
        servers = Servers(tmp, redis_url)
        try:
            servers.start()
            for round_index in range(args.rounds):
                for name in runs:
                    token = servers.fresh_key()
                    result = run_wrk(
                        servers.url(name),
                        seconds=args.seconds,
                        connections=args.connections,
                        token=token if name == "fluxgate" else "",
                    )
                    if result["non_2xx"]:
                        raise SystemExit(f"{name}: {result['non_2xx']:.0f} non-2xx answers")
                    runs[name].append(result)
                    print(
                        f"round {round_index + 1} {name:9s} {result['per_s']:8.0f} req/s"
                        f"  p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms"
                    )
        finally:
            servers.stop()
            redis_proc.stop()

    def median(name: str, key: str) -> float:
        return round(statistics.median(r[key] for r in runs[name]), 2)

    fluxgate, bare, seed = (median(n, "per_s") for n in ("fluxgate", "bare", "seed"))
    result = {
        "fluxgate_per_s": fluxgate,
        "bare_per_s": bare,
        "seed_per_s": seed,
        "fluxgate_p50_ms": median("fluxgate", "p50_ms"),
        "fluxgate_p99_ms": median("fluxgate", "p99_ms"),
        "bare_p99_ms": median("bare", "p99_ms"),
        "seed_p99_ms": median("seed", "p99_ms"),
        "ratio_to_bare": round(fluxgate / bare, 3),
        "ratio_to_seed": round(fluxgate / seed, 2),
        "runs": runs,
        "machine": machine(),
        "params": {
            "seconds": args.seconds,
            "rounds": args.rounds,
            "connections": args.connections,
            "load_generator": "wrk -t1",
            "auth": "on (fluxgate)",
            "body": LUA.read_text().split("wrk.body = ", 1)[1].split("\n", 1)[0],
        },
    }
    path = write_result("submit", result)
    print()
    print(f"{'server':10s} {'req/s':>8s} {'p99 ms':>8s}")
    for name in ("fluxgate", "bare", "seed"):
        print(f"{name:10s} {median(name, 'per_s'):8.0f} {median(name, 'p99_ms'):8.2f}")
    print(
        f"fluxgate / bare = {result['ratio_to_bare']} (goal >= 0.6), "
        f"fluxgate / seed = {result['ratio_to_seed']} (goal >= 3)  -> {path.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    main()
