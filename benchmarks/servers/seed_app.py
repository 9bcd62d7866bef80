"""The seed-style endpoint for `benchmarks/submit.py`: Flask + Celery `apply_async`, as the
Celery + Redis recipes our users start from do it (run on gunicorn, 1 process, 8 gthreads)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from flask import Flask, jsonify, request

redis_url = os.environ["BENCH_REDIS_URL"]
celery = Celery("seed", broker=redis_url, backend=redis_url)
app = Flask(__name__)


@celery.task(name="seed.generate")
def generate(params: dict[str, Any]) -> None:  # never runs: no worker in the benchmark
    return None


@app.post("/flux")
def flux() -> Any:
    params = request.get_json(force=True)
    if not isinstance(params, dict) or not params.get("prompt"):
        return jsonify({"error": "prompt is required"}), 400
    task = generate.apply_async(args=[params])
    return jsonify({"task_id": task.id, "status": "queued"}), 202
