"""Holding a request until its job ends, on the notifier's long-poll wait (the same wait the
nginx sync facade uses, so all agree on what "finished in time" means): `Prefer: wait=N`, and
the OpenAI routes, whose answer is the finished images."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
from starlette.types import Receive

from apps.common.security.signing import INTERNAL_READ_HEADER, internal_read_token
from apps.common.service.logging import get_logger

log = get_logger(__name__)


class ClientGone(Exception):
    """The client disconnected while it waited for its job (which was then canceled)."""


class WaitUnavailable(Exception):
    """The notifier's wait could not be reached (the job itself is unaffected)."""


async def _disconnected(receive: Receive) -> None:
    # Once the body is read, the server's next message for this request is its disconnect.
    while (await receive())["type"] != "http.disconnect":
        pass


class ResultWaiter:
    def __init__(self, client: httpx.AsyncClient, notifier_url: str, internal_secret: str) -> None:
        self._client = client
        self._base = notifier_url.rstrip("/")
        self._headers = {INTERNAL_READ_HEADER: internal_read_token(internal_secret)}

    async def _wait(self, task_id: str, wait_s: int) -> str | None:
        try:
            response = await self._client.get(
                f"{self._base}/internal/wait/{task_id}",
                params={"timeout": wait_s},
                headers=self._headers,
                timeout=httpx.Timeout(wait_s + 10, connect=2.0),
            )
        except httpx.HTTPError as exc:
            log.warning("wait unavailable", task_id=task_id, error=repr(exc))
            raise WaitUnavailable(task_id) from exc
        if response.status_code == 200:
            return response.text
        if response.status_code == 202:  # not finished within the wait
            return None
        # A refusal (its Redis restarting, a secret that differs) is no answer about the job.
        log.warning("wait refused", task_id=task_id, status=response.status_code)
        raise WaitUnavailable(task_id)

    async def terminal_view(self, task_id: str, wait_s: int) -> str | None:
        """The job view (JSON text) once terminal within `wait_s`, else None."""
        try:
            return await self._wait(task_id, wait_s)
        except WaitUnavailable:
            # Waiting is a courtesy: without the notifier the client still gets its 202.
            return None

    async def terminal_view_or_cancel(
        self,
        task_id: str,
        wait_s: int,
        *,
        receive: Receive,
        cancel: Callable[[], Awaitable[object]] | None,
    ) -> str | None:
        """`terminal_view`, for a client that can learn its job only from this answer: if it
        disconnects first, nobody is left to take the result, so the job is canceled (`cancel`;
        None leaves it to whoever made it) and `ClientGone` is raised. `WaitUnavailable` when the
        notifier cannot be reached: this answer is the client's only way to the images."""
        waiting = asyncio.ensure_future(self._wait(task_id, wait_s))
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((waiting, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if waiting.done():
            return waiting.result()
        waiting.cancel()
        log.info("client left before its job ended", task_id=task_id, canceled=cancel is not None)
        if cancel is not None:
            await cancel()
        raise ClientGone(task_id)
