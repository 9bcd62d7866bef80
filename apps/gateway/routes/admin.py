"""`/admin/keys`: create, list, change and revoke API keys; rotate a key's webhook secret."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from apps.common.security.apikeys import KeyStore, parse_rate
from apps.common.service.errors import InvalidInput, NotFound
from apps.gateway.auth import Admin
from apps.gateway.deps import gateway_state
from apps.gateway.errors_doc import error_responses

router = APIRouter(prefix="/admin", tags=["admin"], responses=error_responses(401, 404, 422))


MAX_COST_FIELD = Field(
    default=None,
    gt=0,
    description="the most the key's queued and running jobs may cost together, in "
    "megapixel-steps (null: no cap)",
)
WEIGHT_DESCRIPTION = "the key's share of GPU time under fair scheduling (1: an equal share)"


def _valid_rate(value: str | None) -> str | None:
    if value is not None:
        parse_rate(value)
    return value


class NewKey(BaseModel):
    # NaN or infinity as a cap would disable it in a way no one meant.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

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
    max_cost: float | None = MAX_COST_FIELD
    weight: float = Field(default=1.0, gt=0, le=1000, description=WEIGHT_DESCRIPTION)

    _rate = field_validator("rate")(_valid_rate)


class KeyChanges(BaseModel):
    """`PATCH /admin/keys/{key_id}`: the limits to change; those left out stay."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    rate: str | None = Field(default=None, description="e.g. 5/s, 300/m, 1000/h")
    burst: int | None = Field(default=None, ge=1, le=10_000)
    max_active: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        validation_alias=AliasChoices("max_active", "max_queued"),
    )
    max_cost: float | None = MAX_COST_FIELD
    weight: float | None = Field(default=None, gt=0, le=1000, description=WEIGHT_DESCRIPTION)

    _rate = field_validator("rate")(_valid_rate)

    def changes(self) -> dict[str, Any]:
        """The key's fields to set; `max_cost: null` given is a change (the cap goes)."""
        given = {name: getattr(self, name) for name in self.model_fields_set}
        if given.get("rate") is not None:
            given["rate_per_s"] = parse_rate(given["rate"])
        given.pop("rate", None)
        return {k: v for k, v in given.items() if v is not None or k == "max_cost"}


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
        max_cost=body.max_cost,
        weight=body.weight,
    )
    return key.public() | {"token": token}


@router.get("/keys")
async def list_keys(store: Keys, _admin: Admin) -> list[dict[str, Any]]:
    return [key.public() for key in await store.all()]


@router.patch("/keys/{key_id}")
async def update_key(key_id: str, body: KeyChanges, store: Keys, _admin: Admin) -> dict[str, Any]:
    """Change a key's limits and weight; they apply from its next submit."""
    try:
        key = await store.update(key_id, body.changes())
    except ValidationError as exc:  # a value the key cannot hold, such as a rate of 0/s
        name = str(exc.errors()[0]["loc"][0])
        field = "rate" if name == "rate_per_s" else name
        raise InvalidInput(f"{field}: {exc.errors()[0]['msg']}", field=field) from exc
    if key is None:
        raise NotFound(f"key {key_id} not found")
    return key.public()


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
