"""LoRA adapters on the tiny FLUX engine, in process: an adapter changes the image, scale 0 and
no adapter make the same one, rows batch only with the same adapter set and make the image they
make alone (also when groups of other sets step in between), the adapter LRU evicts the least
recently used adapter but never one a running group needs, and a corrupt file fails only its
request; models load on demand, one at a time here, only those the server serves."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.common.wire.contracts import FluxInput
from apps.common.wire.inference import InferenceError, InferenceRequest, InferenceResult
from apps.inference.engine import BatchItem, RequestRefused
from apps.inference.pipelines.flux import FluxEngine
from apps.inference.pipelines.tiny import ensure_tiny_flux
from apps.inference.settings import InferenceSettings
from devtools.loras import write_lora, write_loras
from tests.inference.test_step_groups import Watcher, alone, assert_same_images, pixels, run_group


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("models")
    folder = tmp_path_factory.mktemp("loras")
    write_loras(folder, ensure_tiny_flux(models), ["ink", "neon", "grain"])
    (folder / "broken.safetensors").write_bytes(b"not a safetensors file" * 10)
    return folder


def make_engine(lora_dir: Path, max_adapters: int = 2) -> FluxEngine:
    return FluxEngine.load(
        InferenceSettings(
            model_cache_dir=lora_dir.parent / "models",
            inference_device="cpu",
            lora_dir=str(lora_dir),
            inference_max_adapters=max_adapters,
        )
    )


@pytest.fixture(scope="module")
def engine(lora_dir: Path) -> FluxEngine:
    return make_engine(lora_dir)


def request(
    task: str, loras: list[tuple[str, float]] | None = None, **fields: object
) -> InferenceRequest:
    """The same prompt every time: images differ only by what each test changes."""
    spec = {
        "prompt": "a lighthouse at dusk",
        "width": 64,
        "height": 64,
        "num_inference_steps": 3,
        "seed": 7,
        "loras": [{"name": n, "scale": s} for n, s in loras or []],
        **fields,
    }
    return InferenceRequest(task_id=task, input=FluxInput.model_validate(spec))


def first_pixels(result: InferenceResult) -> list[object]:
    return pixels(result.images[0].data_b64).tolist()  # type: ignore[no-any-return]


def test_an_adapter_changes_the_image_and_scale_zero_changes_nothing(engine: FluxEngine) -> None:
    base = alone(engine, request("base"))
    inked = alone(engine, request("ink", [("ink", 1.0)]))
    zero = alone(engine, request("zero", [("ink", 0.0)]))
    again = alone(engine, request("base-again"))
    assert first_pixels(inked) != first_pixels(base), "the adapter changed nothing"
    assert first_pixels(zero) == first_pixels(base), "scale 0 is the model as it is"
    assert first_pixels(again) == first_pixels(base), "no adapter after one: the model as it is"
    half = alone(engine, request("half", [("ink", 0.5)]))
    assert first_pixels(half) not in (first_pixels(base), first_pixels(inked))


def test_rows_batch_only_with_the_same_adapter_set_and_make_what_they_make_alone(
    engine: FluxEngine,
) -> None:
    ink = [("ink", 1.0)]
    first = request("first", ink, num_inference_steps=5, seed=1)
    second = request("second", ink, num_inference_steps=3, seed=2, guidance_scale=6.0)
    # Same size, other adapters (or scales): another shape, never the same call.
    keys = {
        engine.shape_key(first),
        engine.shape_key(request("neon", [("neon", 1.0)])),
        engine.shape_key(request("weaker", [("ink", 0.5)])),
        engine.shape_key(request("plain")),
    }
    assert len(keys) == 4 and engine.shape_key(second) == engine.shape_key(first)
    outcomes, rows_per_call = run_group(engine, [(0, first, Watcher()), (1, second, Watcher())])
    assert rows_per_call == [1, 2, 2, 2, 1], rows_per_call
    for req in (first, second):
        assert_same_images(outcomes[req.task_id], alone(engine, req))


def test_groups_of_other_adapter_sets_stepping_in_between_leave_each_image_as_alone(
    engine: FluxEngine,
) -> None:
    requests = [
        request("a", [("ink", 1.0)], seed=3),
        request("b", [("neon", 0.8), ("ink", -0.5)], seed=4),
        request("c", seed=5),
    ]
    groups = [engine.open_group(r) for r in requests]
    outcomes: dict[str, object] = {}
    for group, req in zip(groups, requests, strict=True):
        for retired in group.admit([BatchItem(req, Watcher().on_step)]):
            outcomes[req.task_id] = retired.finish()
    # One step of each in turn: every call runs on another adapter set than the one before.
    while any(g.rows for g in groups):
        for group in groups:
            if group.rows:
                for retired in group.step():
                    outcomes[retired.item.request.task_id] = retired.finish()
    for req in requests:
        result = outcomes[req.task_id]
        assert isinstance(result, InferenceResult)
        expected = alone(engine, req)
        assert first_pixels(result) == first_pixels(expected), req.task_id


def test_the_adapter_lru_evicts_the_least_recently_used_but_never_one_in_use(
    lora_dir: Path,
) -> None:
    engine = make_engine(lora_dir, max_adapters=2)
    alone(engine, request("ink", [("ink", 1.0)]))
    alone(engine, request("neon", [("neon", 1.0)]))
    alone(engine, request("ink-again", [("ink", 1.0)]))  # ink is now the most recent
    alone(engine, request("grain", [("grain", 1.0)]))
    assert engine.holdings()["loaded_adapters"] == ["grain", "ink"], "neon was least recent"
    # A live group holds grain: loading two others may not evict it.
    running = engine.open_group(request("grain-running", [("grain", 1.0)]))
    alone(engine, request("neon", [("neon", 1.0)]))
    alone(engine, request("ink", [("ink", 1.0)]))
    assert "grain" in engine.holdings()["loaded_adapters"]
    del running
    alone(engine, request("neon", [("neon", 1.0)]))
    assert engine.holdings()["loaded_adapters"] == ["ink", "neon"]


def test_a_corrupt_adapter_fails_its_request_with_a_code_and_the_engine_goes_on(
    engine: FluxEngine,
) -> None:
    before = alone(engine, request("before"))
    outcome = engine.run_batch([BatchItem(request("bad", [("broken", 1.0)]), Watcher().on_step)])
    assert isinstance(outcome[0], InferenceError) and outcome[0].code == "adapter_invalid"
    assert "broken" in outcome[0].message
    with pytest.raises(RequestRefused) as refused:
        engine.open_group(request("bad", [("broken", 1.0)]))
    assert refused.value.code == "adapter_invalid"
    missing = engine.run_batch([BatchItem(request("gone", [("nowhere", 1.0)]), Watcher().on_step)])
    assert isinstance(missing[0], InferenceError) and missing[0].code == "adapter_unavailable"
    assert "broken" not in engine.holdings()["loaded_adapters"]
    after = alone(engine, request("before"))
    assert first_pixels(after) == first_pixels(before)


def test_models_load_on_demand_least_recently_used_out_and_only_those_served(
    lora_dir: Path,
) -> None:
    models = '{"default": "draft", "models": [{"id": "draft"}, {"id": "final"}, {"id": "x"}]}'
    engine = FluxEngine.load(
        InferenceSettings(
            model_cache_dir=lora_dir.parent / "models",
            inference_device="cpu",
            models=models,
            inference_models=["final", "x"],
            inference_max_models=1,
        )
    )
    # The default is not served here: it warms up on the first model it serves.
    engine.warm_up()
    assert engine.holdings()["serves"] == ["final", "x"]
    assert engine.holdings()["loaded_models"] == ["final"]
    alone(engine, request("x", model="x"))
    assert engine.holdings()["loaded_models"] == ["x"], "one model at a time here"
    refused = engine.run_batch([BatchItem(request("draft", model="draft"), Watcher().on_step)])
    assert isinstance(refused[0], InferenceError) and refused[0].code == "model_unavailable"


def test_a_replaced_adapter_file_is_loaded_again_once_nothing_runs_on_the_old_one(
    tmp_path: Path,
) -> None:
    """Adapters are cached by name: writing new weights under the same name must not leave
    the server running the old ones (it did, until the next eviction)."""
    folder = tmp_path / "loras"
    folder.mkdir()
    model_dir = ensure_tiny_flux(tmp_path / "models")  # where make_engine looks
    write_lora(folder / "style.safetensors", model_dir, seed=1)
    engine = make_engine(folder)
    first = first_pixels(alone(engine, request("v1", [("style", 1.0)])))
    # A running group holds the old weights: a new request joins them, as before.
    running = engine.open_group(request("v1-running", [("style", 1.0)]))
    write_lora(folder / "style.safetensors", model_dir, seed=2)
    assert first_pixels(alone(engine, request("v1-again", [("style", 1.0)]))) == first
    del running
    second = first_pixels(alone(engine, request("v2", [("style", 1.0)])))
    assert second != first, "the replaced file was not loaded"
    fresh = make_engine(folder)
    assert first_pixels(alone(fresh, request("v2-fresh", [("style", 1.0)]))) == second
