"""`POST /tasks` and `GET /task-types` on the real stack: the registry, image inputs, bad input."""

from __future__ import annotations

import json
import struct
import zlib

import httpx
import redis

from apps.common.redis import keys
from devtools.procs import Proc, free_port, python_module, wait_http_ok
from tests.conftest import Stack
from tests.tasktypes.conftest import b64, gradient, png, submit_task

ALL_TYPES = {
    "flux",
    "style_transfer",
    "upscale",
    "face_detect",
    "face_swap",
    "background_removal",
    "stylize",
    "translate",
    "prompt_refine",
}


def _error(response: httpx.Response) -> dict[str, str]:
    return response.json()["error"]  # type: ignore[no-any-return]


def test_task_types_lists_every_type_with_its_schema(stack: Stack) -> None:
    response = httpx.get(f"{stack.gateway}/task-types", timeout=10)
    assert response.status_code == 200
    listed = {t["name"]: t for t in response.json()}
    assert set(listed) == ALL_TYPES
    assert listed["flux"]["queue"] == "gpu" and listed["flux"]["runs_on"] == "inference"
    assert listed["style_transfer"]["runs_on"] == "inference"
    assert listed["face_detect"]["queue"] == "cpu" and listed["face_detect"]["runs_on"] == "worker"
    assert listed["face_swap"]["image_fields"] == ["image", "target_image"]
    assert "scale" in listed["upscale"]["input_schema"]["properties"]
    assert listed["translate"]["available"] is True  # the test stack has a tiny model


def test_unknown_type_is_a_422_naming_type(stack: Stack) -> None:
    response = submit_task(stack, "paint_my_house", {})
    assert response.status_code == 422
    assert _error(response)["field"] == "type"
    assert "upscale" in _error(response)["message"]


def test_input_is_checked_against_the_types_model(stack: Stack) -> None:
    image = b64(png(gradient(32, 32)))
    unknown = submit_task(stack, "upscale", {"image": image, "colour": "red"})
    assert unknown.status_code == 422
    assert _error(unknown)["field"] == "input.colour"
    bad_scale = submit_task(stack, "upscale", {"image": image, "scale": 3})
    assert bad_scale.status_code == 422
    assert _error(bad_scale)["field"] == "input.scale"
    missing = submit_task(stack, "upscale", {})
    assert missing.status_code == 422
    assert _error(missing)["field"] == "input.image"


