"""A submit's model and adapters against the registry (`with_model`), for both input models that
take them: the field named in a refusal, the model's defaults for what the client left out, the
model's largest size."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.common.model_registry import ModelRegistry
from apps.common.service.errors import InvalidInput
from apps.common.task_types.style_transfer import StyleTransferInput
from apps.common.wire.contracts import FluxInput, FluxRequest
from apps.gateway.model_choice import with_model
from apps.gateway.settings import GatewaySettings

MODELS = (
    '{"default": "schnell", "models": [{"id": "schnell", "default_steps": 4, '
    '"default_guidance": 0, "uses_guidance": false, "max_side": 512}, {"id": "dev"}]}'
)


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    (tmp_path / "ink.safetensors").write_bytes(b"")
    return GatewaySettings(models=MODELS, lora_dir=str(tmp_path), max_loras=2).model_registry()


def refused_field(given: object, path: str, registry: ModelRegistry) -> str | None:
    with pytest.raises(InvalidInput) as refused:
        with_model(given, path, registry)  # type: ignore[type-var]
    return refused.value.field


def test_the_default_model_is_named_and_its_defaults_fill_what_the_client_left_out(
    registry: ModelRegistry,
) -> None:
    body = FluxRequest.model_validate({"prompt": "fox", "width": 256, "height": 256})
    chosen = with_model(body.task_input(), "", registry)
    assert (chosen.model, chosen.num_inference_steps, chosen.guidance_scale) == ("schnell", 4, 0)
    given = FluxRequest.model_validate({"prompt": "fox", "num_inference_steps": 9, "model": "dev"})
    chosen = with_model(given.task_input(), "", registry)
    assert (chosen.model, chosen.num_inference_steps, chosen.guidance_scale) == ("dev", 9, 3.5)


def test_refusals_name_the_field_on_both_input_models(registry: ModelRegistry) -> None:
    flux = FluxInput.model_validate({"prompt": "fox", "loras": [{"name": "nope"}]})
    assert refused_field(flux, "input.", registry) == "input.loras[0].name"
    style = StyleTransferInput.model_validate(
        {"image": "https://example.com/a.png", "prompt": "ink", "model": "other"}
    )
    assert refused_field(style, "input.", registry) == "input.model"
    twice = FluxInput.model_validate({"prompt": "x", "loras": [{"name": "ink"}, {"name": "ink"}]})
    assert refused_field(twice, "", registry) == "loras[1].name"
    many = FluxInput.model_validate({"prompt": "x", "loras": [{"name": "ink"}] * 3})
    assert refused_field(many, "", registry) == "loras"
    big = StyleTransferInput.model_validate(
        {"image": "https://example.com/a.png", "prompt": "ink", "max_side": 1024}
    )
    assert refused_field(big, "input.", registry) == "input.max_side"


def test_a_name_that_could_climb_out_of_the_adapter_folder_is_refused_by_the_contract() -> None:
    with pytest.raises(ValueError, match="pattern"):
        FluxInput.model_validate({"prompt": "x", "loras": [{"name": "../secrets"}]})


def test_adapters_in_another_order_are_the_same_request(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    (tmp_path / "neon.safetensors").write_bytes(b"")
    given = [
        FluxInput.model_validate({"prompt": "x", "width": 256, "height": 256, "loras": loras})
        for loras in ([{"name": "neon"}, {"name": "ink"}], [{"name": "ink"}, {"name": "neon"}])
    ]
    chosen = [with_model(g, "", registry) for g in given]
    assert chosen[0] == chosen[1]
    assert [lora.name for lora in chosen[0].loras] == ["ink", "neon"]
