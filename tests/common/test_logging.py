"""Error logs render tracebacks as plain text, without the frames' locals, in both formats."""

from __future__ import annotations

import json
import logging

import pytest

from apps.common.service.logging import configure_logging, get_logger

SECRET_LOCAL = "s3cr3t-" + "x" * 100_000


def fail_with_a_large_local() -> None:
    payload = SECRET_LOCAL  # a client's body, a key: must never reach the log
    raise ValueError(f"bad input of {len(payload)} chars")


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
        logging.getLogger().handlers.clear()
    assert "request failed" in err
    assert "ValueError: bad input of 100007 chars" in err.replace("\\n", "\n")
    assert "s3cr3t" not in err
    assert len(err) < 5_000
    if as_json:
        line = json.loads(err.strip().splitlines()[-1])
        assert "Traceback" in line["exception"]
