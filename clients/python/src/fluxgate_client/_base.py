"""State and answers shared by `Fluxgate` and `AsyncFluxgate`; neither does I/O here."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypedDict

import httpx

from fluxgate_client._follow import KnownUrls, WsTarget
from fluxgate_client._http import (
    USER_AGENT,
    RetryPolicy,
    bearer,
    resolve_api_key,
    resolve_base_url,
    same_origin,
)
from fluxgate_client.errors import FluxgateError, TaskCanceledError, TaskFailedError
from fluxgate_client.models import JobView, Submitted

# Called with every new view while waiting: drives progress bars and event logs.
OnUpdate = Callable[[JobView], object]


class SubmitOptions(TypedDict, total=False):
    """The keyword arguments of `submit`, which `run` passes on."""

    webhook_url: str | None
    webhook_events: Iterable[str] | None
    priority: int | None
    idempotency_key: str | None
    cancel_after: float | str | None


class KeyLimits(TypedDict, total=False):
    """A key's limits, as `create_key` sets and `update_key` changes them: `rate` (e.g. `5/s`),
    `burst`, `max_active` (jobs queued or running), `max_cost` (the most those jobs may cost
    together, in megapixel-steps; None given to `update_key` removes the cap) and `weight` (its
    share of GPU time under fair scheduling). Only the ones given are sent."""

    rate: str
    burst: int
    max_active: int
    max_cost: float | None
    weight: float


class ClientBase:
    def __init__(
        self,
        base_url: str | None,
        api_key: str | None,
        *,
        ws_url: str | None,
        timeout: float,
        max_retries: int,
        reconnect_budget: float,
    ) -> None:
        self.base_url = resolve_base_url(base_url)
        self.api_key = resolve_api_key(api_key)
        self.ws_url = ws_url
        self.timeout = timeout
        self.max_retries = max_retries
        self.reconnect_budget = reconnect_budget
        self._retry = RetryPolicy(max_retries)
        self._origin = httpx.URL(self.base_url)
        self._known = KnownUrls()

    def _client_options(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "timeout": self.timeout,
            "headers": {"User-Agent": USER_AGENT},
        }

    def _headers_for(self, url: str, extra: Mapping[str, str] | None) -> httpx.Headers:
        headers = httpx.Headers(extra or {})
        target = self._origin.join(url)
        if self.api_key and "authorization" not in headers and same_origin(target, self._origin):
            headers.update(bearer(self.api_key))
        return headers

    def _ws_target(self, task_id: str, ws_url: str | None) -> WsTarget:
        return self._known.target(task_id, ws_url, self.ws_url, self.base_url)

    def _server_ws_target(self, view: JobView, current: WsTarget) -> WsTarget | None:
        """The task's socket as the server names it, when that is somewhere we have not tried."""
        url = view.urls.ws if view.urls is not None else ""
        if not url or url == current.url:
            return None
        self._known.remember(view.task_id, url)
        return WsTarget(url, guessed=False)

    def _submitted(self, response: httpx.Response) -> Submitted:
        replayed = response.headers.get("idempotent-replayed", "").lower() == "true"
        submitted = Submitted.from_dict(response.json(), replayed=replayed)
        if submitted.urls is not None:
            self._known.remember(submitted.task_id, submitted.urls.ws)
        return submitted


def final_or_raise(view: JobView) -> JobView:
    """`run`'s contract: a succeeded view, or the error that says how the job ended."""
    if view.status == "failed":
        raise TaskFailedError(view)
    if view.status in ("canceled", "expired"):
        raise TaskCanceledError(view)
    return view


def image_url(view: JobView, index: int) -> str:
    images = view.images
    if not 0 <= index < len(images) or not images[index].get("url"):
        raise FluxgateError(
            f"task {view.task_id} ({view.status}) has no image {index}; it has {len(images)}"
        )
    return str(images[index]["url"])
