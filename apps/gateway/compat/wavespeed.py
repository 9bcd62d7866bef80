"""The WaveSpeed workshop: `POST /flux` with `{"input": {"prompt", "seed", "size": "W*H",
"enable_base64_output"}}` beside the native flat body, and `GET /health`."""

from __future__ import annotations

import re
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError

from apps.common.service.errors import InvalidInput
from apps.common.wire.contracts import DeliveryFields, FluxRequest, SubmitAnswer
from apps.gateway.auth import Caller
from apps.gateway.headers import CANCEL_AFTER_PATTERN
from apps.gateway.idempotency import KEY_PATTERN
from apps.gateway.jobs_in import flux_job
from apps.gateway.routes._submit import SUBMIT_RESPONSES, submit_and_answer

router = APIRouter(tags=["compat: WaveSpeed"])
_SIZE = re.compile(r"^\s*(\d{2,4})\s*[*xX]\s*(\d{2,4})\s*$")
# Their input keys that are ours under the same name.
_SAME = (
    "prompt",
    "seed",
    "negative_prompt",
    "num_inference_steps",
    "guidance_scale",
    "num_images",
    "output_format",
    "enable_base64_output",
)


def native_body(body: dict[str, Any]) -> dict[str, Any]:
    """WaveSpeed's `{"input": {...}}` as our flat `POST /flux` body; flat bodies pass as is."""
    if set(body) - {"input", *DeliveryFields.model_fields} or "input" not in body:
        return body
    given = body["input"]
    if not isinstance(given, dict):
        raise InvalidInput("input must be an object", field="input")
    flat = {k: given[k] for k in _SAME if k in given}
    unknown = set(given) - set(_SAME) - {"size"}
    if unknown:
        raise InvalidInput(
            f"unknown field 'input.{sorted(unknown)[0]}'", field=f"input.{sorted(unknown)[0]}"
        )
    if "size" in given:
        match = _SIZE.match(str(given["size"]))
        if match is None:
            raise InvalidInput("input.size must look like 1024*1024", field="input.size")
        flat["width"], flat["height"] = int(match[1]), int(match[2])
    flat.update({k: v for k, v in body.items() if k != "input"})
    return flat


@router.post("/flux", status_code=202, response_model=SubmitAnswer, responses=SUBMIT_RESPONSES)
async def submit_flux(
    request: Request,
    caller: Caller,
    idempotency_key: Annotated[str | None, Header(pattern=KEY_PATTERN)] = None,
    cancel_after: Annotated[str | None, Header(pattern=CANCEL_AFTER_PATTERN)] = None,
    prefer: Annotated[str | None, Header()] = None,
) -> Response:
    """`POST /flux` taking the native flat body or WaveSpeed's `{"input": {..., "size"}}`."""
    try:
        raw = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("body is not valid JSON", field="body") from exc
    if not isinstance(raw, dict):
        raise InvalidInput("body must be a JSON object", field="body")
    try:
        body = FluxRequest.model_validate(native_body(raw))
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        ) from exc
    return await submit_and_answer(
        request,
        flux_job(body),
        caller,
        idempotency_key=idempotency_key,
        cancel_after=cancel_after,
        prefer=prefer,
    )


@router.get("/health")
async def health() -> dict[str, str]:
    """The workshop's liveness route (the native ones are `/healthz` and `/readyz`)."""
    return {"status": "ok"}
