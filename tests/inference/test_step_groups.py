"""Step groups (continuous batching) on the tiny FLUX engine, in process: rows that join a running
group mid-flight, with their own step counts, guidance, negative prompts or start images, make the
image their request makes alone, through the window path, and through diffusers' own pipeline."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import FluxPipeline, FluxTransformer2DModel
from PIL import Image

from apps.common.wire.contracts import FluxInput
from apps.common.wire.inference import InferenceError, InferenceRequest, InferenceResult
from apps.inference.engine import BatchItem, ItemOutcome
from apps.inference.pipelines.flux import FluxEngine
from apps.inference.pipelines.tiny import ensure_tiny_flux
from apps.inference.settings import InferenceSettings


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def engine(models: Path) -> FluxEngine:
    return FluxEngine.load(InferenceSettings(model_cache_dir=models, inference_device="cpu"))


def request(task: str, **fields: object) -> InferenceRequest:
    spec = {
        "prompt": f"a red fox {task}",
        "width": 128,
        "height": 64,
        "num_inference_steps": 3,
        "seed": 11,
        **fields,
    }
    return InferenceRequest(task_id=task, input=FluxInput.model_validate(spec))


def img2img(
    task: str, strength: float, steps: int, color: tuple[int, int, int]
) -> InferenceRequest:
    buffer = io.BytesIO()
    Image.new("RGB", (128, 64), color).save(buffer, format="PNG")
    return InferenceRequest(
        task_id=task,
        input=FluxInput(prompt="as ink", width=128, height=64, num_inference_steps=steps, seed=5),
        image_b64=base64.b64encode(buffer.getvalue()).decode(),
        strength=strength,
    )


@dataclass
class Watcher:
    """One request's step callback: records steps and previews; leaves after `leave_after`."""

    leave_after: int | None = None
    previews: bool = False
    steps: list[tuple[int, int]] = field(default_factory=list)
    preview_b64: dict[int, str] = field(default_factory=dict)

    def on_step(self, step: int, total: int, preview_b64: str | None = None) -> bool:
        self.steps.append((step, total))
        if preview_b64 is not None:
            self.preview_b64[step] = preview_b64
        return self.leave_after is None or step < self.leave_after

    encoded: object | None = None

    def item(self, req: InferenceRequest) -> BatchItem:
        due = (lambda _s, _t: True) if self.previews else None
        return BatchItem(req, self.on_step, preview_due=due, encoded=self.encoded)


def run_group(
    engine: FluxEngine, joins: list[tuple[int, InferenceRequest, Watcher]]
) -> tuple[dict[str, ItemOutcome], list[int]]:
    """Admit each request before call number `join_at` of one group, step until all are done;
    each request's outcome, and the rows of every call."""
    group = engine.open_group(joins[0][1])
    outcomes: dict[str, ItemOutcome] = {}
    rows_per_call: list[int] = []
    call = 0
    while call == 0 or group.rows or any(at >= call for at, _, _ in joins):
        joining = [w.item(r) for at, r, w in joins if at == call]
        if joining:
            for retired in group.admit(joining):
                outcomes[retired.item.request.task_id] = retired.finish()
        if group.rows:
            rows_per_call.append(group.rows)
            for retired in group.step():
                outcomes[retired.item.request.task_id] = retired.finish()
        call += 1
    return outcomes, rows_per_call


def alone(engine: FluxEngine, req: InferenceRequest) -> InferenceResult:
    """The stock window path, the request in a batch of its own."""
    outcome = engine.run_batch([BatchItem(req, lambda _s, _t: True)])[0]
    assert isinstance(outcome, InferenceResult)
    return outcome


def pixels(data_b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_b64))), dtype=np.int16)


