"""The whole stack with its outputs and inputs in an S3 bucket (moto in server mode): what a
Kubernetes deployment with several gateway and worker pods runs on."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from devtools.procs import start_redis, start_stack, wait_stack_ready
from tests.conftest import STEP_DELAY_MS, Stack
from tests.s3server import S3_ENV, S3Server, s3_server

BUCKET = "fluxgate-outputs"


@pytest.fixture(scope="module")
def s3_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, S3Server]]:
    tmp = tmp_path_factory.mktemp("s3stack")
    with s3_server(tmp) as s3:
        s3.bucket(BUCKET)
        redis_proc, redis_url = start_redis(tmp)
        ports, env, procs = start_stack(
            redis_url,
            tmp,
            extra_env={
                **S3_ENV,
                "FLUXGATE_OUTPUT_DIR": f"s3://{BUCKET}/jobs",
                "FLUXGATE_S3_ENDPOINT_URL": s3.url,
                "FLUXGATE_S3_REGION": "us-east-1",
                "FLUXGATE_INFERENCE_STEP_DELAY_MS": str(STEP_DELAY_MS),
            },
        )
        stack = Stack.at(ports, redis_url=redis_url, env=env, procs=procs, tmp=tmp)
        try:
            wait_stack_ready(ports, procs)
            yield stack, s3
        finally:
            for proc in procs.values():
                proc.stop()
            redis_proc.stop()


def test_images_land_in_the_bucket_behind_presigned_urls(
    s3_stack: tuple[Stack, S3Server],
) -> None:
    stack, s3 = s3_stack
    task_id = str(stack.submit(width=64, height=64, num_inference_steps=2)["task_id"])
    view = stack.wait_status(task_id, "succeeded", "failed", timeout=90)
    assert view["status"] == "succeeded", view["error"]
    [image] = view["result"]["images"]  # type: ignore[index]
    assert image["url"].startswith(f"{s3.url}/{BUCKET}/jobs/{task_id}/")
    png = httpx.get(image["url"], timeout=10)
    assert png.status_code == 200
    assert Image.open(io.BytesIO(png.content)).size == (64, 64)
    # Nothing was written to a local directory: the gateway reads back from the bucket.
    assert not (stack.tmp / "outputs").exists()
    with_bytes = httpx.get(f"{stack.gateway}/tasks/{task_id}?include=base64", timeout=10).json()
    assert base64.b64decode(with_bytes["result"]["images"][0]["base64"]) == png.content


def test_uploaded_inputs_go_through_the_bucket(s3_stack: tuple[Stack, S3Server]) -> None:
    stack, s3 = s3_stack
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 40, 90)).save(buffer, format="PNG")
    response = httpx.post(
        f"{stack.gateway}/tasks",
        data={"type": "upscale", "input": '{"scale": 2, "method": "lanczos"}'},
        files={"image": ("in.png", buffer.getvalue(), "image/png")},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    view = stack.wait_status(task_id, "succeeded", "failed", timeout=60)
    assert view["status"] == "succeeded", view["error"]
    assert view["result"]["images"][0]["width"] == 80  # type: ignore[index]
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert any(k.startswith(f"jobs/inputs/{task_id}/") for k in keys), keys
