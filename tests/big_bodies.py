"""Bodies over the size limits, made without holding them in memory: streamed zeros, and a sparse
file on disk as an image part."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx

MIB = 1024 * 1024
IMAGE_LIMIT = 20 * MIB
UPLOAD_LIMIT = 64 * MIB


def zeros(total: int, chunk: int = MIB) -> Iterator[bytes]:
    block = bytes(chunk)
    for start in range(0, total, chunk):
        yield block[: min(chunk, total - start)]


def post_oversized_image(base_url: str, headers: dict[str, str], tmp: Path) -> httpx.Response:
    """A `stylize` task whose multipart image is one byte over the per-image limit."""
    big = tmp / "big.png"
    with big.open("wb") as sparse:
        sparse.truncate(IMAGE_LIMIT + 1)
    with big.open("rb") as image:
        return httpx.post(
            f"{base_url}/tasks",
            data={"type": "stylize", "input": '{"preset": "cartoon"}'},
            files={"image": ("big.png", image, "image/png")},
            headers=headers,
            timeout=60,
        )


def assert_refused_for_its_size(answer: httpx.Response) -> None:
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["field"] == "input.image"
    # Refused for its size, before anyone tried to decode it.
    assert f"over {IMAGE_LIMIT} bytes" in error["message"], error