def test_corrupt_truncated_and_bomb_images_are_422_naming_the_field(stack: Stack) -> None:
    not_base64 = submit_task(stack, "stylize", {"image": "this is not an image!"})
    assert not_base64.status_code == 422, not_base64.text
    assert _error(not_base64)["field"] == "input.image"

    not_an_image = submit_task(stack, "stylize", {"image": b64(b"GIF89a but not really")})
    assert not_an_image.status_code == 422
    assert _error(not_an_image)["field"] == "input.image"

    whole = png(gradient(64, 64))
    truncated = submit_task(stack, "stylize", {"image": b64(whole[: len(whole) // 2])})
    assert truncated.status_code == 422
    assert _error(truncated)["field"] == "input.image"

    # A valid PNG whose header claims 60000 x 60000 pixels: refused before any decoding.
    bomb = _png_claiming(60000, 60000)
    response = submit_task(
        stack, "face_swap", {"image": b64(png(gradient(16, 16))), "target_image": b64(bomb)}
    )
    assert response.status_code == 422
    assert _error(response)["field"] == "input.target_image"
    assert "pixels" in _error(response)["message"]


def test_image_urls_are_checked_at_submit(stack: Stack) -> None:
    private = submit_task(stack, "upscale", {"image": "http://10.1.2.3/cat.png"})
    assert private.status_code == 422
    assert _error(private)["field"] == "input.image"
    assert "private" in _error(private)["message"]
    ftp = submit_task(stack, "upscale", {"image": "ftp://example.com/cat.png"})
    assert ftp.status_code == 422
    assert _error(ftp)["field"] == "input.image"
    # Only the gateway makes store references; a client may not point at another job's input.
    forged = submit_task(stack, "upscale", {"image": "store://inputs/x/y.png"})
    assert forged.status_code == 422


def test_multipart_file_parts_must_be_image_fields(stack: Stack) -> None:
    image = png(gradient(16, 16))
    wrong = httpx.post(
        f"{stack.gateway}/tasks",
        data={"type": "upscale", "input": "{}"},
        files={"picture": ("p.png", image, "image/png")},
        timeout=10,
    )
    assert wrong.status_code == 422
    assert _error(wrong)["field"] == "picture"
    twice = httpx.post(
        f"{stack.gateway}/tasks",
        data={"type": "upscale", "input": json.dumps({"image": b64(image)})},
        files={"image": ("p.png", image, "image/png")},
        timeout=10,
    )
    assert twice.status_code == 422
    assert _error(twice)["field"] == "input.image"
    bad_json = httpx.post(
        f"{stack.gateway}/tasks",
        data={"type": "upscale", "input": "{not json"},
        files={"image": ("p.png", image, "image/png")},
        timeout=10,
    )
    assert bad_json.status_code == 422
    assert _error(bad_json)["field"] == "input"


def test_images_never_travel_through_redis(stack: Stack) -> None:
    image = png(gradient(48, 48))
    response = submit_task(stack, "stylize", {"image": b64(image)}, priority=1)
    assert response.status_code == 202
    task_id = response.json()["task_id"]
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    record_input = json.loads(str(client.hget(keys.job_key(task_id), "input")))
    assert record_input["image"].startswith("store://inputs/")
    # Uploaded inputs are for the worker only: not served under /files/.
    key = record_input["image"].removeprefix("store://")
    for spelling in (
        key,
        f"/{key}",
        f"./{key}",
        f"%2e/{key}",
        key.replace("inputs/", "x/../inputs/"),
    ):
        response = httpx.get(f"{stack.gateway}/files/{spelling}", timeout=10)
        assert response.status_code == 404, spelling
    assert stack.wait_status(task_id, "succeeded", timeout=60)["status"] == "succeeded"


def test_an_idempotent_upload_makes_one_task(stack: Stack) -> None:
    image = png(gradient(40, 40))
    headers = {"Idempotency-Key": "upload-once-1"}

    def post(data: bytes) -> httpx.Response:
        return httpx.post(
            f"{stack.gateway}/tasks",
            data={"type": "stylize", "input": json.dumps({"preset": "cartoon"})},
            files={"image": ("p.png", data, "image/png")},
            headers=headers,
            timeout=10,
        )

    first, again = post(image), post(image)
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["task_id"] == first.json()["task_id"]
    other = post(png(gradient(40, 41)))
    assert other.status_code == 409


def test_translate_without_a_model_is_503_model_not_configured(stack: Stack, tmp_path) -> None:
    port = free_port()
    env = {k: v for k, v in stack.env.items() if k != "FLUXGATE_TRANSLATE_MODEL"}
    env["FLUXGATE_GATEWAY_PORT"] = str(port)
    gateway = Proc("gateway", python_module("apps.gateway"), env, tmp_path / "gw.log").start()
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", timeout=30, proc=gateway)
        response = httpx.post(
            f"http://127.0.0.1:{port}/tasks",
            json={"type": "translate", "input": {"text": "hello"}},
            timeout=10,
        )
        assert response.status_code == 503
        assert _error(response)["code"] == "model_not_configured"
        listed = httpx.get(f"http://127.0.0.1:{port}/task-types", timeout=10).json()
        assert next(t for t in listed if t["name"] == "translate")["available"] is False
    finally:
        gateway.stop()


def _png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG whose header claims a huge size, with one tiny compressed row."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def test_every_registered_type_has_a_worker_handler() -> None:
    from apps.common.task_types import registry
    from apps.worker.handlers import handled_types

    assert set(registry()) == handled_types() == ALL_TYPES
