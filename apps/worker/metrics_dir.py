"""Where the pool processes keep their metrics; set up before prometheus-client is imported,
which reads `PROMETHEUS_MULTIPROC_DIR` once, at import."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir() -> Path:
    """A fresh directory for this worker's metric files (stale files would add dead counts)."""
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        path = Path(configured)
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True, exist_ok=True)
    else:
        path = Path(tempfile.mkdtemp(prefix="fluxgate-worker-metrics-"))
        os.environ[MULTIPROC_ENV] = str(path)
    return path
