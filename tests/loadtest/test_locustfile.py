"""The load test's users run against the real stack and report time to result."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from devtools.procs import ROOT
from tests.conftest import Stack

LOCUST = Path(sys.executable).parent / "locust"


def test_locust_users_measure_time_to_result(stack: Stack, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            str(LOCUST),
            "-f",
            str(ROOT / "loadtest" / "locustfile.py"),
            "--headless",
            "--only-summary",
            "-u",
            "3",
            "-r",
            "3",
            "-t",
            "8s",
            "--host",
            stack.gateway,
            "--csv",
            str(tmp_path / "run"),
            "ResultUser",
            "PollUser",
            "SubmitUser",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**stack.env, "LOADTEST_STEPS": "1", "LOADTEST_SIZES": "64x64"},
        cwd=ROOT,
    )
    with (tmp_path / "run_stats.csv").open() as stats:
        rows = {f"{row['Type']} {row['Name']}": row for row in csv.DictReader(stats)}
    assert done.returncode == 0, done.stderr[-3000:]
    for name in (
        "POST /flux",
        "RESULT time to result (WebSocket)",
        "RESULT time to result (polling)",
    ):
        assert name in rows, (name, list(rows))
        assert int(rows[name]["Request Count"]) >= 1
        assert int(rows[name]["Failure Count"]) == 0, rows[name]
    # A result takes longer than its submit: the row measures the whole wait.
    assert float(rows["RESULT time to result (WebSocket)"]["50%"]) > float(
        rows["POST /flux"]["50%"]
    )
