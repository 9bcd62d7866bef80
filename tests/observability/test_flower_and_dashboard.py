"""Flower runs behind basic auth and sees the worker; the dashboard asks for real metrics."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from devtools.procs import ROOT, TRANSIENT, Proc, free_port, poll_until
from tests.conftest import Stack

DASHBOARD = ROOT / "charts" / "fluxgate" / "dashboards" / "fluxgate.json"
METRIC_DEFINITION = re.compile(
    r'(?:Counter|Gauge|Histogram|GaugeMetricFamily)\(\s*"(fluxgate_[a-z_]+)"', re.S
)


def test_flower_needs_its_password_and_lists_the_worker(stack: Stack, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **stack.env,
        "FLUXGATE_FLOWER_PORT": str(port),
        "FLUXGATE_FLOWER_BASIC_AUTH": "ops:flower-test-password",
        # The virtualenv by its own path, as `make VENV=...` hands it over, not `.venv`.
        "VENV": str(Path(sys.prefix).resolve()),
    }
    flower = Proc("flower", ["scripts/run-flower.sh"], env, tmp_path / "flower.log").start()
    base = f"http://127.0.0.1:{port}"
    try:
        refused = poll_until(
            lambda: httpx.get(f"{base}/", timeout=5),
            timeout=60,
            what="flower to listen",
            retry_on=TRANSIENT,
            watch=[flower],
        )
        assert refused.status_code == 401
        assert httpx.get(f"{base}/", auth=("ops", "wrong"), timeout=5).status_code == 401

        def worker_listed() -> list[str] | None:
            answer = httpx.get(
                f"{base}/api/workers",
                params={"refresh": "1"},
                auth=("ops", "flower-test-password"),
                timeout=15,
            )
            return [name for name in answer.json() if name.startswith("fluxgate@")] or None

        assert poll_until(
            worker_listed, timeout=60, what="flower to list the worker", watch=[flower]
        )
        assert "flower-test-password" not in " ".join(
            subprocess.run(
                ["ps", "-o", "args=", "-p", str(flower.popen.pid)],  # type: ignore[union-attr]
                capture_output=True,
                text=True,
                check=False,
            ).stdout.split()
        )
    finally:
        flower.stop()


def test_the_dashboard_only_queries_metrics_the_services_define() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "fluxgate-overview"
    defined = set()
    for path in (ROOT / "apps").rglob("*.py"):
        defined |= set(METRIC_DEFINITION.findall(path.read_text()))
    assert "fluxgate_queue_depth" in defined
    queries = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    assert len(queries) >= 20
    used = {
        re.sub(r"_(bucket|sum|count)$", "", name)
        for expr in queries
        for name in re.findall(r"fluxgate_[a-z_]+", expr)
    }
    assert used - defined == set()
    # The scaling signal and the stage split are on it.
    assert {"fluxgate_queue_depth", "fluxgate_job_queued_seconds"} <= used
    assert os.path.getsize(DASHBOARD) > 1000
