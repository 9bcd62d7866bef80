"""`POST /flux`: the design card's text-to-image route."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response

from apps.common.wire.contracts import WORKER_ONLY_FLUX_FIELDS, FluxRequest, SubmitAnswer
from apps.gateway.auth import Caller
from apps.gateway.headers import CANCEL_AFTER_PATTERN
from apps.gateway.idempotency import KEY_PATTERN
from apps.gateway.routes._submit import SUBMIT_RESPONSES, submit_and_answer
from apps.gateway.service import NewJob

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


def flux_job(body: FluxRequest) -> NewJob:
    """The job of a `POST /flux` body (also WaveSpeed's shape, once flattened)."""
    return NewJob(
        type="flux",
        input=body.task_input(),
        delivery=body.delivery(),
        images={},
        # The fields of earlier releases only, so a retry that meets another release during a
        # rolling update still matches its first request.
        idempotency_body=body.model_dump_json(
            exclude={k for k in WORKER_ONLY_FLUX_FIELDS if getattr(body, k) is False}
        ),
    )
