"""`FLUXGATE_REDIS_WAIT_REPLICAS`: a submit is acknowledged only once that many replicas have it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from apps.common.jobs.record import new_job
from apps.common.wire.queues import make_producer
from apps.gateway.enqueue import JobQueue, NotReplicated
from devtools.procs import (
    Proc,
    free_port,
    poll_until,
    python_module,
    redis_server_binary,
    stack_env,
    start_redis,
    wait_http_ok,
)


def accept_once(url: str) -> str:
    """Accept one job with WAIT 1; its task id, or raise NotReplicated."""

    async def scenario() -> str:
        client = aioredis.Redis.from_url(url, decode_responses=True)
        producer = make_producer(url, visibility_timeout_s=60)
        queue = JobQueue(
            client,
            producer,
            job_ttl_s=600,
            wait_replicas=1,
            wait_timeout_ms=1000,
        )
        record = new_job("flux", {"prompt": "a fox"})
        try:
            await queue.accept(record, "fluxgate:test-listing")
        finally:
            producer.close()
            await client.aclose()
        return record.task_id

    return asyncio.run(scenario())


def test_a_submit_waits_for_its_replica(tmp_path: Path) -> None:
    primary, url = start_redis(tmp_path)
    port = free_port()
    gateway = Proc(
        "gateway",
        python_module("apps.gateway"),
        {
            **stack_env(
                url,
                tmp_path,
                {
                    "gateway": port,
                    "notifier": free_port(),
                    "balancer": free_port(),
                    "inference": free_port(),
                },
            ),
            "FLUXGATE_REDIS_WAIT_REPLICAS": "1",
            "FLUXGATE_REDIS_WAIT_TIMEOUT_MS": "1000",
        },
        tmp_path / "gateway.log",
    ).start()
    replica: Proc | None = None
    try:
        with pytest.raises(NotReplicated):
            accept_once(url)
        wait_http_ok(f"http://127.0.0.1:{port}/readyz", timeout=60, proc=gateway)
        body = {"prompt": "a fox", "width": 64, "height": 64, "num_inference_steps": 2}
        headers = {"Idempotency-Key": "durable-1"}
        refused = httpx.post(f"http://127.0.0.1:{port}/flux", json=body, headers=headers)
        assert refused.status_code == 503
        assert refused.headers["retry-after"]
        task = refused.json()["task"]
        assert task["status"] == "queued"  # accepted on the primary: it will run
        assert "Idempotency-Key" in refused.json()["error"]["message"]
        replayed = httpx.post(f"http://127.0.0.1:{port}/flux", json=body, headers=headers)
        assert replayed.json()["task_id"] == task["task_id"]

        replica_port = free_port()
        (tmp_path / "replica").mkdir()
        replica = Proc(
            "replica",
            [
                redis_server_binary(),
                "--port",
                str(replica_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(tmp_path / "replica"),
                "--replicaof",
                "127.0.0.1",
                url.rsplit(":", 1)[1].split("/")[0],
            ],
            {},
            tmp_path / "replica.log",
        ).start()
        info = redis.Redis.from_url(url)
        poll_until(
            lambda: (info.info("replication").get("slave0") or {}).get("state") == "online",
            timeout=30,
            what="the replica to be in sync",
        )
        assert accept_once(url)
        accepted = httpx.post(f"http://127.0.0.1:{port}/flux", json=body)
        assert accepted.status_code == 202, accepted.text
    finally:
        gateway.stop()
        if replica is not None:
            replica.stop()
        primary.stop()
