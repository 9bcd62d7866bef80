"""A submit's model and adapters: checked against the deployment's registry, the model named
explicitly in the job and its defaults filled in, before the job is priced and fingerprinted."""

from __future__ import annotations

from typing import Any, TypeVar

from apps.common.model_registry import ChoiceRefused, ModelRegistry
from apps.common.service.errors import InvalidInput
from apps.common.wire.contracts import StrictModel

InputT = TypeVar("InputT", bound=StrictModel)


def with_model(given: InputT, path: str, registry: ModelRegistry) -> InputT:
    """`given` on the model it names (or the default), with that model's default steps and
    guidance for the fields the client left out; 422 naming the field (under `path`, where the
    request carries the input) for a model or adapter not served here or a size past the model's
    limit. Inputs without a `model` field pass unchanged."""
    if "model" not in type(given).model_fields:
        return given
    try:
        # Both input models with a `model` field carry `loras` beside it.
        chosen: Any = given
        spec = registry.check(chosen.model, chosen.loras, path)
    except ChoiceRefused as exc:
        raise InvalidInput(str(exc), field=exc.field) from exc
    # In one order: the same adapters given in another order are the same request (the deltas
    # add up), so they share a fingerprint and a batch.
    update: dict[str, object] = {
        "model": spec.id,
        "loras": sorted(chosen.loras, key=lambda lora: lora.name),
    }
    if "num_inference_steps" not in given.model_fields_set:
        update["num_inference_steps"] = spec.default_steps
    if "guidance_scale" not in given.model_fields_set:
        update["guidance_scale"] = spec.default_guidance
    for side in ("width", "height", "max_side"):
        value = getattr(given, side, None)
        if isinstance(value, int) and value > spec.max_side:
            raise InvalidInput(
                f"{path}{side}: model '{spec.id}' makes images up to {spec.max_side} px a side",
                field=f"{path}{side}",
            )
    # model_copy keeps `model_fields_set`, so what the client set stays known downstream.
    return given.model_copy(update=update)
