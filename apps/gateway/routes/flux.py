"""`POST /flux`: the design card's text-to-image route."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response

from apps.common.wire.contracts import FluxRequest, SubmitAnswer
from apps.gateway.auth import Caller
from apps.gateway.headers import CANCEL_AFTER_PATTERN
from apps.gateway.idempotency import KEY_PATTERN
from apps.gateway.jobs_in import flux_job
from apps.gateway.routes._submit import SUBMIT_RESPONSES, submit_and_answer

router = APIRouter(tags=["tasks"])


@router.post("/flux", status_code=202, response_model=SubmitAnswer, responses=SUBMIT_RESPONSES)
async def submit_flux(
    body: FluxRequest,
    request: Request,
    caller: Caller,
    idempotency_key: Annotated[str | None, Header(pattern=KEY_PATTERN)] = None,
    cancel_after: Annotated[str | None, Header(pattern=CANCEL_AFTER_PATTERN)] = None,
    prefer: Annotated[str | None, Header()] = None,
) -> Response:
    """Queue a FLUX text-to-image job; progress and result are pushed on `urls.ws`."""
    return await submit_and_answer(
        request,
        flux_job(body),
        caller,
        idempotency_key=idempotency_key,
        cancel_after=cancel_after,
        prefer=prefer,
    )
