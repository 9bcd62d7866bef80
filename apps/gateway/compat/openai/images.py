"""`POST /v1/images/generations` and `POST /v1/images/edits`: submit the native job, hold the
request until it ends (the OpenAI API answers with the finished images), answer its images.

A client that disconnects first has its job canceled (nobody else knows its id); one that waits
longer than the wait limit gets a 504 naming the job, which keeps running."""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from apps.common.security.apikeys import ApiKey
from apps.common.service.errors import Conflict, InvalidInput
from apps.common.wire.contracts import TaskStatus
from apps.gateway.auth import Caller
from apps.gateway.compat.openai.errors import openai_error
from apps.gateway.compat.openai.params import (
    EditParams,
    GenerationParams,
    ImageParams,
    edit_job,
    generation_job,
    named_as_openai,
)
from apps.gateway.deps import GatewayState, gateway_state
from apps.gateway.headers import CANCEL_AFTER_PATTERN, parse_prefer_wait
from apps.gateway.idempotency import KEY_PATTERN
from apps.gateway.routes._submit import submit_options
from apps.gateway.service import TaskService
from apps.gateway.submission import NewJob
from apps.gateway.waiter import ClientGone, WaitUnavailable

router = APIRouter(prefix="/v1/images", tags=["OpenAI Images API"])
EDIT_PATH = "/v1/images/edits"
# A client that went away: the answer reaches nobody (nginx's code for it).
CLIENT_CLOSED = 499


