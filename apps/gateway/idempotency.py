"""`Idempotency-Key`: the same key and body within 24 h give back the same task, never a second."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis

from apps.common.redis import keys
from apps.common.service.errors import Conflict, InvalidInput

HEADER = "Idempotency-Key"
TTL_S = 24 * 3600
MAX_KEY_LENGTH = 255
# Printable ASCII, not starting with a space (declared in the OpenAPI document).
KEY_PATTERN = r"^[\x21-\x7e][\x20-\x7e]{0,254}$"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Claim:
    """What the accept script stores under an Idempotency-Key once it accepts the job."""

    redis_key: str
    binding: str
    ttl_s: int = TTL_S


class IdempotencyKeys:
    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client

    @staticmethod
    def validate(key: str) -> str:
        if re.match(KEY_PATTERN, key) is None:
            raise InvalidInput(
                f"{HEADER} must be 1..{MAX_KEY_LENGTH} printable characters", field=HEADER
            )
        return key

    @staticmethod
    def claim(scope: str, key: str, *, body: str, task_id: str, ttl_s: int = TTL_S) -> Claim:
        """The binding of `key` to `task_id`, for the accept script to store with the job."""
        binding = orjson.dumps({"task_id": task_id, "body": digest(body)}).decode()
        return Claim(keys.idempotency_key(scope, digest(key)), binding, ttl_s)

    @staticmethod
    def task_of(binding: str | bytes, *, body: str) -> str:
        """The task a stored binding names. Raises Conflict when it was made for another body."""
        bound = orjson.loads(binding)
        if bound["body"] != digest(body):
            raise Conflict(f"this {HEADER} was already used with a different body", field=HEADER)
        return str(bound["task_id"])

    async def bound_task(self, scope: str, key: str, *, body: str) -> str | None:
        """The task `key` is already bound to, or None. Raises Conflict for another body."""
        existing = await self._redis.get(keys.idempotency_key(scope, digest(key)))
        return None if existing is None else self.task_of(existing, body=body)
