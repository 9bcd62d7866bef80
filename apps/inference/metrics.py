"""The inference server's Prometheus metrics, shared by both schedulers."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from apps.common.wire.inference import InferenceResult

# A pipeline call is a whole batch under the window batcher, one denoising step of one shape
# group under the continuous scheduler.
BATCH_IMAGES = Histogram(
    "fluxgate_inference_batch_images", "Images per pipeline call", buckets=(1, 2, 4, 8, 16, 32, 64)
)
BATCH_SECONDS = Histogram("fluxgate_inference_batch_seconds", "Wall time of one pipeline call")
STEP_SECONDS = Histogram(
    "fluxgate_inference_step_seconds",
    "Time between two denoising steps of a request (its batch's step time)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
PREVIEW_SECONDS = Histogram(
    "fluxgate_inference_preview_seconds",
    "Time to make the previews of one step (latents to RGB, WebP)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
)
IMAGES_MADE = Counter(
    "fluxgate_inference_images", "Images this server made and answered (by either scheduler)"
)


def count_answer(outcome: object) -> None:
    """Count the images of a result as it is answered (a step's rows are not images made)."""
    if isinstance(outcome, InferenceResult):
        IMAGES_MADE.inc(len(outcome.images))


ADAPTER_LOADS = Counter(
    "fluxgate_inference_adapter_requests",
    "LoRA adapters a request needed: already loaded (hit) or loaded for it (miss)",
    ["result"],
)
ADAPTER_LOAD_SECONDS = Histogram(
    "fluxgate_inference_adapter_load_seconds",
    "Time to load one LoRA adapter onto a model",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
MODEL_LOAD_SECONDS = Histogram(
    "fluxgate_inference_model_load_seconds",
    "Time to load one model's pipeline (start and later swaps)",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
