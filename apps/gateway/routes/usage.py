"""`GET /usage` (the caller's own key) and `GET /admin/usage` (any or every key)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from apps.common.service.errors import InvalidInput
from apps.gateway.auth import Admin, Caller
from apps.gateway.deps import Service
from apps.gateway.errors_doc import error_responses
from apps.gateway.service import scope_of

router = APIRouter(tags=["usage"])
DEFAULT_DAYS = 30
MAX_DAYS = 366

# Strings, not `date`: pydantic would also take a number as a Unix time, which no one means here.
# Declared as `format: date` (a pattern would admit 0000-00-00, which then answers 422).
_DAY = {"format": "date"}
Since = Annotated[
    str | None,
    Query(json_schema_extra=_DAY, description="first UTC day, YYYY-MM-DD (default: 30 days ago)"),
]
Until = Annotated[
    str | None,
    Query(json_schema_extra=_DAY, description="last UTC day, YYYY-MM-DD (default: today)"),
]


def _day(value: str | None, field: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(f"{field}: {value!r} is not a calendar day", field=field) from exc


def _window(since_text: str | None, until_text: str | None) -> tuple[date, date]:
    since, until = _day(since_text, "since"), _day(until_text, "until")
    last = until or datetime.now(UTC).date()
    first = since or last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise InvalidInput("since is after until", field="since")
    if (last - first).days >= MAX_DAYS:
        raise InvalidInput(f"at most {MAX_DAYS} days at once", field="since")
    return first, last


@router.get("/usage", responses=error_responses(401, 422, 503))
async def own_usage(
    service: Service, caller: Caller, since: Since = None, until: Until = None
) -> dict[str, Any]:
    """Jobs and compute seconds of the calling key, by task type, per UTC day and in total."""
    first, last = _window(since, until)
    return await service.usage(scope_of(caller), first, last)


@router.get("/admin/usage", tags=["admin"], responses=error_responses(401, 404, 422, 503))
async def all_usage(
    service: Service,
    _admin: Admin,
    key: Annotated[str | None, Query(max_length=100, description="one key id")] = None,
    since: Since = None,
    until: Until = None,
) -> dict[str, Any]:
    """Usage of one key, or of every key that has used the service."""
    first, last = _window(since, until)
    owners = [key] if key is not None else await service.usage_owners()
    return {"keys": [await service.usage(owner, first, last) for owner in owners]}
