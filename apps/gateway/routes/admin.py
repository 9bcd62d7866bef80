"""`/admin/keys`: create, list and revoke API keys; rotate a key's webhook secret."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from apps.common.security.apikeys import KeyStore, parse_rate
from apps.common.service.errors import NotFound
from apps.gateway.auth import Admin
from apps.gateway.deps import gateway_state
from apps.gateway.errors_doc import error_responses

router = APIRouter(prefix="/admin", tags=["admin"], responses=error_responses(401, 404, 422))


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    rate: str = Field(default="5/s", description="submits allowed, e.g. 5/s, 300/m, 1000/h")
    burst: int | None = Field(default=None, ge=1, le=10_000)
    max_active: int = Field(
        default=100,
        ge=1,
        le=1_000_000,
        # The name every answer uses; `max_queued`, its first name, is still read.
        validation_alias=AliasChoices("max_active", "max_queued"),
        description="jobs queued or running at once (`max_queued` is read as this too)",
    )

    @field_validator("rate")
    @classmethod
    def _rate(cls, value: str) -> str:
        parse_rate(value)
        return value


async def _key_store(request: Request) -> KeyStore:
    return gateway_state(request).keys


Keys = Annotated[KeyStore, Depends(_key_store)]


@router.post("/keys", status_code=201)
async def create_key(body: NewKey, store: Keys, _admin: Admin) -> dict[str, Any]:
    """Create a key; its token is in this answer only."""
    key, token = await store.create(
        name=body.name,
        rate_per_s=parse_rate(body.rate),
        burst=body.burst,
        max_active=body.max_active,
    )
    return key.public() | {"token": token}


@router.get("/keys")
async def list_keys(store: Keys, _admin: Admin) -> list[dict[str, Any]]:
    return [key.public() for key in await store.all()]


@router.delete("/keys/{key_id}", status_code=204)
async def revoke_key(key_id: str, store: Keys, _admin: Admin) -> None:
    if not await store.revoke(key_id):
        raise NotFound(f"key {key_id} not found")


@router.post("/keys/{key_id}/webhook-secret")
async def rotate_webhook_secret(key_id: str, store: Keys, _admin: Admin) -> dict[str, str]:
    """A new webhook secret for the key's tasks; the previous one also signs for 24 h."""
    secret = await store.rotate_webhook_secret(key_id)
    if secret is None:
        raise NotFound(f"key {key_id} not found")
    return {"key_id": key_id, "webhook_secret": secret}
