"""Every error the client raises; catch `FluxgateError` to catch them all."""

from __future__ import annotations

from typing import Any

from fluxgate_client.models import JobView


class FluxgateError(Exception):
    """Base of everything this package raises on purpose."""


class APIError(FluxgateError):
    """The server answered with an error: `{"error": {"code", "message", "field"?}, "task"?}`."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        field: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.field = field
        self.body = body

    def __str__(self) -> str:
        where = f" (field {self.field})" if self.field else ""
        return f"{self.status_code} {self.code}{where}: {self.message}"


class BadRequestError(APIError):
    """400, 413 or 422: the request itself is wrong; `field` names the culprit when known."""


class UnsupportedTaskTypeError(BadRequestError):
    """The server does not serve this task type (`POST /tasks` refused the `type`, or the
    server is older and has no `POST /tasks`)."""


class AuthenticationError(APIError):
    """401: the API key (or admin token) is missing, unknown or revoked."""


class NotFoundError(APIError):
    """404: no such task or key, or one that belongs to another API key."""


class ConflictError(APIError):
    """409: e.g. canceling a finished job, or an Idempotency-Key reused with another body."""

    @property
    def view(self) -> JobView | None:
        task = self.body.get("task") if isinstance(self.body, dict) else None
        return JobView.from_dict(task) if isinstance(task, dict) else None


class _RetryAfter(APIError):
    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        field: str | None = None,
        body: Any = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status_code, code, message, field, body)
        # Seconds the server asked us to wait (`Retry-After`), when it said.
        self.retry_after = retry_after


class RateLimitError(_RetryAfter):
    """429: the key's submit rate or its cap on active jobs is reached (after retries)."""


class ServiceUnavailableError(_RetryAfter):
    """503: Redis or the queue is down, or no model is configured (after retries)."""


class ServerError(APIError):
    """Any other 5xx."""


class TaskError(FluxgateError):
    """A job ended without succeeding; `view` is its final state."""

    def __init__(self, view: JobView) -> None:
        self.view = view
        detail = f": {view.error_code}: {view.error_message}" if view.error else ""
        super().__init__(f"task {view.task_id} {view.status}{detail}")


class TaskFailedError(TaskError):
    """The job ended `failed`."""


class TaskCanceledError(TaskError):
    """The job ended `canceled` or `expired`."""


class WaitTimeout(FluxgateError, TimeoutError):
    """The job did not end within the time given to `wait` or `run`; it may still finish."""

    def __init__(self, message: str, task_id: str | None = None) -> None:
        super().__init__(message)
        self.task_id = task_id


class ConnectionFailed(FluxgateError):
    """The server could not be reached (after retries where they were safe)."""


class WebSocketUnavailable(ConnectionFailed):
    """The task's WebSocket could not be opened, or stayed down past the reconnect budget."""


class WebhookVerificationError(FluxgateError):
    """A webhook's signature, timestamp or body is not acceptable: answer it with a 4xx."""
