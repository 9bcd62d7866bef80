"""The output store: where generated images are written and the URL they are served from."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import tempfile
from pathlib import Path
from typing import Protocol


class OutputStore(Protocol):
    def put(self, task_id: str, index: int, data: bytes, *, extension: str) -> str:
        """Store output `index` of a task and return its public URL."""


class LocalOutputStore:
    """A directory served by the gateway under `/files/`."""

    def __init__(self, root: Path, *, public_base: str, secret: str) -> None:
        self._root = root
        self._public_base = public_base.rstrip("/")
        self._secret = secret.encode()

    def name_of(self, task_id: str, index: int) -> str:
        """Unguessable without the secret, yet the same on a rerun, which then overwrites."""
        digest = hmac.new(self._secret, f"{task_id}:{index}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")

    def put(self, task_id: str, index: int, data: bytes, *, extension: str) -> str:
        key = f"{task_id}/{self.name_of(task_id, index)}.{extension}"
        target = self._root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        return f"{self._public_base}/files/{key}"
