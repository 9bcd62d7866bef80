"""The output store on an S3-compatible bucket (AWS S3, MinIO, R2, GCS's XML API, ...).

Selected by `FLUXGATE_OUTPUT_DIR=s3://bucket/prefix`; the endpoint and region come from
`FLUXGATE_S3_ENDPOINT_URL` / `FLUXGATE_S3_REGION`, credentials from the standard AWS variables
(`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`), which the chart fills from a Secret. Keys are the
same unguessable names as the local store's; clients get presigned URLs (or, in `proxy` mode,
the gateway's `/files/` serves the objects). Objects older than the job-record TTL are removed by
a bucket lifecycle rule where the store may set one, and by the gateway's sweep otherwise.
"""

from __future__ import annotations

import mimetypes
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from apps.common.storage.names import INPUTS_PREFIX, STORE_SCHEME, key_of, name_of

# SigV4 presigned URLs live at most 7 days.
MAX_PRESIGN_S = 7 * 24 * 3600


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix")."""
    parts = urlsplit(url)
    prefix = parts.path.strip("/")
    if parts.scheme != "s3" or not parts.netloc or not prefix:
        # A prefix is required: the sweep and the lifecycle rule cover everything under it.
        raise ValueError(f"not an s3://bucket/prefix URL (the prefix is required): {url!r}")
    return parts.netloc, prefix


class S3OutputStore:
    def __init__(
        self,
        url: str,
        *,
        name_key: Callable[[], bytes],
        public_base: str,
        ttl_s: int,
        endpoint_url: str | None = None,
        region: str | None = None,
        url_mode: str = "presigned",
        client: Any = None,
    ) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self._name_key = name_key
        self._public_base = public_base.rstrip("/")
        self._ttl_s = ttl_s
        self._url_mode = url_mode
        self._s3 = client or boto3.client(
            "s3",
            endpoint_url=endpoint_url or None,
            region_name=region or None,
            config=Config(
                signature_version="s3v4",
                retries={"max_attempts": 5, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
                # Path-style works with every S3-compatible server (MinIO, moto, ...).
                s3={"addressing_style": "path"},
            ),
        )

    def _object_key(self, key: str) -> str:
        return f"{self.prefix}/{key}"

    def _put(self, key: str, data: bytes, extension: str) -> None:
        self._s3.put_object(
            Bucket=self.bucket,
            Key=self._object_key(key),
            Body=data,
            ContentType=mimetypes.guess_type(f"x.{extension}")[0] or "application/octet-stream",
        )

    def put(self, task_id: str, index: int | str, data: bytes, *, extension: str) -> str:
        key = f"{task_id}/{name_of(self._name_key(), task_id, index)}.{extension}"
        self._put(key, data, extension)
        if self._url_mode == "proxy":
            return f"{self._public_base}/files/{key}"
        return str(
            self._s3.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._object_key(key)},
                ExpiresIn=min(self._ttl_s, MAX_PRESIGN_S),
            )
        )

    def put_input(self, task_id: str, field: str, data: bytes, *, extension: str) -> str:
        name = name_of(self._name_key(), task_id, "input:" + field)
        key = f"{INPUTS_PREFIX}/{task_id}/{name}.{extension}"
        self._put(key, data, extension)
        return STORE_SCHEME + key

    def _get(self, key: str) -> bytes:
        try:
            answer = self._s3.get_object(Bucket=self.bucket, Key=self._object_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise FileNotFoundError(key) from exc
            raise
        return bytes(answer["Body"].read())

    def read(self, ref: str) -> bytes:
        return self._get(key_of(ref))

    def read_output(self, url: str) -> bytes:
        parts = urlsplit(url)
        path = parts.path.lstrip("/")
        if self._url_mode == "proxy":
            prefix = f"{urlsplit(self._public_base).path.strip('/')}/files/".lstrip("/")
            if not path.startswith(prefix):
                raise FileNotFoundError(url)
            key = path[len(prefix) :]
        else:
            # Path-style presigned URL: /bucket/prefix/key
            head = f"{self.bucket}/{self.prefix}/"
            if not path.startswith(head):
                raise FileNotFoundError(url)
            key = path[len(head) :]
        if key.startswith(INPUTS_PREFIX + "/") or ".." in key.split("/"):
            raise FileNotFoundError(url)
        return self._get(key)

    def sweep(self, older_than_s: float) -> int:
        """Delete objects older than `older_than_s`; returns how many went."""
        cutoff = time.time() - older_than_s
        doomed = [
            {"Key": item["Key"]}
            for item in self._objects()
            if item["LastModified"].timestamp() < cutoff
        ]
        for start in range(0, len(doomed), 1000):
            self._s3.delete_objects(
                Bucket=self.bucket, Delete={"Objects": doomed[start : start + 1000], "Quiet": True}
            )
        return len(doomed)

    def _objects(self) -> Iterator[dict[str, Any]]:
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{self.prefix}/"):
            yield from page.get("Contents", [])

    def set_lifecycle(self) -> None:
        """Let the bucket expire our objects a day after the job TTL (whole days only). The
        bucket's other rules (the operator's, other prefixes') are kept: only ours is replaced."""
        days = max(1, -(-self._ttl_s // 86400))
        rule_id = f"fluxgate-expire-{self.prefix}".replace("/", "-")
        try:
            current = self._s3.get_bucket_lifecycle_configuration(Bucket=self.bucket)["Rules"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchLifecycleConfiguration":
                raise
            current = []
        rules = [rule for rule in current if rule.get("ID") != rule_id]
        rules.append(
            {
                "ID": rule_id,
                "Filter": {"Prefix": f"{self.prefix}/"},
                "Status": "Enabled",
                "Expiration": {"Days": days},
            }
        )
        self._s3.put_bucket_lifecycle_configuration(
            Bucket=self.bucket, LifecycleConfiguration={"Rules": rules}
        )

    def delete_inputs(self, task_id: str) -> None:
        """Remove a task's uploaded inputs (a submit that was refused after storing them)."""
        prefix = self._object_key(f"{INPUTS_PREFIX}/{task_id}/")
        listed = self._s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        doomed = [{"Key": item["Key"]} for item in listed.get("Contents", [])]
        if doomed:
            self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": doomed, "Quiet": True})
