"""The Engine protocols: what the schedulers need from a model, so pipelines can be swapped.

`Engine` runs whole batches (the window batcher); `StepEngine` also runs one denoising step at a
time over a changing set of rows (the continuous scheduler).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

from apps.common.wire.inference import InferenceError, InferenceRequest, InferenceResult


class RequestRefused(Exception):
    """A request this server cannot run as asked (its model is not served, an adapter file is
    missing or corrupt): it fails alone with `code`, and the server carries on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def error(self) -> InferenceError:
        return InferenceError(code=self.code, message=self.message)


class StepCallback(Protocol):
    """Called after each diffusion step with (steps done, total steps) and, when the item asked
    for one at this step, a preview image (WebP, base64). Returning False means the caller left:
    its rows leave the batch at this step and the others carry on."""

    def __call__(self, step: int, total: int, preview_b64: str | None = None, /) -> bool: ...


# What one request of a batch ends with; None when it left before the end.
ItemOutcome = InferenceResult | InferenceError | None


@dataclass
class BatchItem:
    request: InferenceRequest
    on_step: StepCallback
    # Asked before a step's callback: should this step's progress carry a preview? (None: never.)
    preview_due: Callable[[int, int], bool] | None = None
    # Its prompts already through the text encoders (`StepEngine.encode_prompts`), or None.
    encoded: object | None = None


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

    def holdings(self) -> dict[str, Any]:
        """The `BackendLoad` fields of models and adapters (`serves`, `loaded_models`, ...)."""


@dataclass
class Retired:
    """A request whose rows left a step group: `finish` makes its outcome (encoding the images
    of a finished one), so the scheduler can run it off the engine thread."""

    item: BatchItem
    finish: Callable[[], ItemOutcome]


class StepGroup(Protocol):
    """The running rows of one shape: each step is one model call over all of them, each row at
    its own point of its own schedule. Rows join and leave between steps."""

    @property
    def rows(self) -> int:
        """Image rows in the group now."""

    @property
    def last_call_s(self) -> float:
        """How long its last model call took (seconds): the unit of fair share between groups."""

    def admit(self, items: list[BatchItem]) -> list[Retired]:
        """Add requests (encode prompts, make their noise); those that cannot start come back."""

    def step(self) -> list[Retired]:
        """One denoising step of every row; requests that finished or left come back.
        Raises the device's out-of-memory error with the group unchanged."""

    def split(self) -> StepGroup:
        """Move the later half of the requests (at least one stays) to a new group."""

    def fail(self, error: InferenceError) -> list[Retired]:
        """Take every request out with `error` (the group is empty afterwards)."""


class StepEngine(Engine, Protocol):
    def shape_key(self, request: InferenceRequest) -> Hashable:
        """Requests with equal keys may share one model call at any point of their schedules."""

    def encode_prompts(self, requests: list[InferenceRequest]) -> list[object]:
        """Run the text encoders over the prompts of `requests` at once: one value per request,
        for `BatchItem.encoded` when it joins a group."""

    def open_group(self, request: InferenceRequest) -> StepGroup:
        """An empty step group for requests of `request`'s shape."""

    def is_out_of_memory(self, exc: BaseException) -> bool:
        """Whether `exc` says the device ran out of memory (worth splitting and retrying)."""
