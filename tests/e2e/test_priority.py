"""Priority 0..9 (9 most urgent) on the Celery Redis transport's priority lanes."""

from __future__ import annotations

from datetime import datetime

from tests.conftest import Stack

SMALL = {"num_inference_steps": 2, "width": 64, "height": 64}


def _started(stack: Stack, task_id: str) -> datetime:
    view = stack.wait_status(task_id, "succeeded", timeout=90)
    return datetime.fromisoformat(str(view["started_at"]).replace("Z", "+00:00"))


def test_an_urgent_job_behind_a_backlog_starts_first(stack: Stack) -> None:
    blockers = stack.fill_worker()
    try:
        backlog = [str(stack.submit(**SMALL, priority=p)["task_id"]) for p in (5, 5, 1, 5)]
        urgent = str(stack.submit(**SMALL, priority=9)["task_id"])
        fairly = str(stack.submit(**SMALL, priority=7)["task_id"])
        assert stack.view(urgent)["queue_position"] == 0
        assert stack.view(fairly)["queue_position"] == 1
        # Within a priority, first come first served; priority 1 waits behind all the 5s.
        assert [stack.view(t)["queue_position"] for t in backlog] == [2, 3, 5, 4]
    finally:
        stack.release(blockers)
    order = sorted([*backlog, urgent, fairly], key=lambda t: _started(stack, t))
    # The worker has two slots, so jobs start two at a time: compare pairs, not neighbours.
    assert set(order[:2]) == {urgent, fairly}, order
    assert backlog[2] in order[-2:], "the least urgent job starts with the last pair"
