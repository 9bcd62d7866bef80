"""API keys: created with a rate and quotas, stored by the SHA-256 of the token only.

A token is `fg_` + 32 random bytes (URL-safe base64): a fast hash is enough for a secret of that
entropy (as GitHub does for its tokens). The key record holds what limits the key and its webhook
secrets; the token itself is shown once, at creation.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field

from apps.common.redis import keys
from apps.common.security.key_cache import KeyCache

TOKEN_PREFIX = "fg_"  # noqa: S105
# After a rotation the previous webhook secret keeps signing for this long (both are sent).
WEBHOOK_SECRET_OVERLAP_S = 24 * 3600
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_PER_S = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def parse_rate(text: str) -> float:
    """Requests per second from `5/s`, `300/m` or `1000/h`."""
    match = _RATE.match(text.lower())
    if match is None:
        raise ValueError(f"rate must look like 5/s, 300/m or 1000/h, not {text!r}")
    return float(match.group(1)) / _PER_S[match.group(2)]


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class ApiKey(BaseModel):
    """A key as stored (never the token). Frozen: a cached key is shared by requests."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    created_at: float
    rate_per_s: float = Field(gt=0)
    burst: int = Field(ge=1)
    max_active: int = Field(ge=1)
    # The most the key's queued and running jobs may cost together (megapixel-steps, the unit
    # of `TaskType.cost`); None: no cap.
    max_cost: float | None = Field(default=None, gt=0)
    # The key's share of GPU time against other keys' under fair scheduling (2 gets twice what
    # 1 gets while both wait).
    weight: float = Field(default=1.0, gt=0, le=1000)
    webhook_secret: str | None = None
    previous_webhook_secret: str | None = None
    previous_valid_until: float | None = None

    def webhook_secrets(self, fallback: str, now: float | None = None) -> list[str]:
        """Secrets to sign with, newest first; the previous one only during its overlap. Until
        the first rotation, and during the overlap after it, `fallback` (the global secret) is
        the previous one."""
        if not self.webhook_secret:
            return [fallback]
        found = [self.webhook_secret]
        now = time.time() if now is None else now
        if (self.previous_valid_until or 0) > now:
            found.append(self.previous_webhook_secret or fallback)
        return found

    def public(self) -> dict[str, Any]:
        """What the admin routes show: everything but secrets."""
        return self.model_dump(exclude={"webhook_secret", "previous_webhook_secret"}) | {
            "has_webhook_secret": bool(self.webhook_secret)
        }


# What `KeyStore.update` may change: the key's limits and its fair-share weight.
UPDATABLE = frozenset({"rate_per_s", "burst", "max_active", "max_cost", "weight"})


class KeyStore:
    def __init__(self, client: aioredis.Redis, cache: KeyCache | None = None) -> None:
        """`cache`: keys already read, for `authenticate` (`key_cache.py`)."""
        self._redis = client
        self._cache = cache

    async def create(
        self,
        *,
        name: str,
        rate_per_s: float,
        burst: int | None,
        max_active: int,
        max_cost: float | None = None,
        weight: float = 1.0,
    ) -> tuple[ApiKey, str]:
        """A new key and its token (shown once)."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id="key_" + secrets.token_hex(8),
            name=name,
            created_at=time.time(),
            rate_per_s=rate_per_s,
            burst=burst or max(1, int(rate_per_s * 2)),
            max_active=max_active,
            max_cost=max_cost,
            weight=weight,
        )
        digest = token_digest(token)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.apikey_key(str(digest)), key.model_dump_json())
            pipe.set(keys.apikey_id_key(key.id), digest)
            pipe.sadd(keys.APIKEY_IDS, key.id)
            await pipe.execute()
        return key, token

    async def authenticate(self, token: str) -> ApiKey | None:
        if not token.startswith(TOKEN_PREFIX):
            return None
        digest = token_digest(token)
        cache = self._cache
        if cache is not None and (cached := cache.get(digest)) is not None:
            return cached
        generation = 0 if cache is None else cache.generation
        raw = await self._redis.get(keys.apikey_key(digest))
        if raw is None:
            return None
        key = ApiKey.model_validate_json(raw)
        if cache is not None:
            cache.put(digest, key, generation)
        return key

    async def by_id(self, key_id: str) -> ApiKey | None:
        digest = await self._redis.get(keys.apikey_id_key(key_id))
        if digest is None:
            return None
        raw = await self._redis.get(keys.apikey_key(str(digest)))
        return None if raw is None else ApiKey.model_validate_json(raw)

    async def all(self) -> list[ApiKey]:
        found = [
            await self.by_id(str(key_id))
            for key_id in sorted(await self._redis.smembers(keys.APIKEY_IDS))
        ]
        return sorted((k for k in found if k is not None), key=lambda k: k.created_at)

    async def revoke(self, key_id: str) -> bool:
        digest = await self._redis.get(keys.apikey_id_key(key_id))
        if digest is None:
            return False
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.apikey_key(str(digest)), keys.apikey_id_key(key_id))
            pipe.srem(keys.APIKEY_IDS, key_id)
            await pipe.execute()
        return True

    async def update(self, key_id: str, changes: Mapping[str, Any]) -> ApiKey | None:
        """Change a key's limits (`UPDATABLE` fields; `max_cost` None removes the cap); None
        for an unknown key. Raises ValueError (pydantic's) for a value the key cannot have."""
        unknown = set(changes) - UPDATABLE
        if unknown:
            raise ValueError(f"not a limit of a key: {', '.join(sorted(unknown))}")
        digest = await self._redis.get(keys.apikey_id_key(key_id))
        raw = None if digest is None else await self._redis.get(keys.apikey_key(str(digest)))
        if raw is None:
            return None
        key = ApiKey.model_validate_json(raw)
        updated = ApiKey.model_validate(key.model_dump() | dict(changes))
        await self._redis.set(keys.apikey_key(str(digest)), updated.model_dump_json())
        return updated

    async def rotate_webhook_secret(self, key_id: str) -> str | None:
        """A new webhook secret; the old one keeps signing during the overlap."""
        digest = await self._redis.get(keys.apikey_id_key(key_id))
        raw = None if digest is None else await self._redis.get(keys.apikey_key(str(digest)))
        if raw is None:
            return None
        key = ApiKey.model_validate_json(raw)
        secret = new_webhook_secret()
        updated = key.model_copy(
            update={
                "webhook_secret": secret,
                "previous_webhook_secret": key.webhook_secret,
                "previous_valid_until": time.time() + WEBHOOK_SECRET_OVERLAP_S,
            }
        )
        await self._redis.set(keys.apikey_key(str(digest)), updated.model_dump_json())
        return secret
