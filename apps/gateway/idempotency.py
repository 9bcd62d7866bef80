"""`Idempotency-Key`: the same key and body within 24 h give back the same task, never a second."""

from __future__ import annotations

import hashlib
import re

import orjson
import redis.asyncio as aioredis

from apps.common.redis import keys
from apps.common.service.errors import Conflict, IdempotencyInProgress, InvalidInput

HEADER = "Idempotency-Key"
TTL_S = 24 * 3600
MAX_KEY_LENGTH = 255
# Printable ASCII, not starting with a space (declared in the OpenAPI document).
KEY_PATTERN = r"^[\x21-\x7e][\x20-\x7e]{0,254}$"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


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

    async def bound_task(self, scope: str, key: str, *, body: str) -> str | None:
        """The task `key` is already bound to, or None. Raises Conflict for another body."""
        existing = await self._redis.get(keys.idempotency_key(scope, digest(key)))
        if existing is None:
            return None
        bound = orjson.loads(existing)
        if bound["body"] != digest(body):
            raise Conflict(f"this {HEADER} was already used with a different body", field=HEADER)
        return str(bound["task_id"])

    async def claim(self, scope: str, key: str, *, body: str, task_id: str) -> str | None:
        """Bind `key` to `task_id`. Returns None when it is ours now, else the task it is bound to.

        Raises Conflict when the key was used with a different body.
        """
        redis_key = keys.idempotency_key(scope, digest(key))
        claim = orjson.dumps({"task_id": task_id, "body": digest(body)}).decode()
        for _ in range(2):  # the other binding may expire between SET and GET: try once more
            if await self._redis.set(redis_key, claim, nx=True, ex=TTL_S):
                return None
            existing = await self._redis.get(redis_key)
            if existing is None:
                continue
            bound = orjson.loads(existing)
            if bound["body"] != digest(body):
                raise Conflict(
                    f"this {HEADER} was already used with a different body", field=HEADER
                )
            return str(bound["task_id"])
        raise IdempotencyInProgress(
            f"this {HEADER} is being used by another request; retry", field=HEADER
        )

    async def release(self, scope: str, key: str) -> None:
        """Forget a claim whose job could not be queued, so the client may retry with it."""
        await self._redis.delete(keys.idempotency_key(scope, digest(key)))
