"""`Prefer: wait=N`: hold a submit until its job ends, on the notifier's long-poll wait (the same
wait the nginx sync facade uses, so both agree on what "finished in time" means)."""

from __future__ import annotations

import httpx

from apps.common.security.signing import INTERNAL_READ_HEADER, internal_read_token
from apps.common.service.logging import get_logger

log = get_logger(__name__)


class ResultWaiter:
    def __init__(self, client: httpx.AsyncClient, notifier_url: str, internal_secret: str) -> None:
        self._client = client
        self._base = notifier_url.rstrip("/")
        self._headers = {INTERNAL_READ_HEADER: internal_read_token(internal_secret)}

    async def terminal_view(self, task_id: str, wait_s: int) -> str | None:
        """The job view (JSON text) once terminal within `wait_s`, else None."""
        try:
            response = await self._client.get(
                f"{self._base}/internal/wait/{task_id}",
                params={"timeout": wait_s},
                headers=self._headers,
                timeout=httpx.Timeout(wait_s + 10, connect=2.0),
            )
        except httpx.HTTPError as exc:
            # Waiting is a courtesy: without the notifier the client still gets its 202.
            log.warning("wait unavailable", task_id=task_id, error=repr(exc))
            return None
        return response.text if response.status_code == 200 else None
