"""The tiny offline FLUX engine: built locally, loaded through from_pretrained, deterministic,
and batch-safe (a request's image is the same alone or in a batch)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from apps.common.wire.contracts import FluxInput
from apps.common.wire.inference import InferenceRequest, InferenceResult
from apps.inference.engine import BatchItem
from apps.inference.pipelines.flux import FluxEngine
from apps.inference.pipelines.tiny import ensure_tiny_flux, tiny_flux_dir
from apps.inference.settings import InferenceSettings


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> FluxEngine:
    cache = tmp_path_factory.mktemp("models")
    return FluxEngine.load(InferenceSettings(model_cache_dir=cache, inference_device="cpu"))


def request(**fields: object) -> InferenceRequest:
    spec = {
        "prompt": "a red fox",
        "width": 128,
        "height": 64,
        "num_inference_steps": 3,
        "seed": 11,
        **fields,
    }
    return InferenceRequest(task_id=f"t-{fields}", input=FluxInput.model_validate(spec))


def never_stop(_step: int, _total: int) -> bool:
    return True


def run_one(engine: FluxEngine, req: InferenceRequest) -> InferenceResult:
    outcome = engine.run_batch([BatchItem(req, never_stop)])[0]
    assert isinstance(outcome, InferenceResult)
    return outcome


def pixels(data_b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_b64))), dtype=np.int16)


def test_builds_once_with_the_real_flux_layout(tmp_path: Path) -> None:
    built = ensure_tiny_flux(tmp_path)
    assert built == tiny_flux_dir(tmp_path)
    for part in (
        "transformer",
        "vae",
        "text_encoder",
        "text_encoder_2",
        "tokenizer",
        "tokenizer_2",
        "scheduler",
        "model_index.json",
    ):
        assert (built / part).exists(), part
    stamp = (built / "model_index.json").stat().st_mtime_ns
    assert ensure_tiny_flux(tmp_path) == built
    assert (built / "model_index.json").stat().st_mtime_ns == stamp


def test_same_seed_same_image_and_sizes_are_honoured(engine: FluxEngine) -> None:
    first = run_one(engine, request()).images[0]
    second = run_one(engine, request()).images[0]
    other = run_one(engine, request(seed=12)).images[0]
    assert first.data_b64 == second.data_b64
    assert first.data_b64 != other.data_b64
    image = Image.open(io.BytesIO(base64.b64decode(first.data_b64)))
    assert image.size == (128, 64) and image.format == "PNG"
    assert (first.width, first.height, first.seed) == (128, 64, 11)


def test_a_request_makes_the_same_image_alone_and_in_a_batch(engine: FluxEngine) -> None:
    alone = [
        run_one(engine, request(prompt=p, seed=s)).images[0]
        for p, s in (("a red fox", 1), ("a castle on a hill", 2), ("boats", 3))
    ]
    batch = engine.run_batch(
        [
            BatchItem(request(prompt=p, seed=s), never_stop)
            for p, s in (("a red fox", 1), ("a castle on a hill", 2), ("boats", 3))
        ]
    )
    for single, batched in zip(alone, batch, strict=True):
        assert isinstance(batched, InferenceResult) and batched.batch_size == 3
        # Same seed, same prompt: the same picture (batched kernels may round the last bit).
        diff = np.abs(pixels(single.data_b64) - pixels(batched.images[0].data_b64))
        assert diff.max() <= 1, diff.max()


def test_several_images_get_consecutive_seeds_and_format(engine: FluxEngine) -> None:
    result = run_one(engine, request(num_images=2, output_format="jpeg"))
    assert [i.seed for i in result.images] == [11, 12]
    assert all(i.content_type == "image/jpeg" for i in result.images)
    assert result.batch_size == 2 and result.compute_ms > 0


def test_every_step_is_reported_and_a_leaver_does_not_stop_the_others(
    engine: FluxEngine,
) -> None:
    seen: list[tuple[int, int]] = []

    def stays(step: int, total: int) -> bool:
        seen.append((step, total))
        return True

    leaver = request(prompt="leaves", seed=5, num_inference_steps=4)
    stayer = request(prompt="stays", seed=6, num_inference_steps=4)
    outcomes = engine.run_batch(
        [BatchItem(leaver, lambda step, _t: step < 2), BatchItem(stayer, stays)]
    )
    assert outcomes[0] is None
    assert isinstance(outcomes[1], InferenceResult)
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    # The survivor's image is the one it would have had alone.
    alone = run_one(engine, stayer).images[0]
    diff = np.abs(pixels(alone.data_b64) - pixels(outcomes[1].images[0].data_b64))
    assert diff.max() <= 1


def test_negative_prompts_run_true_cfg(engine: FluxEngine) -> None:
    plain = run_one(engine, request()).images[0]
    negative = run_one(engine, request(negative_prompt="blurry")).images[0]
    assert plain.data_b64 != negative.data_b64


def test_warm_up_and_device_check_pass_on_cpu(
    engine: FluxEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_run = engine._run
    outcomes: list[object] = []

    def recorded(items: list[BatchItem]) -> list[object]:
        outcomes.extend(real_run(items))
        return list(outcomes)

    monkeypatch.setattr(engine, "_run", recorded)
    engine.warm_up()
    # The warm-up is one real generation through the pipeline, not a no-op.
    assert len(outcomes) == 1, f"the warm-up generated {len(outcomes)} images, not 1"
    warm = outcomes[0]
    assert isinstance(warm, InferenceResult), warm
    [image] = warm.images
    assert (image.width, image.height) == (64, 64)
    assert Image.open(io.BytesIO(base64.b64decode(image.data_b64))).size == (64, 64)
    engine.check_device()  # the CPU computes right: no error
    # A device that computes wrong is refused (the readiness check's reason to exist).
    monkeypatch.setattr(torch, "ones", torch.zeros)
    with pytest.raises(RuntimeError, match="wrong result"):
        engine.check_device()


def test_a_batch_out_of_gpu_memory_is_split_before_anyone_fails(
    engine: FluxEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_run = engine._run
    sizes: list[int] = []

    def tight_memory(items: list[BatchItem]) -> list[object]:
        sizes.append(len(items))
        if len(items) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated: no GPU here)")
        return real_run(items)  # type: ignore[return-value]

    monkeypatch.setattr(engine, "_run", tight_memory)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    outcomes = engine.run_batch([BatchItem(request(seed=s), never_stop) for s in (1, 2, 3)])
    assert sizes == [3, 1, 2, 1, 1]
    assert all(isinstance(o, InferenceResult) for o in outcomes)
    assert [o.images[0].seed for o in outcomes] == [1, 2, 3]  # type: ignore[union-attr]


def img2img(
    strength: float, *, seed: int = 5, image: Image.Image | None = None
) -> InferenceRequest:
    picture = image or Image.new("RGB", (128, 64), (200, 30, 30))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return InferenceRequest(
        task_id=f"i2i-{strength}-{seed}",
        input=FluxInput(prompt="as ink", width=128, height=64, num_inference_steps=4, seed=seed),
        image_b64=base64.b64encode(buffer.getvalue()).decode(),
        strength=strength,
    )


def test_image_to_image_runs_the_tail_of_the_schedule(engine: FluxEngine) -> None:
    steps: list[tuple[int, int]] = []

    def record(step: int, total: int) -> bool:
        steps.append((step, total))
        return True

    outcome = engine.run_batch([BatchItem(img2img(0.5), record)])[0]
    assert isinstance(outcome, InferenceResult)
    # strength 0.5 of 4 steps: the last 2 run, and progress counts those.
    assert steps == [(1, 2), (2, 2)]
    assert (outcome.images[0].width, outcome.images[0].height) == (128, 64)


def test_image_to_image_depends_on_the_image_and_batches_alone(engine: FluxEngine) -> None:
    red = pixels(run_one(engine, img2img(0.3)).images[0].data_b64)
    again = pixels(run_one(engine, img2img(0.3)).images[0].data_b64)
    blue = pixels(
        run_one(engine, img2img(0.3, image=Image.new("RGB", (128, 64), (20, 40, 220))))
        .images[0]
        .data_b64
    )
    assert np.array_equal(red, again), "same image, seed and strength: same output"
    assert np.abs(red - blue).mean() > 1, "the start image shapes the output"
    text_only = request(width=128, height=64, num_inference_steps=4)
    assert engine.batch_key(img2img(0.3)) != engine.batch_key(text_only)
    assert engine.batch_key(img2img(0.3)) != engine.batch_key(img2img(0.6))


def test_image_and_strength_go_together() -> None:
    with pytest.raises(ValueError, match="together"):
        InferenceRequest(task_id="x", input=FluxInput(prompt="p"), strength=0.5)
