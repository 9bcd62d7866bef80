"""Following a task, shared by the sync and async clients: WebSocket URLs, close codes, the
order of views across reconnects, backoff and deadlines."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import quote

from websockets.exceptions import ConnectionClosed, InvalidStatus

from fluxgate_client.errors import (
    AuthenticationError,
    FluxgateError,
    NotFoundError,
    WaitTimeout,
)
from fluxgate_client.models import JobView

CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404
RECONNECT_START_S = 0.2
RECONNECT_MAX_S = 5.0
# A first handshake that fails (the notifier restarting, a rolling update) is retried for this
# long before the caller falls back to polling: about five tries.
FIRST_CONNECT_BUDGET_S = 5.0
POLL_START_S = 0.2
POLL_MAX_S = 2.0


def ws_base_from_http(base_url: str) -> str:
    if base_url.startswith("https://"):
        return "wss://" + base_url.removeprefix("https://")
    if base_url.startswith("http://"):
        return "ws://" + base_url.removeprefix("http://")
    return base_url


def task_ws_url(ws_url: str, task_id: str) -> str:
    """The task's socket from a WebSocket base (`ws://host:8300`), or `ws_url` itself when it
    already is one task's socket (a submit's `urls.ws`)."""
    if "/ws/tasks/" in ws_url:
        return ws_url
    return f"{ws_url.rstrip('/')}/ws/tasks/{quote(task_id, safe='')}"


@dataclass(frozen=True)
class WsTarget:
    url: str
    # Derived from base_url only: the server may serve WebSockets elsewhere (the notifier's
    # port when there is no front door), so on failure ask it for the task's real `urls.ws`.
    guessed: bool


class KnownUrls:
    """The `urls.ws` of recent submits: the server knows best where its WebSockets live."""

    def __init__(self, limit: int = 1024) -> None:
        self._urls: OrderedDict[str, str] = OrderedDict()
        self._limit = limit

    def remember(self, task_id: str, url: str | None) -> None:
        if not url:
            return
        self._urls[task_id] = url
        self._urls.move_to_end(task_id)
        while len(self._urls) > self._limit:
            self._urls.popitem(last=False)

    def get(self, task_id: str) -> str | None:
        return self._urls.get(task_id)

    def target(
        self, task_id: str, ws_url: str | None, default_ws: str | None, base: str
    ) -> WsTarget:
        """Explicit argument, then a submit's `urls.ws`, then the client option, then base_url."""
        if ws_url:
            return WsTarget(task_ws_url(ws_url, task_id), guessed=False)
        known = self.get(task_id)
        if known:
            return WsTarget(known, guessed=False)
        if default_ws:
            return WsTarget(task_ws_url(default_ws, task_id), guessed=False)
        return WsTarget(task_ws_url(ws_base_from_http(base), task_id), guessed=True)


def ws_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def parse_view(message: str | bytes) -> JobView | None:
    try:
        data = json.loads(message)
    except ValueError:
        return None  # not a view: nothing to show, and not worth dropping the stream for
    return JobView.from_dict(data) if isinstance(data, dict) else None


def close_error(exc: ConnectionClosed, task_id: str) -> FluxgateError | None:
    """The error a close code means, or None when it is a drop worth reconnecting after."""
    code = exc.rcvd.code if exc.rcvd is not None else None
    reason = exc.rcvd.reason if exc.rcvd is not None else ""
    if code == CLOSE_NOT_FOUND:
        return NotFoundError(404, "not_found", reason or f"task {task_id} not found")
    if code == CLOSE_UNAUTHORIZED:
        return AuthenticationError(401, "unauthorized", reason or "API key required")
    return None


def handshake_error(exc: Exception) -> FluxgateError | None:
    """A refused handshake that no retry or fallback can fix. Not 403: an ASGI server answers
    that for any path without a WebSocket route, which the fallback to `urls.ws` can fix."""
    if isinstance(exc, InvalidStatus) and exc.response.status_code == 401:
        return AuthenticationError(401, "unauthorized", "the WebSocket refused the API key")
    return None


class SeqFilter:
    """Views only move forward: after a reconnect the snapshot may repeat what we yielded."""

    def __init__(self) -> None:
        self.last_seq = -1

    def fresh(self, view: JobView) -> bool:
        if view.seq <= self.last_seq:
            return False
        self.last_seq = view.seq
        return True


class Backoff:
    """Reconnect delays, 0.2 s doubling to 5 s, for at most `budget_s` of one outage."""

    def __init__(self, budget_s: float) -> None:
        self._budget_s = budget_s
        self._delay = RECONNECT_START_S
        self._down_since: float | None = None

    def reset(self) -> None:
        """The link works again: the next outage starts afresh."""
        self._delay = RECONNECT_START_S
        self._down_since = None

    def next_delay(self) -> float | None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
        left = self._budget_s - (now - self._down_since)
        if left <= 0:
            return None
        delay = min(self._delay, left)
        self._delay = min(self._delay * 2, RECONNECT_MAX_S)
        return delay


class Deadline:
    """The end of a `wait`, or none at all."""

    def __init__(self, timeout: float | None, task_id: str) -> None:
        self._at = None if timeout is None else time.monotonic() + timeout
        self._timeout = timeout
        self._task_id = task_id

    def remaining(self) -> float | None:
        """Seconds left (None: unbounded); raises WaitTimeout when none are."""
        if self._at is None:
            return None
        left = self._at - time.monotonic()
        if left <= 0:
            raise self.timeout_error()
        return left

    def cap(self, seconds: float) -> float:
        left = self.remaining()
        return seconds if left is None else min(seconds, left)

    def timeout_error(self) -> WaitTimeout:
        return WaitTimeout(
            f"task {self._task_id} did not end within {self._timeout:g} s", self._task_id
        )


def next_poll_delay(delay: float) -> float:
    return min(delay * 2, POLL_MAX_S)
