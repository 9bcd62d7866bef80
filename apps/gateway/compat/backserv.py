"""Back.Serv (Flask): `POST /submit_task`, `GET /query_task/<ticket_id>`, `POST /cancel_task/...`.

Its ticket is our task id; its task names map onto our types; its status words map onto our
states. `queue_position` is the native one: per queue and priority-aware."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import Field

from apps.common.service.errors import InvalidInput
from apps.common.task_types import task_type
from apps.common.wire.contracts import JobView, StrictModel, TaskStatus
from apps.gateway.auth import Caller
from apps.gateway.compat._native import known_fields, live_view, submit
from apps.gateway.deps import Service, State

router = APIRouter(tags=["compat: Back.Serv"])

# Back.Serv's task names (and their snake_case forms) -> our task types.
TASK_TYPES = {
    "Image Creation": "flux",
    "Image Upscaling": "upscale",
    "Face Swap": "face_swap",
    "Face Detection": "face_detect",
    "Translation Services": "translate",
    "Prompt Services": "prompt_refine",
}
_BY_KEY = {name.lower().replace(" ", "_"): ours for name, ours in TASK_TYPES.items()}
_NAME_OF = {ours: name for name, ours in TASK_TYPES.items()}
STATUS_WORDS = {
    TaskStatus.QUEUED: "Queueing",
    TaskStatus.RUNNING: "Processing",
    TaskStatus.SUCCEEDED: "Completed",
    TaskStatus.FAILED: "Failed",
    TaskStatus.CANCELED: "Cancelled",
    TaskStatus.EXPIRED: "Cancelled",
}
# Their parameter names for image inputs -> ours.
_ALIASES = {"image_url": "image", "target_image_url": "target_image", "source_image": "image"}


class SubmitTask(StrictModel):
    task_type: str = Field(min_length=1, max_length=64)
    task_params: dict[str, Any] = Field(default_factory=dict)
    user_id: str | None = Field(default=None, max_length=200)
    priority: int | None = Field(default=None, ge=0, le=9)


def our_type(task_type: str) -> str:
    key = task_type.strip().lower().replace(" ", "_").replace("-", "_")
    if key not in _BY_KEY:
        raise InvalidInput(
            f"task_type '{task_type}' is not served; one of: {', '.join(TASK_TYPES)}",
            field="task_type",
        )
    return _BY_KEY[key]


def ticket(view: JobView) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "ticket_id": view.task_id,
        "task_type": _NAME_OF.get(view.type, view.type),
        "status": STATUS_WORDS[view.status],
        "progress": view.progress,
        "queue_position": view.queue_position,
        "created_at": view.created_at,
        "started_at": view.started_at,
        "finished_at": view.finished_at,
        "result": None if view.result is None else view.result.model_dump(mode="json"),
        "error": None if view.error is None else view.error.message,
    }
    return answer


@router.post("/submit_task", status_code=202)
async def submit_task(body: SubmitTask, state: State, caller: Caller) -> JSONResponse:
    """Back.Serv's submit: `{"task_type", "task_params", "user_id"}`."""
    type_name = our_type(body.task_type)
    # Parameters the type has no use for are dropped, as the old service ignored them.
    params = known_fields(type_name, {_ALIASES.get(k, k): v for k, v in body.task_params.items()})
    record = await submit(state, caller, type_name, params, priority=body.priority)
    return JSONResponse(
        {
            "ticket_id": record.task_id,
            "serv_name": f"fluxgate-{task_type(type_name).queue}",
            "status": STATUS_WORDS[record.status],
            "user_id": body.user_id,
        },
        status_code=202,
    )


@router.get("/query_task/{ticket_id}")
async def query_task(ticket_id: str, service: Service, caller: Caller) -> dict[str, Any]:
    """The ticket's status word, progress, per-queue position, result or error."""
    return ticket(await live_view(service, ticket_id, caller))


@router.post("/cancel_task/{ticket_id}")
async def cancel_task(ticket_id: str, service: Service, caller: Caller) -> dict[str, Any]:
    """Cancel: at once while queued, at the next step while running (then `Processing` until
    the worker stops it); a finished ticket is a 409."""
    record, _changed = await service.cancel(ticket_id, caller)
    answer = ticket(service.views.render(record))
    answer["cancel_requested"] = True
    return answer