def assert_same_images(got: ItemOutcome, expected: InferenceResult) -> None:
    assert isinstance(got, InferenceResult), got
    assert len(got.images) == len(expected.images)
    for mine, theirs in zip(got.images, expected.images, strict=True):
        assert mine.seed == theirs.seed
        # The tolerance of the batched-vs-alone test: batched kernels may round the last bit.
        diff = np.abs(pixels(mine.data_b64) - pixels(theirs.data_b64))
        assert diff.max() <= 1, f"seed {mine.seed}: off by {diff.max()}"


def test_rows_joining_mid_flight_make_the_image_they_make_alone(engine: FluxEngine) -> None:
    first = request("first", num_inference_steps=6, seed=1)
    joins = [
        (0, first, Watcher()),
        # Joins at the second call: other prompt, seed and step count, its prompt encoded ahead.
        (1, request("second", num_inference_steps=3, seed=2, guidance_scale=7.0), Watcher()),
        # Joins at the third call with two images (seeds 3 and 4) and only two steps.
        (2, request("pair", num_inference_steps=2, seed=3, num_images=2), Watcher()),
        # Image-to-image rows share the calls too: 4 steps at strength 0.5 run the last 2.
        (2, img2img("ink", 0.5, 4, (200, 30, 30)), Watcher()),
    ]
    second = joins[1]
    second[2].encoded = engine.encode_prompts([second[1], request("x"), request("y")])[0]
    outcomes, rows_per_call = run_group(engine, joins)
    # Rows joined and left between calls: 1, then 2, then 2 + 2 + 1 ...
    assert rows_per_call == [1, 2, 5, 5, 1, 1], rows_per_call
    for _, req, watcher in joins:
        assert_same_images(outcomes[req.task_id], alone(engine, req))
        total = watcher.steps[0][1]
        assert watcher.steps == [(s, total) for s in range(1, total + 1)]
    assert [s for s, _ in joins[3][2].steps] == [1, 2], "strength 0.5 of 4 steps runs 2"
    result = outcomes["pair"]
    assert isinstance(result, InferenceResult) and result.batch_size == 5


def test_a_request_alone_makes_what_diffusers_makes(engine: FluxEngine) -> None:
    req = request("stock", num_inference_steps=4, seed=21)
    outcomes, _ = run_group(engine, [(0, req, Watcher())])
    result = outcomes["stock"]
    assert isinstance(result, InferenceResult)
    stock = engine._pipe(
        prompt=req.input.prompt,
        width=128,
        height=64,
        num_inference_steps=4,
        generator=torch.Generator(device="cpu").manual_seed(21),
        max_sequence_length=32,
    ).images[0]
    diff = np.abs(pixels(result.images[0].data_b64) - np.asarray(stock, dtype=np.int16))
    assert diff.max() <= 1, diff.max()


def test_negative_prompts_run_true_cfg_per_row(engine: FluxEngine) -> None:
    joins = [
        (0, request("neg-a", negative_prompt="blurry", num_inference_steps=4, seed=7), Watcher()),
        (1, request("neg-b", negative_prompt="dark", seed=8), Watcher()),
    ]
    assert engine.shape_key(joins[0][1]) != engine.shape_key(request("plain"))
    outcomes, rows_per_call = run_group(engine, joins)
    assert rows_per_call == [1, 2, 2, 2]
    for _, req, _ in joins:
        assert_same_images(outcomes[req.task_id], alone(engine, req))


def test_each_row_keeps_its_own_guidance(models: Path) -> None:
    """FLUX.1-dev embeds guidance: a transformer that does, with two guidance values in one call."""
    pipe = FluxPipeline.from_pretrained(str(ensure_tiny_flux(models)), dtype=torch.float32)
    torch.manual_seed(1)
    config = dict(pipe.transformer.config)
    pipe.transformer = FluxTransformer2DModel.from_config({**config, "guidance_embeds": True})
    guided = FluxEngine.of_pipe(pipe, device=torch.device("cpu"), max_sequence_length=32)
    low = request("low", guidance_scale=1.0, num_inference_steps=4)
    high = request("high", guidance_scale=9.0, num_inference_steps=4)
    outcomes, rows_per_call = run_group(guided, [(0, low, Watcher()), (1, high, Watcher())])
    assert rows_per_call == [1, 2, 2, 2, 1]
    low_alone, high_alone = alone(guided, low), alone(guided, high)
    assert_same_images(outcomes["low"], low_alone)
    assert_same_images(outcomes["high"], high_alone)
    same_but_guidance = alone(guided, request("low", guidance_scale=9.0, num_inference_steps=4))
    assert (
        pixels(same_but_guidance.images[0].data_b64).tolist()
        != pixels(low_alone.images[0].data_b64).tolist()
    ), "guidance changes the image, so the per-row values were really used"


