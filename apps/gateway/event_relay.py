"""Relays a task's server-sent events from the notifier, which holds the subscriptions.

The gateway answers `GET /tasks/{id}/events` itself so that one base URL serves the whole API
(and the caller's key is checked here); the notifier streams, the gateway passes bytes through.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from apps.common.security.signing import INTERNAL_READ_HEADER, internal_read_token
from apps.common.service.errors import Unavailable
from apps.common.service.request_context import outgoing_headers


class EventRelay:
    def __init__(self, http: httpx.AsyncClient, notifier_url: str, internal_secret: str) -> None:
        self._http = http
        self._base = notifier_url.rstrip("/")
        self._token = internal_read_token(internal_secret)

    async def open(self, task_id: str) -> AsyncIterator[bytes]:
        """Connect before answering, so a notifier that is down is a 503, not a broken stream."""
        request = self._http.build_request(
            "GET",
            f"{self._base}/internal/stream/{task_id}",
            headers={**outgoing_headers(), INTERNAL_READ_HEADER: self._token},
            timeout=httpx.Timeout(None, connect=2.0),
        )
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise Unavailable("the event stream is unavailable; retry later") from exc
        if response.status_code != 200:
            await response.aclose()
            raise Unavailable(f"the event stream is unavailable ({response.status_code})")

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_raw():
                    yield chunk
            finally:
                await response.aclose()

        return relay()
