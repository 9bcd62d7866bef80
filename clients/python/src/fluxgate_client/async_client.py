"""`AsyncFluxgate`: the asyncio client, method for method the same as `Fluxgate`."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncGenerator, Iterable, Mapping
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import Any, Self, Unpack
from urllib.parse import quote

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, WebSocketException

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


async def _notify(on_update: OnUpdate | None, view: JobView) -> None:
    if on_update is not None:
        outcome = on_update(view)
        if inspect.isawaitable(outcome):
            await outcome


class AsyncFluxgate(ClientBase):
    """Asyncio client of a Fluxgate server; see `Fluxgate` for the options."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        ws_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        reconnect_budget: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url,
            api_key,
            ws_url=ws_url,
            timeout=timeout,
            max_retries=max_retries,
            reconnect_budget=reconnect_budget,
        )
        self._http = httpx.AsyncClient(transport=transport, **self._client_options())

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- HTTP -------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Any route, with the client's key, retries and typed errors (see `Fluxgate.request`)."""
        if idempotent is None:
            idempotent = method.upper() in ("GET", "HEAD", "PUT", "DELETE")
        request_headers = self._headers_for(url, headers)
        attempt = 0
        while True:
            try:
                response = await self._http.request(
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
            await asyncio.sleep(delay)

    # --- tasks ------------------------------------------------------------------------------

    async def submit(
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
        path, body = submit_request(
            type, input, webhook_url=webhook_url, webhook_events=webhook_events, priority=priority
        )
        headers = submit_headers(idempotency_key, cancel_after)
        try:
            response = await self.request("POST", path, json=body, headers=headers, idempotent=True)
        except APIError as exc:
            # 422 on `type`: not a type this server has; 404/405: a server without POST /tasks.
            if path == "/tasks" and (
                exc.status_code in (404, 405) or (exc.status_code == 422 and exc.field == "type")
            ):
                raise unsupported_type(type, exc) from exc
            raise
        return self._submitted(response)

    async def get(self, task_id: str) -> JobView:
        return JobView.from_dict((await self.request("GET", task_path(task_id))).json())

    async def cancel(self, task_id: str) -> JobView:
        path = task_path(task_id, "/cancel")
        return JobView.from_dict((await self.request("POST", path, idempotent=True)).json())

    async def stream(
        self, task_id: str, *, ws_url: str | None = None
    ) -> AsyncGenerator[JobView, None]:
        """The job's views as they happen, until it ends (see `Fluxgate.stream`: the first
        connection is retried, polling takes over when the WebSocket cannot be had). Leaving
        early: `async with contextlib.aclosing(client.stream(id)) as views:`."""
        deadline = Deadline(None, task_id)
        seen = SeqFilter()
        try:
            async with contextlib.aclosing(self._follow(task_id, ws_url, deadline)) as views:
                async for view in views:
                    if seen.fresh(view):
                        yield view
            return
        except WebSocketUnavailable:
            pass
        async with contextlib.aclosing(self._poll_views(task_id, deadline, seen)) as polled:
            async for view in polled:
                yield view

    # `timeout` rather than asyncio.timeout(): the same signature as the blocking client, and a
    # deadline that also bounds the polling fallback.
    async def wait(
        self,
        task_id: str,
        timeout: float | None = None,  # noqa: ASYNC109
        *,
        on_update: OnUpdate | None = None,
    ) -> JobView:
        deadline = Deadline(timeout, task_id)
        seen = SeqFilter()
        last: JobView | None = None
        try:
            async with contextlib.aclosing(self._follow(task_id, None, deadline)) as views:
                async for view in views:
                    seen.fresh(view)
                    await _notify(on_update, view)
                    last = view
        except WebSocketUnavailable:
            return await self._poll(task_id, deadline, seen, on_update)
        if last is None:
            raise FluxgateError(f"the stream of task {task_id} ended without a view")
        return last

    async def run(
        self,
        type: str,
        input: Mapping[str, Any],
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        on_update: OnUpdate | None = None,
        **submit_kwargs: Unpack[SubmitOptions],
    ) -> JobView:
        submitted = await self.submit(type, input, **submit_kwargs)
        return final_or_raise(await self.wait(submitted.task_id, timeout, on_update=on_update))

    async def download(self, url: str) -> bytes:
        return (await self.request("GET", url)).content

    async def save_image(self, view: JobView, path: str | Path, index: int = 0) -> Path:
        data = await self.download(image_url(view, index))
        target = Path(path)
        # A large image written on the event loop would stall every other task.
        await asyncio.to_thread(target.write_bytes, data)
        return target

    async def usage(
        self, since: date | str | None = None, until: date | str | None = None
    ) -> dict[str, Any]:
        response = await self.request("GET", "/usage", params=usage_params(since, until))
        body: dict[str, Any] = response.json()
        return body

    def admin(self, admin_token: str | None = None) -> AsyncAdmin:
        return AsyncAdmin(self, resolve_admin_token(admin_token))

    # --- following --------------------------------------------------------------------------

    async def _follow(
        self, task_id: str, ws_url: str | None, deadline: Deadline
    ) -> AsyncGenerator[JobView, None]:
        target = self._ws_target(task_id, ws_url)
        seen = SeqFilter()
        backoff = Backoff(self.reconnect_budget)
        first_connect = Backoff(min(FIRST_CONNECT_BUDGET_S, self.reconnect_budget))
        opened = False
        while True:
            open_timeout = deadline.cap(self.timeout)
            try:
                ws = await connect(
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
                        better = self._server_ws_target(await self.get(task_id), target)
                        if better is not None:
                            target = better
                            continue
                    # Not opened yet: retry a few times before the caller falls back to polling.
                    delay = first_connect.next_delay()
                    if delay is None:
                        raise WebSocketUnavailable(f"cannot open {target.url}: {exc!r}") from exc
                    await asyncio.sleep(deadline.cap(delay))
                    continue
            else:
                opened = True
                async with ws:
                    try:
                        while True:
                            message = await asyncio.wait_for(ws.recv(), deadline.remaining())
                            view = parse_view(message)
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
            await asyncio.sleep(deadline.cap(delay))

    async def _poll(
        self, task_id: str, deadline: Deadline, seen: SeqFilter, on_update: OnUpdate | None
    ) -> JobView:
        last: JobView | None = None
        async with contextlib.aclosing(
            self._poll_views(task_id, deadline, seen, every=True)
        ) as polled:
            async for view in polled:
                if seen.fresh(view):
                    await _notify(on_update, view)
                last = view
        assert last is not None
        return last

    async def _poll_views(
        self, task_id: str, deadline: Deadline, seen: SeqFilter, *, every: bool = False
    ) -> AsyncGenerator[JobView, None]:
        """Views by polling until the job ends: the new ones, or `every` one polled."""
        delay = POLL_START_S
        while True:
            view = await self.get(task_id)
            if every or seen.fresh(view):
                yield view
            if view.is_terminal:
                return
            await asyncio.sleep(deadline.cap(delay))
            deadline.remaining()
            delay = next_poll_delay(delay)


class AsyncAdmin:
    """`/admin/keys` with the admin token; get one from `AsyncFluxgate.admin()`."""

    def __init__(self, client: AsyncFluxgate, admin_token: str) -> None:
        self._client = client
        self._headers = bearer(admin_token)

    async def create_key(
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
        response = await self._client.request(
            "POST", "/admin/keys", json=body, headers=self._headers, idempotent=False
        )
        created: dict[str, Any] = response.json()
        return created

    async def update_key(self, key_id: str, **limits: Unpack[KeyLimits]) -> dict[str, Any]:
        """Change a key's limits (`KeyLimits`); those not given stay. The key as it is now."""
        response = await self._client.request(
            "PATCH",
            f"/admin/keys/{quote(key_id, safe='')}",
            json=dict(limits),
            headers=self._headers,
        )
        updated: dict[str, Any] = response.json()
        return updated

    async def list_keys(self) -> list[dict[str, Any]]:
        response = await self._client.request("GET", "/admin/keys", headers=self._headers)
        keys: list[dict[str, Any]] = response.json()
        return keys

    async def revoke_key(self, key_id: str) -> None:
        await self._client.request(
            "DELETE",
            f"/admin/keys/{quote(key_id, safe='')}",
            headers=self._headers,
            idempotent=False,
        )
