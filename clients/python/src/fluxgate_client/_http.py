"""HTTP plumbing shared by the sync and async clients: request shapes, errors, retry policy."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx

from fluxgate_client.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    UnsupportedTaskTypeError,
)

VERSION = "0.1.0"
USER_AGENT = f"fluxgate-client-python/{VERSION}"
DEFAULT_URL = "http://localhost:8080"
# A server may ask for minutes; a client call blocked that long looks hung, so we cap each wait.
RETRY_AFTER_CAP_S = 30.0
# Errors where the request never reached the server: retrying can never duplicate anything.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Errors after the request may have been processed: retried only where that is harmless.
_MAYBE_SENT = (
    httpx.ReadError,
    httpx.ReadTimeout,
    httpx.WriteError,
    httpx.WriteTimeout,
    httpx.RemoteProtocolError,
)


def resolve_base_url(base_url: str | None) -> str:
    return (base_url or os.environ.get("FLUXGATE_URL") or DEFAULT_URL).rstrip("/")


def resolve_api_key(api_key: str | None) -> str | None:
    return api_key if api_key is not None else (os.environ.get("FLUXGATE_API_KEY") or None)


def resolve_admin_token(token: str | None) -> str:
    found = token if token is not None else os.environ.get("FLUXGATE_ADMIN_TOKEN")
    if not found:
        raise ValueError("an admin token is needed: pass admin_token or set FLUXGATE_ADMIN_TOKEN")
    return found


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def same_origin(url: httpx.URL, base: httpx.URL) -> bool:
    """The API key goes only to our own server, never to a host named in a response."""
    return (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)


def parse_retry_after(headers: httpx.Headers) -> float | None:
    """`Retry-After` as seconds (a number or an HTTP date), or None when absent or unreadable."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def error_from_response(response: httpx.Response) -> APIError:
    """The typed error for a non-2xx answer, from the server's `{"error": {...}}` body."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    error = body.get("error") if isinstance(body, dict) else None
    status = response.status_code
    if isinstance(error, dict):
        code = str(error.get("code") or "http_error")
        message = str(error.get("message") or response.reason_phrase)
        field = error.get("field")
        field = None if field is None else str(field)
    else:
        # Not our JSON: a proxy's page, most likely. Keep a little of it for the message.
        code, field = "http_error", None
        snippet = " ".join(str(body).split())[:200]
        message = f"{response.reason_phrase or 'HTTP error'}" + (f": {snippet}" if snippet else "")
    if status in (429, 503):
        kind = RateLimitError if status == 429 else ServiceUnavailableError
        return kind(
            status, code, message, field, body, retry_after=parse_retry_after(response.headers)
        )
    return _error_class(status)(status, code, message, field, body)


def _error_class(status: int) -> type[APIError]:
    if status in (400, 413, 422):
        return BadRequestError
    classes: dict[int, type[APIError]] = {
        401: AuthenticationError,
        404: NotFoundError,
        409: ConflictError,
    }
    if status in classes:
        return classes[status]
    return ServerError if status >= 500 else APIError


def backoff_s(attempt: int, *, base: float = 0.5, cap: float = 8.0) -> float:
    # Jitter keeps many clients that failed together from retrying together.
    return min(cap, base * 2.0**attempt) * random.uniform(0.5, 1.0)


def _in_progress(response: httpx.Response) -> bool:
    """409 `idempotency_in_progress`: the same submit is still being accepted; ask again."""
    if response.status_code != 409:
        return False
    try:
        return bool(response.json().get("error", {}).get("code") == "idempotency_in_progress")
    except ValueError:
        return False


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int

    def after_status(self, attempt: int, response: httpx.Response) -> float | None:
        """Seconds to wait before retrying this answer, or None to give up on it."""
        if attempt >= self.max_retries:
            return None
        if response.status_code not in (429, 503) and not _in_progress(response):
            return None
        asked = parse_retry_after(response.headers)
        return backoff_s(attempt) if asked is None else min(asked, RETRY_AFTER_CAP_S)

    def after_transport_error(
        self, attempt: int, exc: httpx.TransportError, *, idempotent: bool
    ) -> float | None:
        if attempt >= self.max_retries:
            return None
        if isinstance(exc, _NOT_SENT) or (idempotent and isinstance(exc, _MAYBE_SENT)):
            return backoff_s(attempt)
        return None


def task_path(task_id: str, suffix: str = "") -> str:
    # Quoted so an id can never walk to another route.
    return f"/tasks/{quote(task_id, safe='')}{suffix}"


def format_seconds(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}".rstrip("0")


def submit_request(
    type: str,
    input: Mapping[str, Any],
    *,
    webhook_url: str | None,
    webhook_events: Iterable[str] | None,
    priority: int | None,
) -> tuple[str, dict[str, Any]]:
    """The route and body of a submit: `/flux` takes a flat body, `/tasks` a typed envelope."""
    delivery: dict[str, Any] = {}
    if webhook_url is not None:
        delivery["webhook_url"] = webhook_url
    if webhook_events is not None:
        delivery["webhook_events"] = list(webhook_events)
    if priority is not None:
        delivery["priority"] = priority
    if type == "flux":
        return "/flux", {**input, **delivery}
    return "/tasks", {"type": type, "input": dict(input), **delivery}


def submit_headers(idempotency_key: str | None, cancel_after: float | str | None) -> dict[str, str]:
    # One key per submit call, reused by its retries: a retried POST can never make two jobs.
    headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
    if cancel_after is not None:
        headers["Cancel-After"] = format_seconds(cancel_after)
    return headers


def unsupported_type(type: str, exc: APIError) -> UnsupportedTaskTypeError:
    return UnsupportedTaskTypeError(
        exc.status_code,
        "unsupported_task_type",
        f"this server does not accept task type {type!r} (POST /tasks answered "
        f"{exc.status_code} {exc.code}); 'flux' is always available",
        "type",
        exc.body,
    )


def usage_params(since: date | str | None, until: date | str | None) -> dict[str, str]:
    params = {}
    for name, value in (("since", since), ("until", until)):
        if value is not None:
            params[name] = value.isoformat() if isinstance(value, date) else value
    return params
