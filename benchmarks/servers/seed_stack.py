"""The seeds' design, the anchor of `benchmarks/overhead.py`: a FastAPI `POST /flux` that
`send_task`s to Celery (Redis broker, no result backend), and the Celery task that `requests.post`s
the inference server's API directly (no balancer), reads its NDJSON answer, and POSTs the result
to the WebSocket relay (`seed_relay.py`), which pushes it to the subscribed client.

Run as the seeds run it: `uvicorn benchmarks.servers.seed_stack:api` and
`celery -A benchmarks.servers.seed_stack:celery worker` (prefork). Environment: `BENCH_REDIS_URL`,
`BENCH_INFERENCE_URL`, `BENCH_RELAY_URL`.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import requests
from celery import Celery
from fastapi import FastAPI
from pydantic import BaseModel

INFERENCE_URL = os.environ.get("BENCH_INFERENCE_URL", "http://127.0.0.1:8003")
RELAY_URL = os.environ.get("BENCH_RELAY_URL", "http://127.0.0.1:8005")

celery = Celery("seed", broker=os.environ["BENCH_REDIS_URL"])
api = FastAPI()


class FluxJob(BaseModel):
    prompt: str
    width: int = 1024
    height: int = 1024
    num_inference_steps: int = 28


@api.post("/flux", status_code=202)
def submit(job: FluxJob) -> dict[str, str]:
    task_id = str(uuid.uuid4())
    celery.send_task("seed.flux", args=[task_id, job.model_dump()], task_id=task_id)
    return {"task_id": task_id, "status": "pending"}


@celery.task(name="seed.flux")
def generate(task_id: str, params: dict[str, Any]) -> None:
    answer = requests.post(
        f"{INFERENCE_URL}/v1/infer/flux",
        json={"task_id": task_id, "input": params},
        timeout=120,
    )
    answer.raise_for_status()
    # Progress lines, then one result (or error) line.
    last = json.loads(answer.text.strip().splitlines()[-1])
    message: dict[str, Any]
    if last["type"] == "result":
        message = {
            "task_id": task_id,
            "status": "succeeded",
            "result": {"images": last["images"], "compute_ms": last["compute_ms"]},
        }
    else:
        message = {"task_id": task_id, "status": "failed", "error": last}
    requests.post(f"{RELAY_URL}/results/{task_id}", json=message, timeout=30).raise_for_status()
