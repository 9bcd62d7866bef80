"""Fair share on real processes: two API keys, one worker slot, a backlog of one key's jobs; the
other key's jobs start next to it, not after it; and a worker killed mid-way loses nothing that
was staged, released or running.

Weights, priorities, cancel and `queue_position` against the real scripts are in
tests/gateway/test_fair_share.py.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest
import redis

from apps.common.redis import keys
from devtools.procs import Proc, poll_until, start_redis, start_stack, wait_stack_ready
from tests.conftest import Stack

ADMIN_TOKEN = "admin-token-for-fair-share-tests-0123"
JOB = {"prompt": "a fox", "width": 64, "height": 64, "num_inference_steps": 3}
TERMINAL = {"succeeded", "failed", "canceled", "expired"}


class FairStack(Stack):
    def new_key(self, name: str) -> str:
        response = httpx.post(
            f"{self.gateway}/admin/keys",
            json={"name": name, "rate": "1000/s", "max_active": 1000},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        return str(response.json()["token"])

    def submit_as(self, token: str, count: int) -> list[str]:
        ids = []
        for _ in range(count):
            response = httpx.post(
                f"{self.gateway}/flux",
                json=JOB,
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            assert response.status_code == 202, response.text
            ids.append(str(response.json()["task_id"]))
        return ids

    def view_as(self, token: str, task_id: str) -> dict[str, object]:
        response = httpx.get(
            f"{self.gateway}/tasks/{task_id}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def wait_all(self, token: str, ids: list[str], timeout: float = 120) -> list[dict[str, object]]:
        def finished() -> list[dict[str, object]] | None:
            views = [self.view_as(token, t) for t in ids]
            return views if all(v["status"] in TERMINAL for v in views) else None

        return poll_until(finished, timeout=timeout, what=f"{len(ids)} jobs to finish")


@pytest.fixture(scope="module")
def fair_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FairStack]:
    tmp = tmp_path_factory.mktemp("fair")
    redis_proc, redis_url = start_redis(tmp)
    ports, env, procs = start_stack(
        redis_url,
        tmp,
        extra_env={
            "FLUXGATE_AUTH": "true",
            "FLUXGATE_ADMIN_TOKEN": ADMIN_TOKEN,
            # Jobs long enough for a backlog to build behind the one worker slot.
            "FLUXGATE_INFERENCE_STEP_DELAY_MS": "60",
            "FLUXGATE_FAIR_SHARE_READY": "1",
        },
        worker_concurrency=1,
    )
    stack = FairStack.at(ports, redis_url=redis_url, env=env, procs=procs, tmp=tmp)
    try:
        wait_stack_ready(ports, procs)
        yield stack
    finally:
        for proc in stack.procs.values():
            proc.stop()
        redis_proc.stop()


def _started(view: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(view["started_at"]).replace("Z", "+00:00"))


def test_a_second_key_starts_next_to_a_backlog_not_behind_it(fair_stack: FairStack) -> None:
    busy, light = fair_stack.new_key("busy"), fair_stack.new_key("light")
    backlog = fair_stack.submit_as(busy, 6)
    few = fair_stack.submit_as(light, 2)
    # Both of the light key's jobs are ahead of the busy key's last ones already.
    positions = [fair_stack.view_as(light, t)["queue_position"] for t in few]
    assert all(isinstance(p, int) and p < 4 for p in positions), positions

    busy_views = fair_stack.wait_all(busy, backlog)
    light_views = fair_stack.wait_all(light, few)
    assert {v["status"] for v in busy_views + light_views} == {"succeeded"}
    # First come, first served would start them after all six; fair share puts them among the
    # first five (the busy key's first jobs were released before the light key arrived).
    fifth_busy = sorted(_started(v) for v in busy_views)[4]
    assert all(_started(v) < fifth_busy for v in light_views), (
        [v["started_at"] for v in busy_views],
        [v["started_at"] for v in light_views],
    )
    # Nothing is left staged.
    client = redis.Redis.from_url(fair_stack.redis_url)
    assert client.llen(keys.fair_depth_key("gpu")) == 0


def test_a_worker_killed_mid_way_loses_no_staged_released_or_running_job(
    fair_stack: FairStack,
) -> None:
    busy, light = fair_stack.new_key("busy-2"), fair_stack.new_key("light-2")
    ids = {busy: fair_stack.submit_as(busy, 5), light: fair_stack.submit_as(light, 3)}
    poll_until(
        lambda: any(fair_stack.view_as(busy, t)["status"] == "running" for t in ids[busy]),
        timeout=60,
        what="a job to run",
    )
    client = redis.Redis.from_url(fair_stack.redis_url)
    assert client.llen(keys.fair_depth_key("gpu")) > 0, "some jobs are still staged"
    old = fair_stack.procs["worker"]
    old.stop(signal.SIGKILL)
    fair_stack.procs["worker"] = Proc(old.name, old.args, old.env, old.log_path).start()
    for token, task_ids in ids.items():
        views = fair_stack.wait_all(token, task_ids, timeout=180)
        assert {v["status"] for v in views} == {"succeeded"}, [v["error"] for v in views]
    assert client.llen(keys.fair_depth_key("gpu")) == 0


def test_a_staged_job_canceled_or_past_its_deadline_leaves_the_fair_queue(
    fair_stack: FairStack,
) -> None:
    token = fair_stack.new_key("leaving")
    client = redis.Redis.from_url(fair_stack.redis_url)
    backlog = fair_stack.submit_as(token, 8)
    staged = backlog[-1]
    depth = int(client.llen(keys.fair_depth_key("gpu")))
    assert depth >= 1, "one worker slot and one released job: the last ones are staged"
    assert client.zscore(keys.fair_staged_key("gpu:4"), staged) is not None
    response = httpx.post(
        f"{fair_stack.gateway}/tasks/{staged}/cancel",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "canceled"
    # Gone from the fair queue by the time the cancel answers. The depth list drops by one for
    # it, and by more when the worker released the next job meanwhile.
    assert client.zscore(keys.fair_staged_key("gpu:4"), staged) is None
    assert int(client.llen(keys.fair_depth_key("gpu"))) <= depth - 1
    # A job whose Cancel-After passes while it is staged expires and leaves it too (the sweeper).
    response = httpx.post(
        f"{fair_stack.gateway}/flux",
        json=JOB,
        headers={"Authorization": f"Bearer {token}", "Cancel-After": "1"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    late = str(response.json()["task_id"])
    assert client.zscore(keys.fair_staged_key("gpu:4"), late) is not None  # API priority 5
    view = poll_until(
        lambda: (v := fair_stack.view_as(token, late))["status"] in TERMINAL and v,
        timeout=30,
        what="the staged job to expire",
    )
    assert view["status"] == "expired"
    # The sweeper writes the expiry, then unstages: the record may say so a moment before.
    poll_until(
        lambda: client.zscore(keys.fair_staged_key("gpu:4"), late) is None,
        timeout=5,
        what="the expired job to leave the fair queue",
    )
    finished = fair_stack.wait_all(token, backlog[:-1])
    assert {v["status"] for v in finished} == {"succeeded"}
    assert int(client.llen(keys.fair_depth_key("gpu"))) == 0
