"""OpenAPI documentation of the error answers, so generated clients know every status."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer; `task` is the job view when the error concerns a task."""

    error: ErrorDetail
    task: dict[str, Any] | None = None


_DESCRIPTIONS = {
    401: "missing or unknown API key (`unauthorized`)",
    404: "no such task, or another key's (`not_found`)",
    409: "conflict with the task's state or an Idempotency-Key (`conflict`)",
    413: "request body too large (`body_too_large`)",
    422: "invalid input, naming the field (`invalid_input`), or a job that costs too much "
    "(`too_expensive`, naming the field to lower)",
    429: "`rate_limited`, `too_many_jobs` or `too_much_work`, with Retry-After",
    503: "Redis or the queue is unavailable (`unavailable`), with Retry-After",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {"model": ErrorBody, "description": _DESCRIPTIONS[status]} for status in statuses
    }
