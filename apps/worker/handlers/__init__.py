"""Task handlers, one module per task type, found by the `TASK_TYPE` name each one declares.

A worker type's module defines `run(task_input, ctx) -> Output`: it does the work here, on the
CPU, reporting progress and stopping when asked. An inference type's module defines
`prepare(task_input, ctx) -> Prepared`: the request the balancer sends to a model server.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from PIL import Image

from apps.common.wire.contracts import FluxInput
from apps.common.wire.inference import InferenceRequest
from apps.worker.errors import JobFailed
from apps.worker.settings import WorkerSettings


@dataclass
class HandlerContext:
    task_id: str
    settings: WorkerSettings
    # Fraction of the work done, 0..1 (coalesced into progress events).
    progress: Callable[[float], None]
    # True once the job should stop: handlers check it between units of work.
    should_stop: Callable[[], bool]
    # An image field of the input, opened (raises InvalidImage).
    image: Callable[[str], Image.Image]


@dataclass
class OutputImage:
    image: Image.Image
    format: str = "png"
    seed: int | None = None


@dataclass
class Output:
    images: list[OutputImage] = field(default_factory=list)
    # Type-specific keys of the result, beside `images`; OutputImage values become image outputs.
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Prepared:
    """What an inference type sends to the balancer, and result keys to add to its images."""

    model: str
    request: InferenceRequest
    extra: dict[str, Any] = field(default_factory=dict)


def model_used(spec: FluxInput, default_model: str) -> dict[str, Any]:
    """The result keys that say which model and adapters made the images (a record leaves the
    default model out: `choice_at_default`)."""
    return {
        "model": spec.model or default_model,
        "loras": [lora.model_dump() for lora in spec.loras],
    }


def handler_module(task_type: str) -> ModuleType:
    """The handler module of a task type: `apps/worker/handlers/<type>.py`, imported on first use
    so a worker only loads what its jobs need (OpenCV, transformers, ...)."""
    if not task_type.isidentifier():
        raise KeyError(task_type)
    module = importlib.import_module(f"{__name__}.{task_type}")
    if getattr(module, "TASK_TYPE", None) != task_type:
        raise KeyError(f"{module.__name__} does not declare TASK_TYPE = {task_type!r}")
    return module


def handled_types() -> set[str]:
    """Every type with a handler module here (for the registry's completeness test)."""
    return {info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")}


def check_pixels(image: Image.Image, budget: int, *, field: str, times: int = 1) -> None:
    """Refuse work past a pixel budget before allocating it (`times`: the output's growth)."""
    pixels = image.width * image.height * times
    if pixels > budget:
        raise JobFailed(
            "image_too_large",
            f"input.{field} is {image.width}x{image.height}: this work needs {pixels:,} pixels, "
            f"over the limit of {budget:,}",
        )
