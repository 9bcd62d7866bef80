"""The output store: where generated images are written and the URL they are served from."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path
from typing import Protocol


class OutputStore(Protocol):
    def put(self, task_id: str, data: bytes, *, extension: str) -> str:
        """Store `data` and return its public URL."""


class LocalOutputStore:
    """A directory served by the gateway under `/files/`."""

    def __init__(self, root: Path, *, public_base: str) -> None:
        self._root = root
        self._public_base = public_base.rstrip("/")

    def put(self, task_id: str, data: bytes, *, extension: str) -> str:
        # A random name per file: a URL cannot be guessed from a task id.
        key = f"{task_id}/{secrets.token_urlsafe(16)}.{extension}"
        target = self._root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        return f"{self._public_base}/files/{key}"
