"""The practical ceiling for `benchmarks/submit.py`: FastAPI on uvicorn+uvloop that validates the
same request model as the gateway and LPUSHes it to Redis, nothing else."""

from __future__ import annotations

import os
import uuid

import redis.asyncio as aioredis
from fastapi import FastAPI

from apps.common.wire.contracts import FluxRequest

app = FastAPI()
client = aioredis.Redis.from_url(os.environ["BENCH_REDIS_URL"])


@app.post("/flux", status_code=202)
async def flux(body: FluxRequest) -> dict[str, str]:
    task_id = str(uuid.uuid4())
    await client.lpush("bench:bare", body.model_dump_json())
    return {"task_id": task_id, "status": "queued"}
