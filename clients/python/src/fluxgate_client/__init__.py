"""Python client of Fluxgate: submit AI image jobs, follow them live, verify webhooks."""

from fluxgate_client._http import VERSION as __version__
from fluxgate_client.async_client import AsyncAdmin, AsyncFluxgate
from fluxgate_client.client import Admin, Fluxgate
from fluxgate_client.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ConnectionFailed,
    FluxgateError,
    NotFoundError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    TaskCanceledError,
    TaskError,
    TaskFailedError,
    UnsupportedTaskTypeError,
    WaitTimeout,
    WebhookVerificationError,
    WebSocketUnavailable,
)
from fluxgate_client.models import TERMINAL_STATUSES, JobView, Preview, Submitted, TaskUrls
from fluxgate_client.webhooks import verify_webhook

__all__ = [
    "TERMINAL_STATUSES",
    "APIError",
    "Admin",
    "AsyncAdmin",
    "AsyncFluxgate",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "ConnectionFailed",
    "Fluxgate",
    "FluxgateError",
    "JobView",
    "NotFoundError",
    "Preview",
    "RateLimitError",
    "ServerError",
    "ServiceUnavailableError",
    "Submitted",
    "TaskCanceledError",
    "TaskError",
    "TaskFailedError",
    "TaskUrls",
    "UnsupportedTaskTypeError",
    "WaitTimeout",
    "WebSocketUnavailable",
    "WebhookVerificationError",
    "__version__",
    "verify_webhook",
]
