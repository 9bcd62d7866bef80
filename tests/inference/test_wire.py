"""What the worker sends a model server about previews, models and adapters: nothing unless asked
for, since a model server one release older refuses unknown fields (a rolling update runs both);
and what it tells the balancer to route on."""

from __future__ import annotations

import json

from apps.balancer.affinity import Affinity
from apps.common.wire.contracts import FluxInput
from apps.common.wire.inference import (
    BALANCER_ADAPTERS_HEADER,
    BALANCER_MODEL_HEADER,
    InferenceRequest,
)
from apps.worker.balancer_client import route_headers


def test_preview_fields_travel_only_when_asked_for() -> None:
    plain = json.loads(InferenceRequest(task_id="t", input=FluxInput(prompt="fox")).wire_json())
    assert "preview" not in plain["input"] and "preview_every_n_steps" not in plain["input"]
    asked = InferenceRequest(task_id="t", input=FluxInput(prompt="fox", preview=True))
    assert json.loads(asked.wire_json())["input"]["preview"] is True
    every = InferenceRequest(task_id="t", input=FluxInput(prompt="fox", preview_every_n_steps=3))
    wire = json.loads(every.wire_json())["input"]
    assert wire["preview_every_n_steps"] == 3 and "preview" not in wire
    assert InferenceRequest.model_validate_json(every.wire_json()) == every


def test_the_default_model_and_no_adapters_travel_as_before_and_the_balancer_hears_both() -> None:
    plain = InferenceRequest(task_id="t", input=FluxInput(prompt="fox", model="draft"))
    wire = json.loads(plain.wire_json(default_model="draft"))["input"]
    assert "model" not in wire and "loras" not in wire
    assert route_headers(plain, "draft") == {BALANCER_MODEL_HEADER: "draft"}
    styled = InferenceRequest(
        task_id="t",
        input=FluxInput.model_validate(
            {"prompt": "fox", "model": "final", "loras": [{"name": "neon"}, {"name": "ink"}]}
        ),
    )
    wire = json.loads(styled.wire_json(default_model="draft"))["input"]
    assert wire["model"] == "final" and [x["name"] for x in wire["loras"]] == ["neon", "ink"]
    assert route_headers(styled, "draft") == {
        BALANCER_MODEL_HEADER: "final",
        BALANCER_ADAPTERS_HEADER: "ink,neon",
    }
    assert Affinity.of_headers(route_headers(styled, "draft")) == Affinity(
        "final", frozenset({"ink", "neon"})
    )
