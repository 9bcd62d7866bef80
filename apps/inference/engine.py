"""The Engine protocol: what the batcher needs from a model, so pipelines can be swapped."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Protocol

from apps.common.wire.contracts import InferenceError, InferenceRequest, InferenceResult

# Called after each diffusion step with (steps done, total steps); returning False means the
# caller left: its rows leave the batch at this step and the others carry on.
StepCallback = Callable[[int, int], bool]

# What one request of a batch ends with; None when it left before the end.
ItemOutcome = InferenceResult | InferenceError | None


@dataclass
class BatchItem:
    request: InferenceRequest
    on_step: StepCallback


class Engine(Protocol):
    models: list[str]

    def batch_key(self, request: InferenceRequest) -> Hashable:
        """Requests with equal keys may run as one batch."""

    def cost(self, request: InferenceRequest) -> int:
        """How many rows of a batch the request takes (its number of images)."""

    def run_batch(self, items: list[BatchItem]) -> list[ItemOutcome]:
        """Run compatible requests as one batch; one outcome per item, in order."""

    def warm_up(self) -> None:
        """Run a small generation so the first real request does not pay for lazy set-up."""

    def check_device(self) -> None:
        """Raise if the device can no longer run work (used by readiness checks)."""
