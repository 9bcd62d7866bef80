"""`POST /flux`: the design card's text-to-image route."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from apps.common.contracts import FluxRequest, SubmitAnswer
from apps.gateway.deps import Service

router = APIRouter()


@router.post(
    "/flux",
    status_code=202,
    response_model=SubmitAnswer,
    responses={
        422: {"description": "invalid input, naming the field"},
        413: {"description": "body too large"},
        503: {"description": "Redis or the queue is unavailable"},
    },
)
async def submit_flux(body: FluxRequest, service: Service) -> Response:
    """Queue a FLUX text-to-image job; progress and result are pushed on `urls.ws`."""
    record = await service.submit_flux(body)
    view = service.view(record)
    answer = SubmitAnswer(task_id=record.task_id, status=record.status, urls=view.urls)
    return Response(
        answer.model_dump_json(),
        status_code=202,
        media_type="application/json",
        headers={"Location": view.urls.status},
    )
