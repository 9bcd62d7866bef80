"""What every output store shares: the interface, `store://` references and output names."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Protocol

import redis

from apps.common.redis import keys
from apps.common.service.settings import CommonSettings

STORE_SCHEME = "store://"
INPUTS_PREFIX = "inputs"


class OutputStore(Protocol):
    def put(self, task_id: str, index: int | str, data: bytes, *, extension: str) -> str:
        """Store output `index` of a task (or another public image of it, such as
        `preview_index(step)`) and return its public URL."""

    def put_input(self, task_id: str, field: str, data: bytes, *, extension: str) -> str:
        """Store an input image of a task; returns its `store://` reference."""

    def read(self, ref: str) -> bytes:
        """The bytes behind a `store://` reference (FileNotFoundError when gone)."""

    def read_output(self, url: str) -> bytes:
        """The bytes of an output by the public URL `put` gave (FileNotFoundError when gone)."""

    def sweep(self, older_than_s: float) -> int:
        """Delete outputs and inputs older than `older_than_s` (the job-record TTL)."""

    def delete_inputs(self, task_id: str) -> None:
        """Remove a task's uploaded inputs (a submit refused after storing them)."""


def is_store_ref(value: str) -> bool:
    return value.startswith(STORE_SCHEME)


def key_of(ref: str) -> str:
    """The store key of a `store://` reference, refusing anything that could leave the store."""
    if not is_store_ref(ref):
        raise ValueError(f"not a store reference: {ref[:60]!r}")
    key = ref[len(STORE_SCHEME) :]
    parts = PurePosixPath(key).parts
    if not parts or parts[0] != INPUTS_PREFIX or any(p in ("..", ".", "") for p in parts):
        raise ValueError(f"bad store reference: {ref[:60]!r}")
    return key


class NameKey:
    """The output-name key, resolved on first use (Redis may still be starting when a service
    builds its output store). Without FLUXGATE_OUTPUT_NAME_SECRET it is generated once by the
    first process that needs it and kept in Redis: it exists only on the server side (never a
    default anyone can read in the source), and every gateway and worker shares it."""

    def __init__(self, settings: CommonSettings) -> None:
        self._explicit = settings.output_name_secret
        self._redis_url = settings.redis_url
        self._key: bytes | None = None

    def __call__(self) -> bytes:
        if self._key is None:
            self._key = self._explicit.encode() if self._explicit else self._shared()
        return self._key

    def _shared(self) -> bytes:
        client = redis.Redis.from_url(self._redis_url, socket_timeout=5, socket_connect_timeout=5)
        try:
            client.set(keys.OUTPUT_NAME_KEY, secrets.token_urlsafe(32), nx=True)
            value = client.get(keys.OUTPUT_NAME_KEY)
        finally:
            client.close()
        if value is None:
            raise RuntimeError("the output-name key vanished from Redis")
        return value if isinstance(value, bytes) else str(value).encode()


def fixed_key(secret: str) -> Callable[[], bytes]:
    """A name key given outright (tests, tools)."""
    key = secret.encode()
    return lambda: key


def preview_index(step: int) -> str:
    """The `put` index of a job's preview at `step`: never an output's number, so never an
    output's name; under the task like its outputs, so the same sweep removes it."""
    return f"preview:{step}"


def name_of(secret: bytes, task_id: str, index: int | str) -> str:
    """Unguessable without the secret, yet the same on a rerun, which then overwrites."""
    digest = hmac.new(secret, f"{task_id}:{index}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")
