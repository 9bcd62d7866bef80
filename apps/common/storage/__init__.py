"""Where task outputs and uploaded inputs are written, and how they are named.

Outputs get public URLs (`/files/...` on the gateway, or the bucket's). Inputs are referenced inside
the job record as `store://inputs/...`, so image bytes never travel through Redis or Celery; the
worker reads them back from the store.
"""

from __future__ import annotations

from pathlib import Path

from apps.common.service.settings import CommonSettings
from apps.common.storage.local import LocalOutputStore
from apps.common.storage.names import NameKey, OutputStore


def make_output_store(settings: CommonSettings) -> OutputStore:
    """The store `FLUXGATE_OUTPUT_DIR` names: a local directory, or `s3://bucket/prefix`."""
    if settings.output_dir.startswith("s3://"):
        from apps.common.storage.s3 import S3OutputStore  # boto3 is imported only when used

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
