"""What every benchmark shares: machine facts, percentiles, writing results/<name>.json."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "device": "cpu",
    }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(values), 1),
        "p95": round(percentile(values, 95), 1),
        "p99": round(percentile(values, 99), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
    }


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


async def timed_inference(client: httpx.AsyncClient, url: str, **request: Any) -> float | None:
    """Milliseconds from sending one streamed inference request (`POST url`, with httpx's
    `content=`/`json=`/`headers=`) to its result line; None when it got none."""
    started = time.perf_counter()
    last = ""
    try:
        async with client.stream("POST", url, **request) as response:
            if response.status_code != 200:
                return None
            async for line in response.aiter_lines():
                last = line or last
    except httpx.HTTPError:
        return None
    return (time.perf_counter() - started) * 1000 if '"type":"result"' in last else None
