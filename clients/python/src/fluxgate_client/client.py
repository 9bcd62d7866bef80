"""`Fluxgate`: the blocking client."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Generator, Iterable, Mapping
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import Any, Self, Unpack
from urllib.parse import quote

import httpx
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.sync.client import connect

from fluxgate_client._base import (
    ClientBase,
    KeyLimits,
    OnUpdate,
    SubmitOptions,
    final_or_raise,
    image_url,
)
from fluxgate_client._follow import (
    FIRST_CONNECT_BUDGET_S,
    POLL_START_S,
    Backoff,
    Deadline,
    SeqFilter,
    close_error,
    handshake_error,
    next_poll_delay,
    parse_view,
    ws_headers,
)
from fluxgate_client._http import (
    USER_AGENT,
    bearer,
    error_from_response,
    resolve_admin_token,
    submit_headers,
    submit_request,
    task_path,
    unsupported_type,
    usage_params,
)
from fluxgate_client.errors import (
    APIError,
    ConnectionFailed,
    FluxgateError,
    WebSocketUnavailable,
)
from fluxgate_client.models import JobView, Submitted


class Fluxgate(ClientBase):
    """Blocking client of a Fluxgate server.

    `base_url` defaults to `$FLUXGATE_URL` (else http://localhost:8080), `api_key` to
    `$FLUXGATE_API_KEY`. `ws_url` is the WebSocket base when it is not the same host as
    `base_url` (e.g. ws://host:8300 without the nginx front door).
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        ws_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        reconnect_budget: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url,
            api_key,
            ws_url=ws_url,
            timeout=timeout,
            max_retries=max_retries,
            reconnect_budget=reconnect_budget,
        )
        self._http = httpx.Client(transport=transport, **self._client_options())

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- HTTP -------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Any route, with the client's key, retries and typed errors. `idempotent` (default:
        GET, HEAD, PUT, DELETE) allows retrying after the request may have reached the server."""
        if idempotent is None:
            idempotent = method.upper() in ("GET", "HEAD", "PUT", "DELETE")
        request_headers = self._headers_for(url, headers)
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    method, url, json=json, params=params, headers=request_headers
                )
            except httpx.TransportError as exc:
                delay = self._retry.after_transport_error(attempt, exc, idempotent=idempotent)
                if delay is None:
                    raise ConnectionFailed(
                        f"{method} {url}: {type(exc).__name__}: {exc}".rstrip(": ")
                    ) from exc
            else:
                if response.status_code < 400:
                    return response
                delay = self._retry.after_status(attempt, response)
                if delay is None:
                    raise error_from_response(response)
            attempt += 1
            time.sleep(delay)

    # --- tasks ------------------------------------------------------------------------------

    def submit(
        self,
        type: str,
        input: Mapping[str, Any],
        *,
        webhook_url: str | None = None,
        webhook_events: Iterable[str] | None = None,
        priority: int | None = None,
        idempotency_key: str | None = None,
        cancel_after: float | str | None = None,
    ) -> Submitted:
        """Queue a job; answers at once. Safe to retry: every call sends an Idempotency-Key."""
        path, body = submit_request(
            type, input, webhook_url=webhook_url, webhook_events=webhook_events, priority=priority
        )
        headers = submit_headers(idempotency_key, cancel_after)
        try:
            response = self.request("POST", path, json=body, headers=headers, idempotent=True)
        except APIError as exc:
            # 422 on `type`: not a type this server has; 404/405: a server without POST /tasks.
            if path == "/tasks" and (
                exc.status_code in (404, 405) or (exc.status_code == 422 and exc.field == "type")
            ):
                raise unsupported_type(type, exc) from exc
            raise
        return self._submitted(response)

    def get(self, task_id: str) -> JobView:
        return JobView.from_dict(self.request("GET", task_path(task_id)).json())

    def cancel(self, task_id: str) -> JobView:
        """Cancel a job. A running one answers still `running`: it stops at its next step."""
        path = task_path(task_id, "/cancel")
        return JobView.from_dict(self.request("POST", path, idempotent=True).json())

    def stream(self, task_id: str, *, ws_url: str | None = None) -> Generator[JobView, None, None]:
        """The job's views as they happen, the current one first, until it ends; retries the
        first connection and reconnects on a dropped one, falls back to polling when the
        WebSocket cannot be had, and never yields the same or an older view twice. Leaving
        early: `with contextlib.closing(client.stream(id)) as views:` closes the socket."""
        deadline = Deadline(None, task_id)
        seen = SeqFilter()
        try:
            with contextlib.closing(self._follow(task_id, ws_url, deadline)) as views:
                for view in views:
                    if seen.fresh(view):
                        yield view
            return
        except WebSocketUnavailable:
            pass
        yield from self._poll_views(task_id, deadline, seen)

    def wait(
        self, task_id: str, timeout: float | None = None, *, on_update: OnUpdate | None = None
    ) -> JobView:
        """The job's final view. Follows the WebSocket, or polls when it cannot be opened."""
        deadline = Deadline(timeout, task_id)
        seen = SeqFilter()
        last: JobView | None = None
        try:
            with contextlib.closing(self._follow(task_id, None, deadline)) as views:
                for view in views:
                    seen.fresh(view)
                    if on_update is not None:
                        on_update(view)
                    last = view
        except WebSocketUnavailable:
            return self._poll(task_id, deadline, seen, on_update)
        if last is None:
            raise FluxgateError(f"the stream of task {task_id} ended without a view")
        return last

    def run(
        self,
        type: str,
        input: Mapping[str, Any],
        *,
        timeout: float | None = None,
        on_update: OnUpdate | None = None,
        **submit_kwargs: Unpack[SubmitOptions],
    ) -> JobView:
        """Submit and wait: the succeeded view, else TaskFailedError / TaskCanceledError."""
        submitted = self.submit(type, input, **submit_kwargs)
        return final_or_raise(self.wait(submitted.task_id, timeout, on_update=on_update))

    def download(self, url: str) -> bytes:
        return self.request("GET", url).content

    def save_image(self, view: JobView, path: str | Path, index: int = 0) -> Path:
        data = self.download(image_url(view, index))
        target = Path(path)
        target.write_bytes(data)
        return target

    def usage(
        self, since: date | str | None = None, until: date | str | None = None
    ) -> dict[str, Any]:
        """The calling key's jobs and compute seconds per task type and UTC day."""
        body: dict[str, Any] = self.request(
            "GET", "/usage", params=usage_params(since, until)
        ).json()
        return body

    def admin(self, admin_token: str | None = None) -> Admin:
        """Key management with the admin token (default `$FLUXGATE_ADMIN_TOKEN`)."""
        return Admin(self, resolve_admin_token(admin_token))

    # --- following --------------------------------------------------------------------------

    def _follow(
        self, task_id: str, ws_url: str | None, deadline: Deadline
    ) -> Generator[JobView, None, None]:
        target = self._ws_target(task_id, ws_url)
        seen = SeqFilter()
        backoff = Backoff(self.reconnect_budget)
        first_connect = Backoff(min(FIRST_CONNECT_BUDGET_S, self.reconnect_budget))
        opened = False
        while True:
            open_timeout = deadline.cap(self.timeout)
            try:
                ws = connect(
                    target.url,
                    additional_headers=ws_headers(self.api_key),
                    user_agent_header=USER_AGENT,
                    compression=None,
                    open_timeout=open_timeout,
                )
            except (OSError, WebSocketException) as exc:
                deadline.remaining()  # a handshake cut short by the deadline is a timeout
                if (fatal := handshake_error(exc)) is not None:
                    raise fatal from exc
                if not opened:
                    if target.guessed:
                        better = self._server_ws_target(self.get(task_id), target)
                        if better is not None:
                            target = better
                            continue
                    # Not opened yet: retry a few times before the caller falls back to polling.
                    delay = first_connect.next_delay()
                    if delay is None:
                        raise WebSocketUnavailable(f"cannot open {target.url}: {exc!r}") from exc
                    time.sleep(deadline.cap(delay))
                    continue
            else:
                opened = True
                with ws:
                    try:
                        while True:
                            view = parse_view(ws.recv(timeout=deadline.remaining()))
                            if view is None:
                                continue
                            backoff.reset()
                            if seen.fresh(view):
                                yield view
                                if view.is_terminal:
                                    return
                    except ConnectionClosed as exc:
                        if (error := close_error(exc, task_id)) is not None:
                            raise error from None
                    except TimeoutError:
                        raise deadline.timeout_error() from None
            # Dropped: the server's snapshot on the next connection covers whatever we missed.
            delay = backoff.next_delay()
            if delay is None:
                raise WebSocketUnavailable(
                    f"the WebSocket of task {task_id} stayed down for {self.reconnect_budget:g} s"
                )
            time.sleep(deadline.cap(delay))

    def _poll(
        self, task_id: str, deadline: Deadline, seen: SeqFilter, on_update: OnUpdate | None
    ) -> JobView:
        last: JobView | None = None
        for view in self._poll_views(task_id, deadline, seen, every=True):
            if seen.fresh(view) and on_update is not None:
                on_update(view)
            last = view
        assert last is not None
        return last

    def _poll_views(
        self, task_id: str, deadline: Deadline, seen: SeqFilter, *, every: bool = False
    ) -> Generator[JobView, None, None]:
        """Views by polling until the job ends: the new ones, or `every` one polled."""
        delay = POLL_START_S
        while True:
            view = self.get(task_id)
            if every or seen.fresh(view):
                yield view
            if view.is_terminal:
                return
            time.sleep(deadline.cap(delay))
            deadline.remaining()
            delay = next_poll_delay(delay)


