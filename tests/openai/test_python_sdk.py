"""The official `openai` Python package, unchanged, against Fluxgate through nginx: generations,
edits, models, errors and idempotency."""

from __future__ import annotations

import base64
import io
import uuid

import httpx
import openai
import pytest
from PIL import Image

from tests.openai.conftest import MODELS, OPENAI_STEPS, OpenAIDoor


def picture(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.size


def test_generations_answer_the_urls_of_the_finished_images(door: OpenAIDoor, key: str) -> None:
    client = door.client(key)
    raw = client.images.with_raw_response.generate(
        model="flux", prompt="a red fox", n=2, size="64x64", response_format="url"
    )
    answer = raw.parse()
    assert answer.data is not None and len(answer.data) == 2
    urls = [image.url for image in answer.data]
    for url in urls:
        assert url is not None
        fetched = httpx.get(url, timeout=10)
        assert fetched.status_code == 200
        assert size_of(fetched.content) == (64, 64)
    # The native job behind it: a finished two-image flux job at the configured steps.
    view = door.view(key, raw.headers["x-fluxgate-task-id"])
    assert view["type"] == "flux" and view["status"] == "succeeded"
    assert [image["url"] for image in view["result"]["images"]] == urls  # type: ignore[index]
    assert view["cost"] == pytest.approx(64 * 64 / 1e6 * OPENAI_STEPS * 2, abs=1e-3)
    assert answer.created > 0


def test_b64_json_carries_the_stored_images(door: OpenAIDoor, key: str) -> None:
    raw = door.client(key).images.with_raw_response.generate(
        prompt="a blue fox", size="128x64", response_format="b64_json", extra_body={"seed": 7}
    )
    answer = raw.parse()
    assert answer.data is not None and len(answer.data) == 1
    image = answer.data[0]
    assert image.url is None and image.b64_json
    assert size_of(base64.b64decode(image.b64_json)) == (128, 64)
    # `seed`, not OpenAI's but FLUX's, is kept.
    view = door.view(key, raw.headers["x-fluxgate-task-id"])
    assert view["result"]["images"][0]["seed"] == 7  # type: ignore[index]


def test_edits_redraw_the_uploaded_image(door: OpenAIDoor, key: str) -> None:
    raw = door.client(key).images.with_raw_response.edit(
        image=("photo.png", picture(256, 128), "image/png"),
        prompt="an oil painting",
        size="128x128",
        response_format="b64_json",
    )
    answer = raw.parse()
    assert answer.data is not None and answer.data[0].b64_json
    # `size` bounds the long side; the photo's 2:1 shape is kept.
    assert size_of(base64.b64decode(answer.data[0].b64_json)) == (128, 64)
    view = door.view(key, raw.headers["x-fluxgate-task-id"])
    assert view["type"] == "style_transfer" and view["status"] == "succeeded"


def test_models_lists_what_this_deployment_serves(door: OpenAIDoor, key: str) -> None:
    client = door.client(key)
    models = list(client.models.list())
    # The registry's models (GET /models), then the aliases of its default model.
    registry = httpx.get(f"{door.url}/models", timeout=10).json()
    served = [spec["id"] for spec in registry["models"]]
    assert [model.id for model in models] == served + MODELS
    assert all(m.object == "model" and m.owned_by == "fluxgate" and m.created for m in models)
    assert client.models.retrieve("dall-e-3").id == "dall-e-3"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-image-1")
    # A listed alias runs the default model; a registry id runs that model.
    for name in ("dall-e-3", served[0]):
        raw = client.images.with_raw_response.generate(model=name, prompt="a fox", size="64x64")
        assert raw.parse().data
        view = door.view(key, raw.headers["x-fluxgate-task-id"])
        assert view["result"]["model"] == registry["default"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"size": "big"}, "size"),
        ({"size": "100x100"}, "size"),  # not a multiple of 16
        ({"size": "4096x4096"}, "size"),
        ({"n": 5}, "n"),
        ({"model": "gpt-image-1"}, "model"),
        ({"background": "transparent"}, "background"),
        ({"response_format": "gif"}, "response_format"),
        ({"prompt": ""}, "prompt"),
    ],
)
def test_a_bad_parameter_is_a_bad_request_naming_it(
    door: OpenAIDoor, key: str, params: dict[str, object], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        door.client(key).images.generate(**{"prompt": "a fox", **params})  # type: ignore[arg-type]
    error = caught.value
    assert error.status_code == 400
    assert error.param == param, error.body
    assert error.type == "invalid_request_error"


def test_an_unknown_parameter_is_refused_by_name(door: OpenAIDoor, key: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        door.client(key).images.generate(prompt="a fox", extra_body={"steps": 4})
    assert caught.value.param == "steps"


def test_an_edit_with_a_mask_is_refused_naming_mask(door: OpenAIDoor, key: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        door.client(key).images.edit(
            image=("photo.png", picture(64, 64), "image/png"),
            mask=("mask.png", picture(64, 64), "image/png"),
            prompt="a hat",
        )
    assert caught.value.param == "mask"
    assert "inpainting" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        door.client(key).images.edit(
            image=("photo.png", b"not an image", "image/png"), prompt="a hat"
        )
    assert caught.value.param == "image"


def test_a_bad_key_is_an_authentication_error(door: OpenAIDoor) -> None:
    client = door.client("fg_not-a-key")
    with pytest.raises(openai.AuthenticationError) as caught:
        client.images.generate(prompt="a fox", size="64x64")
    assert caught.value.status_code == 401
    assert caught.value.type == "invalid_request_error"
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_a_key_over_its_rate_is_a_rate_limit_error_with_retry_after(door: OpenAIDoor) -> None:
    client = door.client(door.new_key("openai-slow", rate="1/m", burst=1))
    client.images.generate(prompt="a fox", size="64x64")
    with pytest.raises(openai.RateLimitError) as caught:
        client.images.generate(prompt="a fox", size="64x64")
    assert caught.value.code == "rate_limited"
    assert int(caught.value.response.headers["retry-after"]) > 0


def test_the_same_idempotency_key_answers_the_same_job(door: OpenAIDoor, key: str) -> None:
    client = door.client(key)
    headers = {"Idempotency-Key": f"openai-{uuid.uuid4()}"}
    first = client.images.with_raw_response.generate(
        prompt="a fox", size="64x64", extra_headers=headers
    )
    again = client.images.with_raw_response.generate(
        prompt="a fox", size="64x64", extra_headers=headers
    )
    task_id = first.headers["x-fluxgate-task-id"]
    assert again.headers["x-fluxgate-task-id"] == task_id
    assert again.parse().data == first.parse().data
    # The same key with another request is a conflict, not a second job.
    with pytest.raises(openai.ConflictError) as caught:
        client.images.generate(prompt="a wolf", size="64x64", extra_headers=headers)
    assert caught.value.code == "conflict"
