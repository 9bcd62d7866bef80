"""`GET /tasks`, `GET /tasks/{id}`, `POST /tasks/{id}/cancel`, webhook redelivery."""

from __future__ import annotations

from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from apps.common.service.errors import InvalidInput
from apps.common.wire.contracts import JobView, TaskStatus
from apps.gateway.auth import Caller
from apps.gateway.deps import Service, State
from apps.gateway.errors_doc import error_responses

router = APIRouter(tags=["tasks"])
JSON = "application/json"


class TaskPage(BaseModel):
    tasks: list[JobView]
    next_cursor: str | None


@router.get("/tasks", response_model=TaskPage, responses=error_responses(401, 422, 503))
async def list_tasks(
    service: Service,
    caller: Caller,
    status: TaskStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(pattern=r"^\d+(\.\d+)?$")] = None,
) -> Response:
    """The caller's own tasks, newest first; pass `next_cursor` back as `cursor` for more."""
    try:
        after = None if cursor is None else float(cursor)
    except ValueError as exc:
        raise InvalidInput("cursor is not one this API gave out", field="cursor") from exc
    records, next_cursor = await service.list_tasks(
        caller, status=status, limit=limit, cursor=after
    )
    page = TaskPage(tasks=[await service.live_view(r) for r in records], next_cursor=next_cursor)
    return Response(
        page.model_dump_json(exclude={"tasks": {"__all__": {"event"}}}), media_type=JSON
    )


@router.get("/tasks/{task_id}", response_model=JobView, responses=error_responses(401, 404, 503))
async def get_task(
    task_id: str,
    service: Service,
    caller: Caller,
    include: Annotated[Literal["base64"] | None, Query()] = None,
) -> Response:
    """The job view: status, progress, timestamps, result or error, and webhook attempts.
    `?include=base64` adds each image's bytes as `base64` (as does a job submitted with
    `enable_base64_output`)."""
    record = await service.get(task_id, caller)
    view = await service.owner_view(record)
    if include == "base64" or record.input.get("enable_base64_output"):
        body = await service.with_base64(view.model_dump(mode="json", exclude={"event"}))
        return Response(orjson.dumps(body), media_type=JSON)
    return Response(view.model_dump_json(exclude={"event"}), media_type=JSON)


@router.get(
    "/tasks/{task_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "server-sent events: a `snapshot`, then each newer view; the "
            "stream ends after the final state. `id` is the view's `seq`.",
            # A stream of frames, not one document: no schema a checker could hold it to.
            "content": {
                "text/event-stream": {
                    "example": 'id: 3\nevent: progress\ndata: {"task_id": "...", "seq": 3}\n\n'
                }
            },
        },
        **error_responses(401, 404, 503),
    },
)
async def task_events(task_id: str, state: State, caller: Caller) -> StreamingResponse:
    """The job views of `GET /tasks/{id}` as they change, for clients without WebSockets."""
    await state.service.get(task_id, caller)
    return StreamingResponse(
        await state.event_relay.open(task_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post(
    "/tasks/{task_id}/cancel",
    status_code=202,
    response_model=JobView,
    responses={
        200: {"description": "already canceled", "model": JobView},
        **error_responses(401, 404, 409, 503),
    },
)
async def cancel_task(task_id: str, service: Service, caller: Caller) -> Response:
    """Cancel a queued job at once, or stop a running one at its next step."""
    record, changed = await service.cancel(task_id, caller)
    return Response(
        service.views.render(record).model_dump_json(exclude={"event"}),
        status_code=202 if changed else 200,
        media_type=JSON,
    )


class Redelivery(BaseModel):
    message_id: str
    status: str


@router.post(
    "/tasks/{task_id}/webhook/redeliver",
    status_code=202,
    response_model=Redelivery,
    responses=error_responses(401, 404, 409, 503),
)
async def redeliver_webhook(task_id: str, service: Service, caller: Caller) -> Redelivery:
    """Send the last dead-lettered (or else the last) webhook message of a task again."""
    message_id = await service.redeliver_webhook(task_id, caller)
    return Redelivery(message_id=message_id, status="queued")
