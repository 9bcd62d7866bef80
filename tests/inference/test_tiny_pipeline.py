"""The tiny offline FLUX pipeline: built locally, loaded through from_pretrained, deterministic."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from apps.common.contracts import FluxInput, InferenceRequest
from apps.inference.engine import GenerationCanceled
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
    return InferenceRequest(task_id="t", input=FluxInput.model_validate(spec))


def never_stop(_step: int, _total: int) -> bool:
    return True


def decode(data_b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data_b64)))


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
    first = engine.generate(request(), never_stop).images[0]
    second = engine.generate(request(), never_stop).images[0]
    other = engine.generate(request(seed=12), never_stop).images[0]
    assert first.data_b64 == second.data_b64
    assert first.data_b64 != other.data_b64
    image = decode(first.data_b64)
    assert image.size == (128, 64) and image.format == "PNG"
    assert (first.width, first.height, first.seed) == (128, 64, 11)


def test_several_images_get_consecutive_seeds_and_format(engine: FluxEngine) -> None:
    result = engine.generate(request(num_images=2, output_format="jpeg"), never_stop)
    assert [i.seed for i in result.images] == [11, 12]
    assert all(i.content_type == "image/jpeg" for i in result.images)
    assert decode(result.images[0].data_b64).format == "JPEG"
    assert result.compute_ms > 0


def test_every_step_is_reported_and_a_stop_cancels(engine: FluxEngine) -> None:
    seen: list[tuple[int, int]] = []

    def record(step: int, total: int) -> bool:
        seen.append((step, total))
        return True

    engine.generate(request(num_inference_steps=4), record)
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]

    with pytest.raises(GenerationCanceled):
        engine.generate(request(num_inference_steps=4), lambda step, _total: step < 2)


def test_the_device_check_passes_on_cpu(engine: FluxEngine) -> None:
    engine.check_device()
