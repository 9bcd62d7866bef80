"""Calls the balancer and reads the inference server's NDJSON stream as typed lines."""

from __future__ import annotations

from collections.abc import Generator

import httpx
from pydantic import TypeAdapter, ValidationError

from apps.common.model_registry import DEFAULT_MODEL_ID
from apps.common.service.request_context import outgoing_headers
from apps.common.wire.inference import (
    BALANCER_ADAPTERS_HEADER,
    BALANCER_MODEL_HEADER,
    BALANCER_REFUSED_HEADER,
    BALANCER_UNREADY_HEADER,
    BALANCER_WAIT_HEADER,
    BalancerRefusal,
    InferenceLine,
    InferenceRequest,
)
from apps.worker.errors import JobFailed

_LINE = TypeAdapter(InferenceLine)
# Refusals that mean "no room yet": the job waits rather than spending a retry.
_WAIT_REASONS = (BalancerRefusal.FULL, BalancerRefusal.NO_BACKEND)


class InferenceRetryable(Exception):
    """No backend took the job, or the stream broke before a result: running it again may work."""


class InferenceBusy(Exception):
    """No backend took the request without trying one: none is ready (`no_backend`, for
    `unready_s` seconds) or all are full (`full`). The job waits; this is not a failure."""

    def __init__(self, message: str, *, reason: BalancerRefusal, unready_s: float) -> None:
        super().__init__(message)
        self.reason = reason
        self.unready_s = unready_s


class BalancerClient:
    def __init__(
        self, base_url: str, *, read_timeout_s: float, default_model: str = DEFAULT_MODEL_ID
    ) -> None:
        # The deployment's default model: named to the balancer, left off the wire.
        self._default_model = default_model
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(read_timeout_s, connect=5.0),
        )

    def stream(
        self, model: str, request: InferenceRequest, *, wait_s: float = 0.0
    ) -> Generator[InferenceLine, None, None]:
        """Progress lines, then one result or error line. Closing the iterator closes the stream,
        which the inference server takes as a cancel. With `wait_s` the balancer holds the
        request up to that long for a backend with room before refusing it (`InferenceBusy`)."""
        headers = {
            "content-type": "application/json",
            BALANCER_WAIT_HEADER: f"{wait_s:.3f}",
            **route_headers(request, self._default_model),
            **outgoing_headers(),
        }
        content = request.wire_json(default_model=self._default_model)
        try:
            with self._client.stream(
                "POST", f"/v1/infer/{model}", content=content, headers=headers
            ) as response:
                reason = response.headers.get(BALANCER_REFUSED_HEADER)
                if response.status_code == 503 and reason in _WAIT_REASONS:
                    response.read()
                    raise InferenceBusy(
                        _error_message(response),
                        reason=BalancerRefusal(reason),
                        unready_s=_seconds(response.headers.get(BALANCER_UNREADY_HEADER)),
                    )
                if response.status_code in (502, 503, 504):
                    raise InferenceRetryable(f"balancer answered {response.status_code}")
                if response.status_code >= 400:
                    # Refused by the inference side itself: running it again will not help.
                    response.read()
                    raise JobFailed(
                        "pipeline_error", f"inference refused the job: {response.text[:500]}"
                    )
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


def route_headers(request: InferenceRequest, default_model: str) -> dict[str, str]:
    """What the balancer routes on besides the task type: the registry model and the adapter
    names (comma-separated, sorted), so it can prefer a server that has them loaded."""
    headers = {BALANCER_MODEL_HEADER: request.input.model or default_model}
    if request.input.loras:
        names = sorted(lora.name for lora in request.input.loras)
        headers[BALANCER_ADAPTERS_HEADER] = ",".join(names)
    return headers


def _seconds(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"balancer answered {response.status_code}"
