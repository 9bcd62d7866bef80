"""Calls the balancer and reads the inference server's NDJSON stream as typed lines."""

from __future__ import annotations

from collections.abc import Generator

import httpx
from pydantic import TypeAdapter, ValidationError

from apps.common.contracts import InferenceLine, InferenceRequest
from apps.common.request_context import outgoing_headers

_LINE = TypeAdapter(InferenceLine)
REFUSED = "x-fluxgate-refused"


class InferenceRetryable(Exception):
    """No backend took the job, or the stream broke before a result: running it again may work."""


class InferenceBusy(InferenceRetryable):
    """Every backend is at capacity: wait `retry_after_s` and try again; not a failure."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class InferenceRejected(Exception):
    """The inference side refused the request itself: running it again will not help."""


class BalancerClient:
    def __init__(self, base_url: str, *, read_timeout_s: float) -> None:
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(read_timeout_s, connect=5.0),
        )

    def stream(self, model: str, request: InferenceRequest) -> Generator[InferenceLine, None, None]:
        """Progress lines, then one result or error line. Closing the iterator closes the stream,
        which the inference server takes as a cancel."""
        try:
            with self._client.stream(
                "POST",
                f"/v1/infer/{model}",
                content=request.wire_json(),
                headers={"content-type": "application/json", **outgoing_headers()},
            ) as response:
                if response.status_code == 503 and response.headers.get(REFUSED) == "full":
                    retry_after = response.headers.get("retry-after", "1")
                    raise InferenceBusy(
                        "every inference backend is at capacity",
                        float(retry_after) if retry_after.isdigit() else 1.0,
                    )
                if response.status_code in (502, 503, 504):
                    raise InferenceRetryable(f"balancer answered {response.status_code}")
                if response.status_code >= 400:
                    response.read()
                    raise InferenceRejected(f"inference refused the job: {response.text[:500]}")
                finished = False
                for raw in response.iter_lines():
                    if not raw.strip():
                        continue
                    try:
                        line = _LINE.validate_json(raw)
                    except ValidationError as exc:
                        raise InferenceRetryable(f"bad line from inference: {raw[:200]}") from exc
                    finished = line.type != "progress"
                    yield line
                    if finished:
                        return
                if not finished:
                    raise InferenceRetryable("the inference stream ended before a result")
        except httpx.TransportError as exc:
            raise InferenceRetryable(f"inference unreachable: {exc!r}") from exc

    def close(self) -> None:
        self._client.close()
