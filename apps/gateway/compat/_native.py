"""What every compat surface does through the native service: submit, read, cancel."""

from __future__ import annotations

from typing import Any

from apps.common.jobs.record import JobRecord
from apps.common.security.apikeys import ApiKey
from apps.common.task_types import task_type
from apps.common.wire.contracts import JobView
from apps.gateway.deps import GatewayState
from apps.gateway.jobs_in import build_job
from apps.gateway.service import TaskService
from apps.gateway.submission import SubmitOptions


async def submit(
    state: GatewayState,
    caller: ApiKey | None,
    type_name: str,
    task_input: dict[str, Any],
    *,
    uploads: dict[str, bytes] | None = None,
    priority: int | None = None,
    webhook_url: str | None = None,
) -> JobRecord:
    """Submit as `POST /tasks` would (same checks, same 422s); returns the new job's record."""
    body: dict[str, Any] = {"type": type_name, "input": task_input}
    if priority is not None:
        body["priority"] = priority
    if webhook_url:
        body["webhook_url"] = webhook_url
    job = build_job(body, uploads or {}, state.settings)
    submitted = await state.service.submit(job, SubmitOptions(), caller)
    return submitted.record


def known_fields(type_name: str, values: dict[str, Any]) -> dict[str, Any]:
    """Only the keys the type's input model has: old clients send parameters we do not use."""
    fields = task_type(type_name).input_model.model_fields
    return {k: v for k, v in values.items() if k in fields}


async def live_view(service: TaskService, task_id: str, caller: ApiKey | None) -> JobView:
    return await service.live_view(await service.get(task_id, caller))
