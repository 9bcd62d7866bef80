"""Parsing of the request headers the API defines (`Cancel-After`, `Prefer`)."""

from __future__ import annotations

import re

from apps.common.service.errors import InvalidInput

CANCEL_AFTER = "Cancel-After"
# A positive number of seconds, or with a unit: 30, 30s, 5m, 1h (declared in the OpenAPI document).
CANCEL_AFTER_PATTERN = r"^\s*(\d*[1-9]\d*(\.\d+)?|\d*\.\d*[1-9]\d*)\s*[smhSMH]?\s*$"
_DURATION = re.compile(r"^\s*(\d*\.?\d+)\s*([smh]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600}


def parse_cancel_after(value: str | None, *, max_s: float) -> float | None:
    """Seconds from `30`, `30s`, `5m` or `1h`; None when the header is absent. A deadline past
    the record's lifetime is that lifetime: the job cannot outlive its record anyway."""
    if value is None:
        return None
    match = _DURATION.match(value.lower())
    if match is None:
        raise InvalidInput(
            f"{CANCEL_AFTER} must be seconds or a duration like 30s, 5m, 1h", field=CANCEL_AFTER
        )
    seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if not 0 < seconds <= max_s:
        raise InvalidInput(
            f"{CANCEL_AFTER} must be above 0 and at most {int(max_s)} s", field=CANCEL_AFTER
        )
    return seconds


MAX_PREFER_WAIT_S = 300
_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d+)")


def parse_prefer_wait(value: str | None) -> int | None:
    """Seconds from `Prefer: wait=N` (capped at 300), or None when not asked for."""
    if not value:
        return None
    match = _PREFER_WAIT.search(value.lower())
    return None if match is None else min(int(match.group(1)), MAX_PREFER_WAIT_S)
