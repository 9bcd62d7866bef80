"""`POST /flux`: the design card's text-to-image route."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response

from apps.common.contracts import FluxRequest, SubmitAnswer
from apps.gateway.auth import Caller
from apps.gateway.headers import CANCEL_AFTER_PATTERN, parse_cancel_after, parse_prefer_wait
from apps.gateway.idempotency import KEY_PATTERN, IdempotencyKeys
from apps.gateway.service import SubmitOptions, TaskService
from apps.gateway.settings import GatewaySettings
from apps.gateway.waiter import ResultWaiter

router = APIRouter(tags=["tasks"])


@router.post(
    "/flux",
    status_code=202,
    response_model=SubmitAnswer,
    responses={
        200: {"description": "idempotent replay: the task this key already made"},
        409: {"description": "Idempotency-Key reused with a different body"},
        413: {"description": "body too large"},
        422: {"description": "invalid input, naming the field"},
        503: {"description": "Redis or the queue is unavailable"},
    },
)
async def submit_flux(
    body: FluxRequest,
    request: Request,
    caller: Caller,
    idempotency_key: Annotated[str | None, Header(pattern=KEY_PATTERN)] = None,
    cancel_after: Annotated[str | None, Header(pattern=CANCEL_AFTER_PATTERN)] = None,
    prefer: Annotated[str | None, Header()] = None,
) -> Response:
    """Queue a FLUX text-to-image job; progress and result are pushed on `urls.ws`."""
    # The app's collaborators are read off its state, not injected: on the hottest route each
    # FastAPI dependency costs tens of microseconds (the submit benchmark's profile).
    state = request.app.state
    service: TaskService = state.service
    settings: GatewaySettings = state.settings
    waiter: ResultWaiter = state.waiter
    options = SubmitOptions(
        idempotency_key=None
        if idempotency_key is None
        else IdempotencyKeys.validate(idempotency_key),
        cancel_after_s=parse_cancel_after(cancel_after, max_s=settings.job_ttl_s),
    )
    submitted = await service.submit_flux(body, options, caller)
    record = submitted.record
    view = service.view(record)
    answer = SubmitAnswer(task_id=record.task_id, status=record.status, urls=view.urls)
    headers = {"Location": view.urls.status}
    if submitted.replayed:
        headers["Idempotent-Replayed"] = "true"
    wait_s = parse_prefer_wait(prefer)
    if wait_s:
        headers["Preference-Applied"] = f"wait={wait_s}"
        finished = await waiter.terminal_view(record.task_id, wait_s)
        if finished is not None:
            return Response(
                finished, status_code=200, media_type="application/json", headers=headers
            )
    return Response(
        answer.model_dump_json(),
        status_code=200 if submitted.replayed else 202,
        media_type="application/json",
        headers=headers,
    )
