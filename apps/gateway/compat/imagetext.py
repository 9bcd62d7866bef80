"""The image-and-text service: `POST /api/process` (multipart `image` + `text`) and
`GET /api/status/<job_id>`. Its job is FLUXGATE_COMPAT_IMAGETEXT_TYPE (default `style_transfer`:
the image redrawn as the text says)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import JSONResponse

from apps.common.service.errors import InvalidInput
from apps.common.wire.contracts import JobView, TaskStatus
from apps.gateway.auth import Caller
from apps.gateway.compat._native import live_view, submit
from apps.gateway.deps import Service, State

router = APIRouter(tags=["compat: image and text service"])
STATUS_WORDS = {
    TaskStatus.QUEUED: "pending",
    TaskStatus.RUNNING: "processing",
    TaskStatus.SUCCEEDED: "completed",
    TaskStatus.FAILED: "failed",
    TaskStatus.CANCELED: "failed",
    TaskStatus.EXPIRED: "failed",
}
_MESSAGES = {
    TaskStatus.QUEUED: "Job is waiting in the queue",
    TaskStatus.RUNNING: "Job is being processed",
    TaskStatus.SUCCEEDED: "Job completed",
    TaskStatus.CANCELED: "Job was canceled",
    TaskStatus.EXPIRED: "Job expired before it started",
}


@router.post("/api/process", status_code=202)
async def process(
    state: State,
    caller: Caller,
    image: Annotated[UploadFile, File()],
    text: Annotated[str, Form(min_length=1, max_length=2000)],
) -> JSONResponse:
    """Queue one image + text job; answers `{"job_id", "status": "processing"}`."""
    settings = state.settings
    data = await image.read(settings.input_image_max_bytes + 1)
    if len(data) > settings.input_image_max_bytes:
        raise InvalidInput(f"image is over {settings.input_image_max_bytes} bytes", field="image")
    type_name = settings.compat_imagetext_type
    task_input: dict[str, Any] = {"prompt": text} if type_name == "style_transfer" else {}
    record = await submit(state, caller, type_name, task_input, uploads={"image": data})
    return JSONResponse({"job_id": record.task_id, "status": "processing"}, status_code=202)


def status_of(view: JobView) -> dict[str, Any]:
    message = view.error.message if view.error else _MESSAGES[view.status]
    result = None if view.result is None else view.result.model_dump(mode="json")
    return {
        "job_id": view.task_id,
        "status": STATUS_WORDS[view.status],
        "message": message,
        "progress": view.progress,
        "result": result,
    }


@router.get("/api/status/{job_id}")
async def job_status(job_id: str, service: Service, caller: Caller) -> dict[str, Any]:
    """`pending|processing|completed|failed`, a message, and the result once completed."""
    return status_of(await live_view(service, job_id, caller))
