"""Recovery in seconds: how long after a fault a running job is running again, with the shipped
settings (an hour's broker visibility timeout, 2 s worker heartbeat, 10 s lease).

Faults, each `--rounds` times (medians): SIGKILL of the whole worker (main process and pool) with
a new worker started at once; SIGKILL of Redis and SIGTERM of Redis (append-only file) under a
running worker. For each: `fault -> rerun` (the job's next run opened, seen in its attempt record)
and, for the worker kill, `worker ready -> rerun` (the goal: under 30 s), plus whether the job
then succeeded with exactly one set of outputs. The anchor is the broker visibility timeout, the
only way such a job came back before: 3,600 s.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apps.common.redis import keys
from benchmarks.common import machine, write_result
from devtools.procs import Proc, poll_until, start_redis, start_stack, wait_stack_ready

VISIBILITY_TIMEOUT_S = 3600
BODY = {"prompt": "recovery", "width": 64, "height": 64, "num_inference_steps": 40}


class Bench:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        (tmp / "redis").mkdir()
        self.redis_proc, self.redis_url = start_redis(tmp / "redis", aof=True)
        self.port = int(self.redis_url.rsplit(":", 1)[1].split("/")[0])
        ports, self.env, self.procs = start_stack(
            self.redis_url,
            tmp,
            extra_env={"FLUXGATE_INFERENCE_STEP_DELAY_MS": "100", "FLUXGATE_LOG_LEVEL": "WARNING"},
        )
        self.gateway = f"http://127.0.0.1:{ports['gateway']}"
        wait_stack_ready(ports, self.procs)
        self.client = redis.Redis.from_url(self.redis_url, decode_responses=True)

    def view(self, task_id: str) -> dict[str, Any]:
        return httpx.get(f"{self.gateway}/tasks/{task_id}", timeout=10).json()  # type: ignore[no-any-return]

    def running_job(self) -> str:
        task_id = str(httpx.post(f"{self.gateway}/flux", json=BODY, timeout=10).json()["task_id"])
        poll_until(lambda: self.view(task_id)["progress"] >= 10, timeout=60, what="progress")
        return task_id

    def attempt(self, task_id: str) -> tuple[str, str]:
        raw = self.client.hgetall(keys.attempt_key(task_id))
        return raw.get("crashes", "0"), raw.get("open", "0")

    def wait_rerun(self, task_id: str, before: tuple[str, str], timeout: float = 600) -> float:
        """When the job's next run opened: more crashes counted, or `open` set again."""
        seen_closed = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                crashes, is_open = self.attempt(task_id)
            except redis.RedisError:
                time.sleep(0.05)
                continue
            seen_closed = seen_closed or is_open == "0"
            if crashes != before[0] or (seen_closed and is_open == "1"):
                return time.monotonic()
            time.sleep(0.05)
        raise AssertionError(f"task {task_id} did not run again within {timeout} s")

    def finished(self, task_id: str) -> dict[str, Any]:
        view = poll_until(
            lambda: (v := self.view(task_id))["status"] in ("succeeded", "failed") and v,
            timeout=120,
            what=f"{task_id} to finish",
        )
        outputs = len(list((self.tmp / "outputs" / task_id).glob("*.png")))
        return {"status": view["status"], "outputs": outputs}

    def kill_worker(self) -> dict[str, Any]:
        task_id = self.running_job()
        before = self.attempt(task_id)
        old = self.procs["worker"]
        live_before = set(self.client.zrange(keys.WORKERS, 0, -1))
        fault = time.monotonic()
        old.stop(signal.SIGKILL)
        self.procs["worker"] = Proc(old.name, old.args, old.env, old.log_path).start()
        ready = poll_until(
            lambda: (
                (set(self.client.zrange(keys.WORKERS, 0, -1)) - live_before) and time.monotonic()
            ),
            timeout=120,
            what="the new worker's lease",
            interval=0.05,
        )
        rerun = self.wait_rerun(task_id, before)
        return {
            "fault_to_rerun_s": round(rerun - fault, 2),
            "ready_to_rerun_s": round(max(0.0, rerun - ready), 2),
            **self.finished(task_id),
        }

    def restart_redis(self, sig: int) -> dict[str, Any]:
        task_id = self.running_job()
        before = self.attempt(task_id)
        fault = time.monotonic()
        self.redis_proc.stop(sig)
        self.redis_proc, _ = start_redis(self.tmp / "redis", port=self.port, aof=True)
        back = time.monotonic()
        rerun = self.wait_rerun(task_id, before)
        return {
            "fault_to_rerun_s": round(rerun - fault, 2),
            "redis_back_to_rerun_s": round(rerun - back, 2),
            **self.finished(task_id),
        }

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()
        self.redis_proc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    faults = {
        "worker_sigkill": lambda b: b.kill_worker(),
        "redis_sigkill": lambda b: b.restart_redis(signal.SIGKILL),
        "redis_sigterm": lambda b: b.restart_redis(signal.SIGTERM),
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in faults}
    with tempfile.TemporaryDirectory(prefix="fluxgate-recovery-") as raw_tmp:
        bench = Bench(Path(raw_tmp))
        try:
            for index in range(args.rounds):
                for name, fault in faults.items():
                    runs[name].append(fault(bench))
                    print(f"round {index + 1} {name:15s} {runs[name][-1]}", flush=True)
        finally:
            bench.stop()

    result: dict[str, Any] = {}
    for name, rows in runs.items():
        result[f"{name}_rerun_s"] = statistics.median(r["fault_to_rerun_s"] for r in rows)
        result[f"{name}_failed"] = sum(1 for r in rows if r["status"] != "succeeded")
        result[f"{name}_extra_outputs"] = sum(r["outputs"] - 1 for r in rows)
    result["worker_sigkill_ready_to_rerun_s"] = statistics.median(
        r["ready_to_rerun_s"] for r in runs["worker_sigkill"]
    )
    result["anchor_visibility_timeout_s"] = VISIBILITY_TIMEOUT_S
    result["runs"] = runs
    result["machine"] = machine()
    result["params"] = {"rounds": args.rounds, "steps": 40, "step_delay_ms": 100}
    path = write_result("recovery", result)
    print(
        "fault -> rerun (median): "
        + ", ".join(f"{n} {result[f'{n}_rerun_s']} s" for n in faults)
        + f"; worker ready -> rerun {result['worker_sigkill_ready_to_rerun_s']} s "
        f"(anchor: visibility timeout {VISIBILITY_TIMEOUT_S} s) -> {path}"
    )


if __name__ == "__main__":
    main()
