"""The one error tree of Fluxgate; each service maps it to `{"error": {...}}` in one handler."""

from __future__ import annotations

from typing import Any


class FluxgateError(Exception):
    """An error a client may see: a stable `code`, an HTTP status and a message."""

    code = "internal"
    status_code = 500

    def __init__(
        self, message: str, *, field: str | None = None, task: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.task = task

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        body: dict[str, Any] = {"error": error}
        if self.task is not None:
            body["task"] = self.task
        return body


class InvalidInput(FluxgateError):
    code = "invalid_input"
    status_code = 422


class BodyTooLarge(FluxgateError):
    code = "body_too_large"
    status_code = 413


class Unauthorized(FluxgateError):
    code = "unauthorized"
    status_code = 401


class NotFound(FluxgateError):
    code = "not_found"
    status_code = 404


class Conflict(FluxgateError):
    code = "conflict"
    status_code = 409


class IdempotencyInProgress(Conflict):
    """The first request with this Idempotency-Key is still being accepted: retry shortly.
    Its own code, so clients can tell it from a key reused with another body."""

    code = "idempotency_in_progress"


class Unavailable(FluxgateError):
    code = "unavailable"
    status_code = 503


class ModelNotConfigured(FluxgateError):
    code = "model_not_configured"
    status_code = 503


class RateLimited(FluxgateError):
    code = "rate_limited"
    status_code = 429

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TooManyJobs(RateLimited):
    code = "too_many_jobs"


class TooExpensive(FluxgateError):
    """One job costs more than a single request may (FLUXGATE_MAX_JOB_COST, or its key's
    `max_cost`, which it could never fit under); `field` names the input to lower."""

    code = "too_expensive"
    status_code = 422


class TooMuchWork(RateLimited):
    """The key's queued and running jobs together would cost more than its `max_cost`."""

    code = "too_much_work"
