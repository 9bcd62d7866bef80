"""The one submit path behind `POST /flux` and `POST /tasks`: headers, accept, the 202 answer."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from apps.common.security.apikeys import ApiKey
from apps.common.wire.contracts import SubmitAnswer
from apps.gateway.deps import gateway_state
from apps.gateway.headers import parse_cancel_after, parse_prefer_wait
from apps.gateway.idempotency import IdempotencyKeys
from apps.gateway.settings import GatewaySettings
from apps.gateway.submission import NewJob, SubmitOptions

SUBMIT_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"description": "idempotent replay, or the finished view with `Prefer: wait=N`"},
    409: {"description": "Idempotency-Key reused with a different body"},
    413: {"description": "body too large"},
    422: {"description": "invalid input, or `too_expensive`, naming the field"},
    429: {"description": "`rate_limited`, `too_many_jobs` or `too_much_work`, with Retry-After"},
    503: {"description": "Redis or the queue is unavailable, or the type's model is not set"},
}


def submit_options(
    idempotency_key: str | None, cancel_after: str | None, settings: GatewaySettings
) -> SubmitOptions:
    """What the `Idempotency-Key` and `Cancel-After` headers ask of a submit, checked."""
    return SubmitOptions(
        idempotency_key=None
        if idempotency_key is None
        else IdempotencyKeys.validate(idempotency_key),
        cancel_after_s=parse_cancel_after(cancel_after, max_s=settings.job_ttl_s),
    )


async def submit_and_answer(
    request: Request,
    job: NewJob,
    caller: ApiKey | None,
    *,
    idempotency_key: str | None,
    cancel_after: str | None,
    prefer: str | None,
) -> Response:
    # The app's collaborators are read off its state, not injected: on the hottest route each
    # FastAPI dependency costs tens of microseconds (the submit benchmark's profile).
    state = gateway_state(request)
    service, settings, waiter = state.service, state.settings, state.waiter
    options = submit_options(idempotency_key, cancel_after, settings)
    submitted = await service.submit(job, options, caller)
    record = submitted.record
    view = service.views.render(record)
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
