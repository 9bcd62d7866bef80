"""`POST /tasks` for every task type (JSON or multipart) and `GET /task-types`."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from apps.common.service.errors import InvalidInput
from apps.common.task_types import TaskType, registry
from apps.common.wire.contracts import SubmitAnswer
from apps.gateway.auth import Caller
from apps.gateway.deps import Settings, gateway_state
from apps.gateway.headers import CANCEL_AFTER_PATTERN
from apps.gateway.idempotency import KEY_PATTERN
from apps.gateway.jobs_in import TaskRequest, build_job
from apps.gateway.routes._submit import SUBMIT_RESPONSES, submit_and_answer
from apps.gateway.settings import GatewaySettings

router = APIRouter(tags=["tasks"])
MAX_FORM_FILES = 4
MAX_FORM_FIELDS = 16


# Multipart parts that are the envelope's own fields; every other part is an input image.
_ENVELOPE_FIELDS = frozenset(TaskRequest.model_fields)


class TaskTypeInfo(BaseModel):
    name: str
    queue: str
    runs_on: str
    description: str
    image_fields: list[str]
    result_keys: dict[str, str]
    # False when a setting the type needs is missing (submits then answer 503).
    available: bool
    input_schema: dict[str, Any]


def _is_available(spec: TaskType, settings: GatewaySettings) -> bool:
    return not spec.requires_setting or bool(getattr(settings, spec.requires_setting, ""))


@router.get("/task-types", response_model=list[TaskTypeInfo])
async def task_types(settings: Settings) -> list[dict[str, Any]]:
    """Every task type `POST /tasks` takes, with the JSON schema of its `input`."""
    return [spec.listing(available=_is_available(spec, settings)) for spec in registry().values()]


def _envelope_schema() -> dict[str, Any]:
    schema = _inline_refs(TaskRequest.model_json_schema())
    schema["properties"]["type"]["enum"] = sorted(registry())
    return schema


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with its `#/$defs/...` references replaced by the definitions: embedded in
    the OpenAPI document, `#/$defs` would point at the document's root, where nothing is."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    result: dict[str, Any] = walk(schema)
    return result


@router.post(
    "/tasks",
    status_code=202,
    response_model=SubmitAnswer,
    responses=SUBMIT_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _envelope_schema()},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["type"],
                        "properties": {
                            "type": {"type": "string", "enum": sorted(registry())},
                            "input": {"type": "string", "description": "the input as JSON"},
                            "image": {"type": "string", "format": "binary"},
                            "target_image": {"type": "string", "format": "binary"},
                            "webhook_url": {"type": "string"},
                            "webhook_events": {"type": "string"},
                            "priority": {"type": "integer", "minimum": 0, "maximum": 9},
                            "cache": {"type": "boolean"},
                        },
                    }
                },
            },
        }
    },
)
async def submit_task(
    request: Request,
    caller: Caller,
    idempotency_key: Annotated[str | None, Header(pattern=KEY_PATTERN)] = None,
    cancel_after: Annotated[str | None, Header(pattern=CANCEL_AFTER_PATTERN)] = None,
    prefer: Annotated[str | None, Header()] = None,
) -> Response:
    """Queue a job of any type (`GET /task-types`). Images come as http(s) URLs, base64 in the
    JSON, or as multipart file parts named after the input's image fields."""
    settings = gateway_state(request).settings
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        body, uploads = await _read_multipart(request, max_bytes=settings.input_image_max_bytes)
    else:
        raw = await request.body()
        try:
            # Bodies carry base64 images (tens of MB): parse and decode off the event loop.
            body = await run_in_threadpool(orjson.loads, raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput("body is not valid JSON", field="body") from exc
        uploads = {}
    job = await run_in_threadpool(build_job, body, uploads, settings)
    return await submit_and_answer(
        request,
        job,
        caller,
        idempotency_key=idempotency_key,
        cancel_after=cancel_after,
        prefer=prefer,
    )


def _field_of(key: str) -> str:
    """How a multipart part is named in errors: image parts are fields of `input`."""
    return key if key in _ENVELOPE_FIELDS else f"input.{key}"


async def _read_multipart(request: Request, *, max_bytes: int) -> tuple[dict[str, Any], dict]:
    """`type`, `input` (JSON text), delivery fields, and image files named after their field."""
    form = await request.form(max_files=MAX_FORM_FILES, max_fields=MAX_FORM_FIELDS)
    try:
        body: dict[str, Any] = {}
        uploads: dict[str, bytes] = {}
        for key, value in form.multi_items():
            if key in uploads or (key in body and key != "webhook_events"):
                raise InvalidInput(f"{key}: sent more than once", field=_field_of(key))
            if isinstance(value, UploadFile):
                data = await value.read(max_bytes + 1)
                if len(data) > max_bytes:
                    raise InvalidInput(
                        f"input.{key}: image is over {max_bytes} bytes", field=f"input.{key}"
                    )
                uploads[key] = data
            elif key == "input":
                try:
                    body["input"] = orjson.loads(value)
                except orjson.JSONDecodeError as exc:
                    raise InvalidInput("input is not valid JSON", field="input") from exc
            elif key == "webhook_events":
                events = body.setdefault("webhook_events", [])
                events.extend(part.strip() for part in value.split(",") if part.strip())
            else:
                body[key] = value
        return body, uploads
    finally:
        await form.close()
