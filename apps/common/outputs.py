"""The output store: where task outputs and uploaded inputs are written, and how they are named.

Outputs get public URLs (`/files/...` on the gateway). Inputs are referenced inside the job
record as `store://inputs/...`, so image bytes never travel through Redis or Celery; the worker
reads them back from the store.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Protocol

import redis

from apps.common import keys
from apps.common.settings import CommonSettings

STORE_SCHEME = "store://"
INPUTS_PREFIX = "inputs"


class OutputStore(Protocol):
    def put(self, task_id: str, index: int, data: bytes, *, extension: str) -> str:
        """Store output `index` of a task and return its public URL."""

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


def name_of(secret: bytes, task_id: str, index: int | str) -> str:
    """Unguessable without the secret, yet the same on a rerun, which then overwrites."""
    digest = hmac.new(secret, f"{task_id}:{index}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")


class LocalOutputStore:
    """A directory served by the gateway under `/files/`."""

    def __init__(self, root: Path, *, public_base: str, name_key: Callable[[], bytes]) -> None:
        self._root = root
        self._public_base = public_base.rstrip("/")
        self._name_key = name_key

    def name_of(self, task_id: str, index: int | str) -> str:
        return name_of(self._name_key(), task_id, index)

    def put(self, task_id: str, index: int, data: bytes, *, extension: str) -> str:
        key = f"{task_id}/{self.name_of(task_id, index)}.{extension}"
        self._write(key, data)
        return f"{self._public_base}/files/{key}"

    def put_input(self, task_id: str, field: str, data: bytes, *, extension: str) -> str:
        key = f"{INPUTS_PREFIX}/{task_id}/{self.name_of(task_id, 'input:' + field)}.{extension}"
        self._write(key, data)
        return STORE_SCHEME + key

    def read(self, ref: str) -> bytes:
        return (self._root / key_of(ref)).read_bytes()

    def read_output(self, url: str) -> bytes:
        prefix = f"{self._public_base}/files/"
        if not url.startswith(prefix):
            raise FileNotFoundError(url)
        key = url[len(prefix) :].split("?", 1)[0]
        segments = key.split("/")
        if not key or segments[0] == INPUTS_PREFIX or any(p in ("..", ".", "") for p in segments):
            raise FileNotFoundError(url)
        return (self._root / key).read_bytes()

    def delete_inputs(self, task_id: str) -> None:
        shutil.rmtree(self._root / INPUTS_PREFIX / task_id, ignore_errors=True)

    def sweep(self, older_than_s: float) -> int:
        if not self._root.is_dir():
            return 0
        cutoff = time.time() - older_than_s
        removed = 0
        for path in sorted(self._root.rglob("*"), reverse=True):  # files before their dirs
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
                elif path.is_dir() and not any(path.iterdir()):
                    path.rmdir()
            except OSError:
                continue  # written or removed meanwhile by another process
        return removed

    def _write(self, key: str, data: bytes) -> None:
        target = self._root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)


def make_output_store(settings: CommonSettings) -> OutputStore:
    """The store `FLUXGATE_OUTPUT_DIR` names: a local directory, or `s3://bucket/prefix`."""
    if settings.output_dir.startswith("s3://"):
        from apps.common.s3_store import S3OutputStore

        return S3OutputStore(
            settings.output_dir,
            name_key=NameKey(settings),
            public_base=settings.public_base,
            ttl_s=settings.job_ttl_s,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            url_mode=settings.s3_url_mode,
        )
    return LocalOutputStore(
        Path(settings.output_dir), public_base=settings.public_base, name_key=NameKey(settings)
    )
