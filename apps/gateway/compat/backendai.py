"""Backend AI (Django REST): `POST /api/v1/tasks/create/` (multipart) and `.../submit/` (JSON,
base64 images), `GET .../{id}/status/`, `GET .../{id}/result/`, `POST .../{id}/cancel/`.

Its documented frontend loop (create, poll status every few seconds, fetch the result on
SUCCESS, read `result.image_url`) runs unchanged."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import JSONResponse
from pydantic import Field

from apps.common.service.errors import Conflict, FluxgateError, InvalidInput
from apps.common.wire.contracts import JobView, StrictModel, TaskStatus
from apps.gateway.auth import Caller
from apps.gateway.compat._native import known_fields, live_view, submit
from apps.gateway.deps import Service, State

router = APIRouter(prefix="/api/v1/tasks", tags=["compat: Backend AI"])

TASK_TYPES = {
    "image_generation": "flux",
    "face_swap": "face_swap",
    "background_removal": "background_removal",
    "style_transfer": "style_transfer",
    "upscale": "upscale",
    "face_detection": "face_detect",
    "translation": "translate",
    "prompt_refinement": "prompt_refine",
}
STATUS_WORDS = {
    TaskStatus.QUEUED: "PENDING",
    TaskStatus.RUNNING: "PROCESSING",
    TaskStatus.SUCCEEDED: "SUCCESS",
    TaskStatus.FAILED: "FAILURE",
    TaskStatus.CANCELED: "REVOKED",
    TaskStatus.EXPIRED: "REVOKED",
}
# Their parameter names -> ours.
_ALIASES = {"steps": "num_inference_steps", "guidance": "guidance_scale", "style": "prompt"}


class NotReady(FluxgateError):
    code = "not_ready"
    status_code = 400


class AlreadyCompleted(FluxgateError):
    code = "conflict"
    status_code = 400


class SubmitBody(StrictModel):
    task_type: str = Field(min_length=1, max_length=64)
    prompt: str | None = Field(default=None, max_length=5000)
    # Base64 (or a data: URI), or an http(s) URL.
    image: str | None = None
    target_image: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    priority: int | None = Field(default=None, ge=0, le=9)


def _task_input(
    task_type: str, prompt: str | None, parameters: dict[str, Any], images: dict[str, str]
) -> tuple[str, dict[str, Any]]:
    ours = TASK_TYPES.get(task_type)
    if ours is None:
        raise InvalidInput(
            f"task_type '{task_type}' is not served; one of: {', '.join(TASK_TYPES)}",
            field="task_type",
        )
    values = {_ALIASES.get(k, k): v for k, v in parameters.items()}
    if prompt is not None:
        values["prompt"] = prompt
    values.update(images)
    return ours, known_fields(ours, values)


def _created(record_id: str, created_at: str | None, message: str) -> JSONResponse:
    return JSONResponse(
        {"task_id": record_id, "status": "PENDING", "message": message, "created_at": created_at},
        status_code=201,
    )


@router.post("/create/", status_code=201)
async def create(
    state: State,
    caller: Caller,
    task_type: Annotated[str, Form()],
    prompt: Annotated[str | None, Form(max_length=5000)] = None,
    parameters: Annotated[str | None, Form()] = None,
    image: Annotated[UploadFile | None, File()] = None,
    target_image: Annotated[UploadFile | None, File()] = None,
) -> JSONResponse:
    """Multipart: `prompt`, `task_type`, `image` (optional file), `parameters` (JSON text)."""
    settings = state.settings
    try:
        params = orjson.loads(parameters) if parameters else {}
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("parameters is not valid JSON", field="parameters") from exc
    if not isinstance(params, dict):
        raise InvalidInput("parameters must be a JSON object", field="parameters")
    uploads: dict[str, bytes] = {}
    for name, upload in (("image", image), ("target_image", target_image)):
        if upload is not None:
            data = await upload.read(settings.input_image_max_bytes + 1)
            if len(data) > settings.input_image_max_bytes:
                raise InvalidInput(f"{name} is over the size limit", field=name)
            uploads[name] = data
    ours, task_input = _task_input(task_type, prompt, params, {})
    record = await submit(
        state, caller, ours, task_input, uploads=uploads, priority=params.get("priority")
    )
    view = state.service.views.render(record)
    return _created(record.task_id, view.created_at, "Task queued successfully")


@router.post("/submit/", status_code=201)
async def submit_json(body: SubmitBody, state: State, caller: Caller) -> JSONResponse:
    """JSON with base64 images: `task_type`, `prompt`, `image`, `target_image`, `parameters`."""
    images = {k: v for k, v in (("image", body.image), ("target_image", body.target_image)) if v}
    ours, task_input = _task_input(body.task_type, body.prompt, body.parameters, images)
    record = await submit(state, caller, ours, task_input, priority=body.priority)
    view = state.service.views.render(record)
    return _created(
        record.task_id, view.created_at, f"{body.task_type} task submitted successfully"
    )


def status_of(view: JobView) -> dict[str, Any]:
    word = STATUS_WORDS[view.status]
    answer: dict[str, Any] = {
        "task_id": view.task_id,
        "status": word,
        "progress": view.progress,
        "message": {
            "PENDING": "Waiting in the queue",
            "PROCESSING": "Processing",
            "SUCCESS": "Task completed",
            "FAILURE": view.error.message if view.error else "Task failed",
            "REVOKED": "Task cancelled",
        }[word],
        "result_available": view.status is TaskStatus.SUCCEEDED,
        "queue_position": view.queue_position,
        "created_at": view.created_at,
        "updated_at": view.finished_at or view.started_at or view.created_at,
    }
    if view.status is TaskStatus.SUCCEEDED:
        answer["result_url"] = f"/api/v1/tasks/{view.task_id}/result/"
        answer["completed_at"] = view.finished_at
    elif view.status is TaskStatus.FAILED:
        answer["error"] = answer["error_message"] = answer["message"]
        answer["failed_at"] = view.finished_at
    return answer


@router.get("/{task_id}/status/")
async def task_status(task_id: str, service: Service, caller: Caller) -> dict[str, Any]:
    """`PENDING|PROCESSING|SUCCESS|FAILURE|REVOKED` with `progress` (0..100)."""
    return status_of(await live_view(service, task_id, caller))


@router.get("/{task_id}/result/")
async def task_result(
    task_id: str,
    service: Service,
    caller: Caller,
    include: Annotated[str | None, Query(pattern="^base64$")] = None,
    image_data: bool = False,
) -> dict[str, Any]:
    """400 until SUCCESS; then `result.image_url` (and `image_data`, base64, when asked with
    `?image_data=true` or `?include=base64`)."""
    record = await service.get(task_id, caller)
    view = service.views.render(record)
    if view.status is not TaskStatus.SUCCEEDED:
        raise NotReady(f"Task not completed. Status: {STATUS_WORDS[view.status]}")
    dumped = view.model_dump(mode="json")
    if image_data or include == "base64":
        dumped = await service.with_base64(dumped)
    result: dict[str, Any] = dumped["result"] or {}
    images = result.get("images", [])
    first = images[0] if images else {}
    answer: dict[str, Any] = {
        "status": "SUCCESS",
        "image_url": first.get("url"),
        "prompt_used": result.get("prompt", record.input.get("prompt")),
        "processing_time": round((view.timings.running_ms or 0) / 1000, 3),
        "metadata": {
            "type": record.type,
            "seed": first.get("seed"),
            "steps": record.input.get("num_inference_steps"),
            "width": first.get("width"),
            "height": first.get("height"),
        },
        "images": images,
        **{k: v for k, v in result.items() if k not in ("images", "timings", "prompt")},
    }
    if "base64" in first:
        answer["image_data"] = first["base64"]
    return {"task_id": task_id, "status": "SUCCESS", "result": answer}


@router.post("/{task_id}/cancel/")
async def cancel(task_id: str, service: Service, caller: Caller) -> dict[str, Any]:
    """Cancel a pending or running task; a finished one is a 400 `Task already completed`."""
    try:
        record, _changed = await service.cancel(task_id, caller)
    except Conflict as exc:
        raise AlreadyCompleted("Task already completed") from exc
    return {"task_id": record.task_id, "message": "Task cancelled", "status": "REVOKED"}
