"""The CLI's `--previews DIR`: saves each live preview a followed job shows, once."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from fluxgate_client.client import Fluxgate
from fluxgate_client.errors import FluxgateError
from fluxgate_client.models import JobView


class PreviewSaver:
    """Writes `DIR/step-NNN.webp` for every new preview among the views it is given."""

    def __init__(self, client: Fluxgate, directory: Path, *, errors: TextIO = sys.stderr) -> None:
        self._client = client
        self._directory = directory
        self._errors = errors
        self._seen: set[str] = set()
        self.saved: list[Path] = []

    def update(self, view: JobView) -> None:
        preview = view.preview
        if preview is None or preview.url in self._seen:
            return  # a snapshot after a reconnect repeats the preview it already had
        self._seen.add(preview.url)
        try:
            data = self._client.download(preview.url)
        except FluxgateError as exc:
            # A preview is a nice-to-have: a missing one never stops following the job.
            print(f"fluxgate: preview of step {preview.step} not saved: {exc}", file=self._errors)
            return
        path = self._directory / f"step-{preview.step:03d}.{preview.extension}"
        path.write_bytes(data)
        self.saved.append(path)
