"""Who is calling: the API key of `Authorization: Bearer fg_...` (or nobody, when auth is off)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from apps.common.security.apikeys import ApiKey, bearer_token
from apps.common.service.errors import NotFound, Unauthorized
from apps.gateway.deps import gateway_state


async def authenticate(request: Request) -> ApiKey | None:
    """The caller's key; None when `FLUXGATE_AUTH` is off. 401 for a missing or unknown key."""
    state = gateway_state(request)
    if not state.settings.auth:
        return None
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise Unauthorized("an API key is required: send `Authorization: Bearer fg_...`")
    key = await state.keys.authenticate(token)
    if key is None:
        raise Unauthorized("unknown or revoked API key")
    return key


async def require_admin(request: Request) -> None:
    """The admin routes exist only when `FLUXGATE_ADMIN_TOKEN` is set, and need exactly it."""
    expected = gateway_state(request).settings.admin_token
    if not expected:
        raise NotFound("not found")
    token = bearer_token(request.headers.get("authorization")) or ""
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise Unauthorized("the admin token is required")


Caller = Annotated[ApiKey | None, Depends(authenticate)]
Admin = Annotated[None, Depends(require_admin)]
