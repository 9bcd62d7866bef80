from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from apps.common.wire.contracts import FluxInput, FluxRequest, OutputFormat


def errors_of(**body: object) -> list[dict[str, object]]:
    with pytest.raises(ValidationError) as caught:
        FluxRequest.model_validate({"prompt": "a fox", **body})
    return caught.value.errors()  # type: ignore[return-value]


def test_defaults_follow_the_contract() -> None:
    flux = FluxInput(prompt="a fox")
    assert (flux.width, flux.height, flux.num_images, flux.output_format) == (
        1024,
        1024,
        1,
        OutputFormat.PNG,
    )
    assert flux.seed is None


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"width": 250}, "width", "multiple of 16"),
        ({"height": 4096}, "height", "less than or equal to 2048"),
        ({"prompt": ""}, "prompt", "at least 1 character"),
        ({"prompt": "   "}, "prompt", "must not be blank"),
        ({"num_inference_steps": 0}, "num_inference_steps", "greater than or equal to 1"),
        ({"guidance_scale": 25}, "guidance_scale", "less than or equal to 20"),
        ({"num_images": 5}, "num_images", "less than or equal to 4"),
        ({"output_format": "gif"}, "output_format", "png"),
        ({"priority": 10}, "priority", "less than or equal to 9"),
        ({"webhook_events": ["finished"]}, "webhook_events", "started"),
        ({"colour": "red"}, "colour", "Extra inputs are not permitted"),
    ],
)
def test_bad_input_names_the_field(body: dict[str, object], field: str, fragment: str) -> None:
    first = errors_of(**body)[0]
    assert first["loc"][0] == field  # type: ignore[index]
    assert fragment in str(first["msg"])


def test_request_splits_into_input_and_delivery() -> None:
    request = FluxRequest.model_validate(
        {"prompt": "a fox", "width": 256, "priority": 9, "webhook_url": "https://example.com/h"}
    )
    assert request.task_input().width == 256
    assert "priority" not in request.task_input().model_dump()
    assert request.delivery().priority == 9
    assert str(request.delivery().webhook_url) == "https://example.com/h"


def test_inference_requests_carry_no_worker_only_fields() -> None:
    from apps.common.wire.contracts import FluxInput
    from apps.common.wire.inference import InferenceRequest

    request = InferenceRequest(
        task_id="t", input=FluxInput(prompt="a fox", refine_prompt=True, enable_base64_output=True)
    )
    wire = json.loads(request.wire_json())
    assert "refine_prompt" not in wire["input"] and "enable_base64_output" not in wire["input"]
    assert "image_b64" not in wire and "strength" not in wire
    # What the server parses back is the same request, minus what it never needed.
    parsed = InferenceRequest.model_validate(wire)
    assert parsed.input.prompt == "a fox" and parsed.input.refine_prompt is False