class OpenAIError(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None
    task_id: str | None = None


class OpenAIErrorBody(BaseModel):
    """Every error under /v1/; `task_id` names the job when one was accepted."""

    error: OpenAIError


class Image(BaseModel):
    url: str | None = None
    b64_json: str | None = None


class ImagesResponse(BaseModel):
    created: int
    data: list[Image]


_ERRORS = {
    400: "invalid parameter, naming it in `param`",
    401: "missing or unknown API key",
    409: "Idempotency-Key reused with another body, or the job was canceled or expired",
    413: "body too large",
    429: "rate limit or the key's caps, with Retry-After",
    500: "the job failed (`code` is its error code)",
    503: "Redis, the queue or the wait is unavailable (`task_id` names a job accepted)",
    504: "the job did not finish within the wait: it keeps running, `task_id` names it",
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": OpenAIErrorBody, "description": text} for status, text in _ERRORS.items()
}


def _error(status: int, code: str, message: str, task_id: str, **headers: str) -> Response:
    body = openai_error(status, code, message)
    body["error"]["task_id"] = task_id
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


@dataclass(frozen=True)
class HoldHeaders:
    """The native submit headers, which the OpenAI routes take too."""

    idempotency_key: str | None
    cancel_after: str | None
    prefer: str | None


async def hold_headers(
    idempotency_key: Annotated[str | None, Header(pattern=KEY_PATTERN)] = None,
    cancel_after: Annotated[str | None, Header(pattern=CANCEL_AFTER_PATTERN)] = None,
    prefer: Annotated[str | None, Header()] = None,
) -> HoldHeaders:
    return HoldHeaders(idempotency_key, cancel_after, prefer)


async def _cancel_quietly(service: TaskService, task_id: str, caller: ApiKey | None) -> None:
    with contextlib.suppress(Conflict):  # it ended meanwhile: nothing to stop
        await service.cancel(task_id, caller)


def _unix(iso: str | None) -> int:
    return int(datetime.fromisoformat(iso).timestamp()) if iso else 0


async def submit_and_hold(
    request: Request,
    job: NewJob,
    params: ImageParams,
    caller: ApiKey | None,
    headers: HoldHeaders,
) -> Response:
    """Submit like the native routes (same checks, limits, usage and Idempotency-Key), wait for
    the job's end, and answer its images in OpenAI's shape."""
    state = gateway_state(request)
    settings, service = state.settings, state.service
    with named_as_openai():
        options = submit_options(headers.idempotency_key, headers.cancel_after, settings)
        submitted = await service.submit(job, options, caller)
    task_id = submitted.record.task_id
    status_url = service.views.render(submitted.record).urls.status
    named = {"X-Fluxgate-Task-Id": task_id, "Location": status_url}
    asked = parse_prefer_wait(headers.prefer)
    wait_s = min(asked or settings.openai_wait_s, settings.openai_wait_s)
    # Only the request that made the job may cancel it: a replay leaves it to that one.
    cancel = (
        None if submitted.replayed else functools.partial(_cancel_quietly, service, task_id, caller)
    )
    # OpenAI's SDKs retry a 5xx: without the key a retry would be a second job.
    retry = "true" if headers.idempotency_key else "false"
    try:
        finished = await state.waiter.terminal_view_or_cancel(
            task_id, wait_s, receive=request.receive, cancel=cancel
        )
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    except WaitUnavailable:
        return _error(
            503,
            "unavailable",
            f"job {task_id} was accepted but its end cannot be awaited now; it keeps running: "
            f"GET {status_url}",
            task_id,
            **{"Retry-After": "1", "x-should-retry": retry},
            **named,
        )
    if finished is None:
        return _error(
            504,
            "wait_timeout",
            f"job {task_id} did not finish within {wait_s} s; it keeps running: "
            f"GET {status_url}, or retry with the same Idempotency-Key",
            task_id,
            **{"x-should-retry": retry},
            **named,
        )
    return await _answer(state, orjson.loads(finished), params, named)


async def _answer(
    state: GatewayState, view: dict[str, Any], params: ImageParams, headers: dict[str, str]
) -> Response:
    task_id = view["task_id"]
    # The job has ended: a retry would end the same way (or be another job).
    final = {**headers, "x-should-retry": "false"}
    if view["status"] == TaskStatus.FAILED:
        error = view.get("error") or {}
        message = error.get("message", "the job failed")
        return _error(
            500, error.get("code", "task_failed"), f"job {task_id}: {message}", task_id, **final
        )
    if view["status"] != TaskStatus.SUCCEEDED:
        return _error(409, "task_canceled", f"job {task_id} was {view['status']}", task_id, **final)
    images = view["result"]["images"]
    data: list[dict[str, str]]
    if params.wants_b64():
        images = (await state.service.with_base64(view))["result"]["images"]
        if any(image.get("base64") is None for image in images):
            return _error(
                500,
                "output_unavailable",
                f"job {task_id}'s images are too large for b64_json (or gone); ask "
                f"response_format=url, or GET /tasks/{task_id}",
                task_id,
                **final,
            )
        data = [{"b64_json": image["base64"]} for image in images]
    else:
        data = [{"url": image["url"]} for image in images]
    body = {"created": _unix(view.get("created_at")), "data": data}
    return Response(
        orjson.dumps(body), status_code=200, media_type="application/json", headers=headers
    )


@router.post("/generations", response_model=ImagesResponse, responses=RESPONSES)
async def generations(
    params: GenerationParams,
    request: Request,
    caller: Caller,
    headers: Annotated[HoldHeaders, Depends(hold_headers)],
) -> Response:
    """Text to image (a `flux` job); answers when the images are made."""
    settings = gateway_state(request).settings
    with named_as_openai():
        job = generation_job(params, settings)
    return await submit_and_hold(request, job, params, caller, headers)


_EDIT_FORM = {
    "type": "object",
    "required": ["image", "prompt"],
    "properties": {
        "image": {"type": "string", "format": "binary"},
        "prompt": {"type": "string", "minLength": 1, "maxLength": 2000},
        **{
            name: schema
            for name, schema in EditParams.model_json_schema()["properties"].items()
            if name != "prompt"
        },
    },
}
MAX_FORM_PARTS = 24


@router.post(
    "/edits",
    response_model=ImagesResponse,
    responses=RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": _EDIT_FORM}},
        }
    },
)
async def edits(
    request: Request,
    caller: Caller,
    headers: Annotated[HoldHeaders, Depends(hold_headers)],
) -> Response:
    """Image to image (a `style_transfer` job, FLUX img2img): multipart `image` and `prompt`.
    A `mask` is refused: the whole image is redrawn, never only the masked part."""
    settings = gateway_state(request).settings
    fields, image = await _read_edit_form(request, max_bytes=settings.input_image_max_bytes)
    with named_as_openai():
        params = EditParams.model_validate(fields)
        job = edit_job(params, image, settings)
    return await submit_and_hold(request, job, params, caller, headers)


async def _read_edit_form(request: Request, *, max_bytes: int) -> tuple[dict[str, str], bytes]:
    """The text fields and the one image of an edit; `image[]` (the SDKs' name for a list)
    counts as `image`."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidInput("send multipart/form-data with an image file", field="image")
    form = await request.form(max_files=MAX_FORM_PARTS, max_fields=MAX_FORM_PARTS)
    try:
        fields: dict[str, str] = {}
        files: dict[str, bytes] = {}
        for key, value in form.multi_items():
            name = key.removesuffix("[]")
            if name in fields or name in files:
                raise InvalidInput(f"{name}: one is taken, not several", field=name)
            if isinstance(value, UploadFile):
                data = await value.read(max_bytes + 1)
                if len(data) > max_bytes:
                    raise InvalidInput(f"{name}: image is over {max_bytes} bytes", field=name)
                files[name] = data
            else:
                fields[name] = value
    finally:
        await form.close()
    if "mask" in files or "mask" in fields:
        raise InvalidInput(
            "mask: masked edits (inpainting) are not served here; without a mask the whole "
            "image is redrawn as the prompt says",
            field="mask",
        )
    if "image" not in files:
        raise InvalidInput("image: an image file is required", field="image")
    unknown = sorted(files.keys() - {"image"})
    if unknown:
        raise InvalidInput(f"unknown file part '{unknown[0]}'", field=unknown[0])
    return fields, files["image"]
