"""What the worker sends a model server about previews: nothing unless asked for, since a model
server one release older refuses unknown fields (a rolling update runs both)."""

from __future__ import annotations

import json

from apps.common.wire.contracts import FluxInput, InferenceRequest


def test_preview_fields_travel_only_when_asked_for() -> None:
    plain = json.loads(InferenceRequest(task_id="t", input=FluxInput(prompt="fox")).wire_json())
    assert "preview" not in plain["input"] and "preview_every_n_steps" not in plain["input"]
    asked = InferenceRequest(task_id="t", input=FluxInput(prompt="fox", preview=True))
    assert json.loads(asked.wire_json())["input"]["preview"] is True
    every = InferenceRequest(task_id="t", input=FluxInput(prompt="fox", preview_every_n_steps=3))
    wire = json.loads(every.wire_json())["input"]
    assert wire["preview_every_n_steps"] == 3 and "preview" not in wire
    assert InferenceRequest.model_validate_json(every.wire_json()) == every
