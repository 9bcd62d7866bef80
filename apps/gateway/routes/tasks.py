"""`GET /tasks/{id}` and `POST /tasks/{id}/cancel`."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from apps.common.contracts import JobView
from apps.gateway.deps import Service

router = APIRouter()
JSON = "application/json"


@router.get(
    "/tasks/{task_id}", response_model=JobView, responses={404: {"description": "no such task"}}
)
async def get_task(task_id: str, service: Service) -> Response:
    """The job view: status, progress, timestamps, result or error, and webhook attempts."""
    view = await service.owner_view(await service.get(task_id))
    return Response(view.model_dump_json(exclude={"event"}), media_type=JSON)


@router.post(
    "/tasks/{task_id}/cancel",
    status_code=202,
    response_model=JobView,
    responses={
        200: {"description": "already canceled"},
        404: {"description": "no such task"},
        409: {"description": "already succeeded, failed or expired"},
    },
)
async def cancel_task(task_id: str, service: Service) -> Response:
    """Cancel a queued job at once, or stop a running one at its next step."""
    record, changed = await service.cancel(task_id)
    return Response(
        service.view(record).model_dump_json(exclude={"event"}),
        status_code=202 if changed else 200,
        media_type=JSON,
    )


@router.post(
    "/tasks/{task_id}/webhook/redeliver",
    status_code=202,
    responses={
        404: {"description": "no such task, or it has no webhook"},
        409: {"description": "no webhook message was sent yet"},
    },
)
async def redeliver_webhook(task_id: str, service: Service) -> dict[str, str]:
    """Send the last dead-lettered (or else the last) webhook message of a task again."""
    message_id = await service.redeliver_webhook(task_id)
    return {"message_id": message_id, "status": "queued"}
