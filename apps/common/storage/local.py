"""The output store on a local directory (or a shared volume), served by the gateway."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from apps.common.storage.names import INPUTS_PREFIX, STORE_SCHEME, key_of, name_of


class LocalOutputStore:
    """A directory served by the gateway under `/files/`."""

    def __init__(self, root: Path, *, public_base: str, name_key: Callable[[], bytes]) -> None:
        self._root = root
        self._public_base = public_base.rstrip("/")
        self._name_key = name_key

    def name_of(self, task_id: str, index: int | str) -> str:
        return name_of(self._name_key(), task_id, index)

    def put(self, task_id: str, index: int | str, data: bytes, *, extension: str) -> str:
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
