"""What a stronger durability mode costs a submit: accepted `POST /flux` per second from one
gateway process while Redis runs without an append-only file, with `appendfsync everysec` (the
chart's default) and with `appendfsync always` (every acknowledged submit is on disk first).

Same servers and load generator as `make bench-submit` (wrk, 50 connections, auth on); the three
modes are switched on one running Redis with CONFIG SET and interleaved, medians of the rounds.
The anchor is the run without an append-only file.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine, write_result
from benchmarks.submit import Servers, run_wrk
from devtools.procs import poll_until, start_redis

MODES = {
    "no_aof": {"appendonly": "no"},
    "everysec": {"appendonly": "yes", "appendfsync": "everysec"},
    "always": {"appendonly": "yes", "appendfsync": "always"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="per run (default: 10)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default: 3)")
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt install wrk (make bench-durability does it as root)")

    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="fluxgate-durability-") as tmp_dir:
        tmp = Path(tmp_dir)
        redis_proc, redis_url = start_redis(tmp)
        servers = Servers(tmp, redis_url)
        try:
            servers.start()
            for round_index in range(args.rounds):
                for mode, config in MODES.items():
                    token = servers.fresh_key()
                    for name, value in config.items():
                        servers.redis.config_set(name, value)
                    # Turning the file on rewrites it in the background: measure after that.
                    poll_until(
                        lambda: (
                            not int(servers.redis.info("persistence")["aof_rewrite_in_progress"])
                        ),
                        timeout=60,
                        what="the append-only file's first rewrite",
                    )
                    time.sleep(0.5)
                    result = run_wrk(
                        servers.url("fluxgate"),
                        seconds=args.seconds,
                        connections=args.connections,
                        token=token,
                    )
                    if result["non_2xx"]:
                        raise SystemExit(f"{mode}: {result['non_2xx']:.0f} non-2xx answers")
                    runs[mode].append(result)
                    print(
                        f"round {round_index + 1} {mode:9s} {result['per_s']:8.0f} req/s"
                        f"  p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms",
                        flush=True,
                    )
        finally:
            servers.stop()
            redis_proc.stop()

    def median(mode: str, key: str) -> float:
        return round(statistics.median(r[key] for r in runs[mode]), 2)

    result: dict[str, object] = {f"{mode}_per_s": median(mode, "per_s") for mode in MODES} | {
        f"{mode}_p99_ms": median(mode, "p99_ms") for mode in MODES
    }
    result["always_vs_no_aof"] = round(median("always", "per_s") / median("no_aof", "per_s"), 2)
    result["everysec_vs_no_aof"] = round(median("everysec", "per_s") / median("no_aof", "per_s"), 2)
    result["runs"] = runs
    result["machine"] = machine()
    result["params"] = {
        "seconds": args.seconds,
        "rounds": args.rounds,
        "connections": args.connections,
        "auth": True,
        "server_processes": 1,
    }
    path = write_result("durability", result)
    print(
        f"no AOF {result['no_aof_per_s']}/s, everysec {result['everysec_per_s']}/s "
        f"({result['everysec_vs_no_aof']}x), always {result['always_per_s']}/s "
        f"({result['always_vs_no_aof']}x) -> {path}"
    )


if __name__ == "__main__":
    main()
