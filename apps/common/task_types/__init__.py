"""The task-type registry: one module per type in this package, each defining `TASK_TYPE`.

A type names its input model, the queue its jobs wait in, and where it runs: on an inference
server (`inference`: GPU, batched, reached through the balancer) or in the worker itself
(`worker`: CPU work). Adding a type is one module here plus its handler in the worker
(`apps/worker/handlers/<name>.py`); no route changes.

A type also prices its jobs: `task_type(name).cost(input, sizes)` is the one rule of what a job
costs, in megapixel-steps (`_cost.py`), known at submit.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from pydantic_core import PydanticUndefined

from apps.common.task_types._cost import COST_DECIMALS, MIN_COST, ImageSizes
from apps.common.wire.contracts import StrictModel
from apps.common.wire.queues import TASK_FLUX, TASK_JOB


@dataclass(frozen=True)
class TaskType:
    name: str
    description: str
    input_model: type[StrictModel]
    queue: Literal["gpu", "cpu"]
    runs_on: Literal["inference", "worker"]
    # What a job of this type costs, in megapixel-steps, from its validated input and the sizes
    # of its input images known at submit; `cost` applies the minimum and the rounding.
    cost_formula: Callable[[Any, ImageSizes], float]
    # The input fields a client can lower to make a job cheaper, the one to name first when no
    # default of theirs would help (`field_to_lower`).
    cost_fields: tuple[str, ...]
    # Input fields holding an image: an http(s) URL, base64 (or a data: URI), or a multipart file.
    image_fields: tuple[str, ...] = ()
    # A setting that must be non-empty for the type to be served (else 503 at submit).
    requires_setting: str | None = None
    # Extra keys of `result` beside `images`, for the docs and `GET /task-types`.
    result_keys: dict[str, str] = field(default_factory=dict)

    @property
    def celery_task(self) -> str:
        """The Celery task that runs this type's jobs (the worker dispatches on the type)."""
        return TASK_FLUX if self.name == "flux" else TASK_JOB

    def cost(self, task_input: StrictModel, sizes: ImageSizes) -> float:
        """What the job costs (megapixel-steps): never below `MIN_COST`, kept to 4 decimals."""
        return max(MIN_COST, round(self.cost_formula(task_input, sizes), COST_DECIMALS))

    def field_to_lower(self, task_input: StrictModel, sizes: ImageSizes) -> str:
        """The input field whose lowering helps a too costly job most: of `cost_fields`, the one
        whose default makes the job cheapest; the first of them when no default would help (all
        at or below it already, or an image, which has none)."""
        best, best_cost = self.cost_fields[0], self.cost(task_input, sizes)
        for name in self.cost_fields:
            default = self.input_model.model_fields[name].get_default(call_default_factory=True)
            if default is PydanticUndefined:
                continue
            cost = self.cost(task_input.model_copy(update={name: default}), sizes)
            if cost < best_cost:
                best, best_cost = name, cost
        return best

    def listing(self, *, available: bool) -> dict[str, Any]:
        return {
            "name": self.name,
            "queue": self.queue,
            "runs_on": self.runs_on,
            "description": self.description,
            "image_fields": list(self.image_fields),
            "result_keys": self.result_keys,
            "available": available,
            "input_schema": self.input_model.model_json_schema(),
        }


@lru_cache(maxsize=1)
def registry() -> dict[str, TaskType]:
    """Every task type, by name, found by importing this package's modules."""
    found: dict[str, TaskType] = {}
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        spec = getattr(module, "TASK_TYPE", None)
        if not isinstance(spec, TaskType):
            raise TypeError(f"{module.__name__} defines no TASK_TYPE")
        if spec.name in found:
            raise ValueError(f"task type {spec.name} is defined twice")
        found[spec.name] = spec
    return found


def task_type(name: str) -> TaskType:
    return registry()[name]


def job_task(name: str) -> tuple[str, str]:
    """The Celery task name and queue of a task type's jobs."""
    spec = task_type(name)
    return spec.celery_task, spec.queue
