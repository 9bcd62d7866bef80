"""One id follows a task everywhere: request and task ids in log context, headers and metrics.

Every HTTP service wraps itself in `RequestContextMiddleware`; it takes `X-Request-ID` and
`X-Fluxgate-Task-Id` from the caller (or makes a request id), binds both into the structlog
context of the request, counts and times the request for Prometheus, and writes one access line.
Clients of other services forward the bound ids with `outgoing_headers()`.
"""

from __future__ import annotations

import re
import time
import uuid

import structlog
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apps.common.service.logging import get_logger

REQUEST_ID_HEADER = "X-Request-ID"
TASK_ID_HEADER = "X-Fluxgate-Task-Id"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Scrapes and probes are counted but not logged: they would drown the access log.
_QUIET_PATHS = ("/metrics", "/healthz", "/readyz", "/load")

HTTP_REQUESTS = Counter(
    "fluxgate_http_requests_total",
    "HTTP requests answered",
    ["service", "method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "fluxgate_http_request_seconds",
    "Time to the start of the answer (streams: to the first bytes)",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

log = get_logger("fluxgate.access")


def clean_id(value: str | None) -> str | None:
    """A caller's id if it is safe to log and forward, else None (it will be replaced)."""
    return value if value is not None and _SAFE_ID.match(value) else None


def new_request_id() -> str:
    return uuid.uuid4().hex


def bind_ids(*, request_id: str | None = None, task_id: str | None = None) -> None:
    """Add the ids to every log line of the current request, task or job."""
    ids = {"request_id": request_id, "task_id": task_id}
    structlog.contextvars.bind_contextvars(**{k: v for k, v in ids.items() if v is not None})


def current_ids() -> dict[str, str]:
    bound = structlog.contextvars.get_contextvars()
    return {name: str(bound[name]) for name in ("request_id", "task_id") if bound.get(name)}


def outgoing_headers() -> dict[str, str]:
    """Headers that carry the bound ids to the next service."""
    ids = current_ids()
    headers = {}
    if "request_id" in ids:
        headers[REQUEST_ID_HEADER] = ids["request_id"]
    if "task_id" in ids:
        headers[TASK_ID_HEADER] = ids["task_id"]
    return headers


_REQUEST_ID_RAW = REQUEST_ID_HEADER.lower().encode()
_TASK_ID_RAW = TASK_ID_HEADER.lower().encode()


def _ids_from_scope(scope: Scope) -> tuple[str | None, str | None]:
    """The two ids from ASGI's raw header list (names arrive lower-cased), without a dict."""
    request_id = task_id = None
    for name, value in scope["headers"]:
        if name == _REQUEST_ID_RAW:
            request_id = clean_id(value.decode("latin-1"))
        elif name == _TASK_ID_RAW:
            task_id = clean_id(value.decode("latin-1"))
    return request_id, task_id


def _route_of(scope: Scope) -> str:
    """The route template, never the raw path: task ids would explode the metric's labels."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path:
        return str(path)
    raw = str(scope.get("path", ""))
    for mounted in ("/metrics", "/files"):
        if raw.startswith(mounted):
            return mounted
    return "unmatched"


class RequestContextMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): streaming answers pass through untouched."""

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app = app
        self.service = service
        # Labelled children looked up once: `.labels()` per request costs a lock and a hash.
        self._request_counters: dict[tuple[str, str, int], Counter] = {}
        self._latency_histograms: dict[tuple[str, str], Histogram] = {}

    def _requests(self, method: str, route: str, status: int) -> Counter:
        key = (method, route, status)
        child = self._request_counters.get(key)
        if child is None:
            child = HTTP_REQUESTS.labels(self.service, method, route, str(status))
            self._request_counters[key] = child
        return child

    def _seconds(self, method: str, route: str) -> Histogram:
        key = (method, route)
        child = self._latency_histograms.get(key)
        if child is None:
            child = HTTP_SECONDS.labels(self.service, method, route)
            self._latency_histograms[key] = child
        return child

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given_request_id, task_id = _ids_from_scope(scope)
        request_id = given_request_id or new_request_id()
        # No clearing needed: the server runs each request in its own task, with its own copy
        # of the context, so what one request binds never reaches another.
        bind_ids(request_id=request_id, task_id=task_id)
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (REQUEST_ID_HEADER.lower().encode(), request_id.encode()),
                ]
                self._seconds(scope["method"], _route_of(scope)).observe(
                    time.perf_counter() - started
                )
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = _route_of(scope)
            self._requests(scope["method"], route, status).inc()
            if not str(scope.get("path", "")).startswith(_QUIET_PATHS):
                log.info(
                    "request",
                    method=scope["method"],
                    path=scope.get("path"),
                    route=route,
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                )
