"""A real S3 API on loopback for the output store's tests: moto in server mode, as a process."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx

from devtools.procs import TRANSIENT, Proc, free_port, poll_until

# moto accepts any credentials; the AWS SDK insists on having some.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing-key-id",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class S3Server:
    url: str
    proc: Proc

    def client(self):  # type: ignore[no-untyped-def]
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        )

    def bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name


@contextmanager
def s3_server(tmp: Path) -> Iterator[S3Server]:
    port = free_port()
    binary = str(Path(sys.executable).parent / "moto_server")
    proc = Proc("moto", [binary, "-H", "127.0.0.1", "-p", str(port)], {}, tmp / "moto.log")
    proc.start()
    url = f"http://127.0.0.1:{port}"
    try:
        poll_until(
            lambda: httpx.get(f"{url}/moto-api/", timeout=2).status_code < 500,
            timeout=30,
            what="moto_server",
            retry_on=TRANSIENT,
            watch=[proc],
        )
        yield S3Server(url, proc)
    finally:
        proc.stop()