class Admin:
    """`/admin/keys` with the admin token; get one from `Fluxgate.admin()`."""

    def __init__(self, client: Fluxgate, admin_token: str) -> None:
        self._client = client
        self._headers = bearer(admin_token)

    def create_key(
        self,
        name: str,
        rate: str | None = None,
        max_active: int | None = None,
        *,
        burst: int | None = None,
        max_queued: int | None = None,
        max_cost: float | None = None,
        weight: float | None = None,
    ) -> dict[str, Any]:
        """A new key; the answer's `token` is shown this once."""
        body: dict[str, Any] = {"name": name}
        # `max_queued` is the older name of `max_active`.
        active = max_active if max_active is not None else max_queued
        for field, value in (
            ("rate", rate),
            ("max_active", active),
            ("burst", burst),
            ("max_cost", max_cost),
            ("weight", weight),
        ):
            if value is not None:
                body[field] = value
        # Not idempotent: a retry after a lost answer would make a second key.
        response = self._client.request(
            "POST", "/admin/keys", json=body, headers=self._headers, idempotent=False
        )
        created: dict[str, Any] = response.json()
        return created

    def update_key(self, key_id: str, **limits: Unpack[KeyLimits]) -> dict[str, Any]:
        """Change a key's limits (`KeyLimits`); those not given stay. The key as it is now."""
        response = self._client.request(
            "PATCH",
            f"/admin/keys/{quote(key_id, safe='')}",
            json=dict(limits),
            headers=self._headers,
        )
        updated: dict[str, Any] = response.json()
        return updated

    def list_keys(self) -> list[dict[str, Any]]:
        keys: list[dict[str, Any]] = self._client.request(
            "GET", "/admin/keys", headers=self._headers
        ).json()
        return keys

    def revoke_key(self, key_id: str) -> None:
        # A retried DELETE that had worked would answer 404: report the first answer instead.
        self._client.request(
            "DELETE",
            f"/admin/keys/{quote(key_id, safe='')}",
            headers=self._headers,
            idempotent=False,
        )
