"""Fluxgate load test: what users wait for is the RESULT, so that is what this measures.

User classes (pick with locust's class arguments; `make run-loadtest` runs a mix):
- SubmitUser: `POST /flux` only (the accept path).
- ResultUser: submit, then wait on the WebSocket; reports "time to result" as its own row.
- SyncUser:   the nginx facade `POST /sync/flux` (one blocking call to the final view).
- PollUser:   submit, then `GET /tasks/{id}` until the job ends (what the recipes do).

Environment: FLUXGATE_API_KEY (sent as a Bearer key when set), LOADTEST_STEPS (default 2: tiny
jobs, so it runs on a CPU), LOADTEST_SIZES (e.g. "256x256,128x128").
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any

from locust import FastHttpUser, between, task
from websockets.sync.client import connect

FINAL = {"succeeded", "failed", "canceled", "expired"}
PROMPTS = [
    "a red fox in the snow, golden hour",
    "an isometric city block at night, neon",
    "portrait of an astronaut, studio light",
    "a bowl of ramen, top view, film photo",
    "watercolor lighthouse on a cliff",
]
SIZES = [
    tuple(int(n) for n in size.split("x"))
    for size in os.environ.get("LOADTEST_SIZES", "256x256,128x128,256x128").split(",")
]
STEPS = int(os.environ.get("LOADTEST_STEPS", "2"))
RESULT_TIMEOUT_S = float(os.environ.get("LOADTEST_RESULT_TIMEOUT_S", "300"))


def job_body() -> dict[str, Any]:
    width, height = random.choice(SIZES)
    return {
        "prompt": random.choice(PROMPTS),
        "width": width,
        "height": height,
        "num_inference_steps": STEPS,
    }


class FluxgateUser(FastHttpUser):
    abstract = True
    wait_time = between(0.1, 0.5)

    def on_start(self) -> None:
        key = os.environ.get("FLUXGATE_API_KEY")
        self.auth = {"Authorization": f"Bearer {key}"} if key else {}

    def submit(self) -> dict[str, Any] | None:
        with self.client.post(
            "/flux", json=job_body(), headers=self.auth, name="/flux", catch_response=True
        ) as response:
            if response.status_code != 202:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return None
            return response.json()  # type: ignore[no-any-return]

    def report(self, name: str, started: float, error: Exception | None) -> None:
        self.environment.events.request.fire(
            request_type="RESULT",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=error,
            context={},
        )


class SubmitUser(FluxgateUser):
    wait_time = between(0, 0.05)

    @task
    def submit_only(self) -> None:
        self.submit()


class ResultUser(FluxgateUser):
    @task
    def submit_and_wait_on_websocket(self) -> None:
        started = time.perf_counter()
        job = self.submit()
        if job is None:
            return
        error: Exception | None = None
        try:
            ws_url = job["urls"]["ws"]
            if self.auth:
                ws_url += "?token=" + self.auth["Authorization"].removeprefix("Bearer ")
            view: dict[str, Any] = {}
            with connect(ws_url, open_timeout=10, compression=None) as ws:
                while view.get("status") not in FINAL:
                    view = json.loads(ws.recv(timeout=RESULT_TIMEOUT_S))
            if view["status"] != "succeeded":
                error = RuntimeError(f"job ended {view['status']}: {view.get('error')}")
        except Exception as exc:  # a lost socket or a timeout is a failed result
            error = exc
        self.report("time to result (WebSocket)", started, error)


class SyncUser(FluxgateUser):
    @task
    def sync_facade(self) -> None:
        with self.client.post(
            "/sync/flux",
            json=job_body(),
            headers={**self.auth, "Prefer": f"wait={int(min(RESULT_TIMEOUT_S, 300))}"},
            name="/sync/flux (time to result)",
            catch_response=True,
        ) as response:
            if response.status_code != 200 or response.json().get("status") != "succeeded":
                response.failure(f"{response.status_code}: {response.text[:200]}")


class PollUser(FluxgateUser):
    @task
    def submit_and_poll(self) -> None:
        started = time.perf_counter()
        job = self.submit()
        if job is None:
            return
        error: Exception | None = None
        deadline = started + RESULT_TIMEOUT_S
        status = "queued"
        while status not in FINAL:
            if time.perf_counter() > deadline:
                error = TimeoutError(f"still {status} after {RESULT_TIMEOUT_S} s")
                break
            time.sleep(0.25)
            response = self.client.get(
                f"/tasks/{job['task_id']}", headers=self.auth, name="/tasks/{id}"
            )
            status = response.json().get("status", "unknown") if response.ok else "error"
        if error is None and status != "succeeded":
            error = RuntimeError(f"job ended {status}")
        self.report("time to result (polling)", started, error)
