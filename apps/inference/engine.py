"""The Engine protocol: what the server needs from a model, so a pipeline can be swapped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from apps.common.contracts import InferenceRequest, InferenceResult

# Called after each diffusion step with (steps done, total steps); returning False stops the run.
StepCallback = Callable[[int, int], bool]


class GenerationCanceled(Exception):
    """The caller went away or asked to stop; the run was interrupted."""


class Engine(Protocol):
    models: list[str]

    def check_device(self) -> None:
        """Raise if the device can no longer run work (used by readiness checks)."""

    def generate(self, request: InferenceRequest, on_step: StepCallback) -> InferenceResult:
        """Run one request to the end, or raise GenerationCanceled when on_step says stop."""
