"""Error logs render tracebacks as plain text, without the frames' locals, in both formats."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
import structlog

from apps.common.service.logging import configure_logging, get_logger

SECRET_LOCAL = "s3cr3t-" + "x" * 100_000


def fail_with_a_large_local() -> None:
    payload = SECRET_LOCAL  # a client's body, a key: must never reach the log
    raise ValueError(f"bad input of {len(payload)} chars")


def restore_logging() -> None:
    """What configuring changed for this process: later tests log as before."""
    logging.getLogger().handlers.clear()
    structlog.reset_defaults()


@pytest.mark.parametrize("as_json", [False, True])
def test_an_exception_is_logged_without_locals(
    as_json: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", json=as_json)
    try:
        try:
            fail_with_a_large_local()
        except ValueError:
            get_logger("test").exception("request failed")
        err = capsys.readouterr().err
    finally:
        restore_logging()
    assert "request failed" in err
    assert "ValueError: bad input of 100007 chars" in err.replace("\\n", "\n")
    assert "s3cr3t" not in err
    assert len(err) < 5_000
    if as_json:
        line = json.loads(err.strip().splitlines()[-1])
        assert "Traceback" in line["exception"]


def test_a_closed_stderr_drops_lines_instead_of_failing_the_caller(tmp_path: Path) -> None:
    stream = (tmp_path / "stderr").open("w")
    sys.stderr, real = stream, sys.stderr
    try:
        configure_logging("INFO", json=True)
        log = get_logger("test.closed")
        log.info("written")
        stream.close()  # a log collector gone, a test's capture finished
        log.info("dropped")  # must not raise into the request or job that logs
        log.error("dropped too", error="x")
    finally:
        sys.stderr = real
        restore_logging()
    lines = (tmp_path / "stderr").read_text().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["written"]