def test_a_leaver_drops_its_rows_at_the_next_step(engine: FluxEngine) -> None:
    stayer = request("stays", num_inference_steps=5, seed=5)
    joins = [
        (0, request("leaves", num_inference_steps=5, seed=4, num_images=2), Watcher(leave_after=2)),
        (0, stayer, Watcher()),
    ]
    outcomes, rows_per_call = run_group(engine, joins)
    assert rows_per_call == [3, 3, 1, 1, 1]
    assert outcomes["leaves"] is None
    assert joins[0][2].steps == [(1, 5), (2, 5)]
    assert_same_images(outcomes["stays"], alone(engine, stayer))


def test_previews_are_small_webp_images_of_the_latents(engine: FluxEngine) -> None:
    watcher, plain = Watcher(previews=True), Watcher()
    outcomes, _ = run_group(
        engine, [(0, request("seen", num_inference_steps=3), watcher), (0, request("p"), plain)]
    )
    assert isinstance(outcomes["seen"], InferenceResult)
    assert sorted(watcher.preview_b64) == [1, 2, 3]
    assert plain.preview_b64 == {}, "only a request that asks gets previews"
    for data in watcher.preview_b64.values():
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        assert image.format == "WEBP" and image.size == (16, 8), "latent resolution: 1/8"
    # The previews follow the image as it forms: the last one is not the first one.
    assert watcher.preview_b64[1] != watcher.preview_b64[3]


def test_a_decode_out_of_memory_decodes_one_request_at_a_time(
    engine: FluxEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import apps.inference.pipelines.flux_steps as flux_steps

    real_decode = flux_steps.decode_images
    decoded: list[int] = []

    def tight(pipe: object, latents: torch.Tensor, width: int, height: int) -> list[object]:
        decoded.append(latents.shape[0])
        if latents.shape[0] > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated: no GPU here)")
        return real_decode(pipe, latents, width, height)

    monkeypatch.setattr(flux_steps, "decode_images", tight)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    one, two = request("d1", seed=41), request("d2", seed=42)
    pair = request("d3", seed=43, num_images=2)
    outcomes, _ = run_group(
        engine, [(0, one, Watcher()), (0, two, Watcher()), (0, pair, Watcher())]
    )
    assert decoded == [4, 1, 1, 2], decoded
    assert_same_images(outcomes["d1"], alone(engine, one))
    assert_same_images(outcomes["d2"], alone(engine, two))
    error = outcomes["d3"]
    assert isinstance(error, InferenceError) and error.code == "out_of_memory"


def test_a_split_group_carries_on_in_two(engine: FluxEngine) -> None:
    reqs = [request(f"s{i}", seed=30 + i, num_inference_steps=3) for i in range(3)]
    group = engine.open_group(reqs[0])
    group.admit([BatchItem(r, lambda _s, _t: True) for r in reqs])
    group.step()
    other = group.split()
    assert (group.rows, other.rows) == (1, 2)
    outcomes: dict[str, ItemOutcome] = {}
    for half in (group, other):
        while half.rows:
            for retired in half.step():
                outcomes[retired.item.request.task_id] = retired.finish()
    for req in reqs:
        assert_same_images(outcomes[req.task_id], alone(engine, req))
