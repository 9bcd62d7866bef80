"""`poll_until` retries only "not yet": a wrong answer or a dead process fails at once."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from devtools.procs import (
    TRANSIENT,
    NotYet,
    Proc,
    ProcExited,
    free_port,
    poll_until,
    wait_http_ok,
)


def test_it_returns_the_first_truthy_value_after_falsy_ones_and_not_yet() -> None:
    answers = iter([None, 0, "", NotYet("still loading"), [], {"done": True}])

    def check() -> dict[str, bool] | None:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    assert poll_until(check, timeout=5, interval=0.001) == {"done": True}


def test_it_times_out_naming_what_it_waited_for_and_the_last_reason() -> None:
    def check() -> None:
        raise NotYet("the queue is not empty")

    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"the job to end.*the queue is not empty"):
        poll_until(check, timeout=0.2, interval=0.01, what="the job to end")
    assert time.monotonic() - started < 2


def test_a_wrong_answer_fails_at_once() -> None:
    calls: list[int] = []

    def check() -> bool:
        calls.append(1)
        assert len(calls) > 99, "status went backwards"
        return True

    started = time.monotonic()
    with pytest.raises(AssertionError, match="status went backwards"):
        poll_until(check, timeout=30)
    assert calls == [1]
    assert time.monotonic() - started < 1


def test_other_errors_fail_at_once_unless_the_caller_opts_in() -> None:
    url = f"http://127.0.0.1:{free_port()}/"  # nothing listens there
    with pytest.raises(httpx.ConnectError):
        poll_until(lambda: httpx.get(url, timeout=1), timeout=30)
    with pytest.raises(AssertionError, match=r"(?s)timed out after 0\.3s.*ConnectError"):
        poll_until(lambda: httpx.get(url, timeout=1), timeout=0.3, retry_on=TRANSIENT)


def test_a_watched_process_that_exits_fails_the_poll_at_once(tmp_path: Path) -> None:
    proc = Proc(
        "doomed",
        ["sh", "-c", "echo 'cannot bind: address in use'; exit 3"],
        dict(os.environ),
        tmp_path / "doomed.log",
    ).start()
    started = time.monotonic()
    with pytest.raises(ProcExited, match=r"(?s)doomed exited.*cannot bind: address in use"):
        poll_until(lambda: None, timeout=30, what="doomed to listen", watch=[proc])
    assert time.monotonic() - started < 5
    # wait_http_ok says the same, at once, instead of after its whole timeout.
    url = f"http://127.0.0.1:{free_port()}/readyz"
    with pytest.raises(ProcExited, match="cannot bind"):
        wait_http_ok(url, timeout=30, proc=proc)
    assert time.monotonic() - started < 5
