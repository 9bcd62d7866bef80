"""Helpers for the task-type tests: images the tests make, and submit-and-wait on the stack."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import Stack


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def astronaut(size: int = 256) -> Image.Image:
    """A real photograph with one face (it ships inside scikit-image)."""
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((size, size), Image.Resampling.LANCZOS)


def gradient(width: int, height: int) -> Image.Image:
    ys, xs = np.mgrid[0:height, 0:width]
    pixels = np.stack(
        [xs * 255 // max(width - 1, 1), ys * 255 // max(height - 1, 1), (xs + ys) % 256], axis=-1
    ).astype(np.uint8)
    return Image.fromarray(pixels)


def submit_task(
    stack: Stack, task_type: str, task_input: dict[str, Any], **kw: Any
) -> httpx.Response:
    return httpx.post(
        f"{stack.gateway}/tasks", json={"type": task_type, "input": task_input, **kw}, timeout=30
    )


def noise_png(side: int, seed: int = 0) -> bytes:
    """Random pixels do not compress: a PNG of about 3 x side^2 bytes, for body-limit tests."""
    pixels = np.random.default_rng(seed).bytes(side * side * 3)
    return png(Image.frombytes("RGB", (side, side), pixels))


def run_task(
    stack: Stack,
    task_type: str,
    task_input: dict[str, Any],
    *,
    timeout: float = 90,
    files: dict[str, bytes] | None = None,
) -> dict[str, Any]:
    """Submit (JSON, or multipart when `files` are given) and wait for a final state."""
    if files:
        response = httpx.post(
            f"{stack.gateway}/tasks",
            data={"type": task_type, "input": json.dumps(task_input)},
            files={name: (f"{name}.png", data, "image/png") for name, data in files.items()},
            timeout=30,
        )
    else:
        response = submit_task(stack, task_type, task_input)
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    return stack.wait_status(task_id, "succeeded", "failed", "canceled", timeout=timeout)


def fetch_image(url: str) -> Image.Image:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, url
    return Image.open(io.BytesIO(response.content))


@pytest.fixture(scope="session")
def face_png() -> bytes:
    return png(astronaut(256))
