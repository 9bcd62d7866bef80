"""The registry models an inference server holds in memory and the LoRA adapters loaded on each,
both least recently used first out (FLUXGATE_INFERENCE_MAX_MODELS, _MAX_ADAPTERS). A model or an
adapter that a live step group runs on is never evicted: past the limit, memory waits for it.

Adapters go through diffusers' PEFT integration (`load_lora_weights(adapter_name=)`,
`set_adapters`, `delete_adapters`). The weights the model runs with are global to its pipeline,
so before each model call the caller activates that call's adapter set (`activate`): requests
batch only with the same model and adapter set (it is part of the shape key), and each call runs
exactly the weights its requests would run alone. An adapter's file replaced under the same
name is loaded again for the next request once no running group uses the old weights.
"""

from __future__ import annotations

import gc
import hashlib
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from apps.common.model_registry import ModelRegistry, ModelSpec
from apps.common.service.logging import get_logger
from apps.common.wire.model_choice import LoraChoice
from apps.inference.engine import RequestRefused
from apps.inference.metrics import ADAPTER_LOAD_SECONDS, ADAPTER_LOADS, MODEL_LOAD_SECONDS

log = get_logger(__name__)

# An adapter set as the model runs it: sorted (name, scale) pairs.
AdapterKey = tuple[tuple[str, float], ...]


def peft_name(name: str) -> str:
    """The adapter's name inside PEFT: registry names may hold dots, PEFT's module keys not."""
    return "a" + hashlib.sha256(name.encode()).hexdigest()[:16]


# A file's modification time (ns) and size: a replaced adapter file has another.
FileVersion = tuple[int, int]


def file_version(path: Path) -> FileVersion | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


@dataclass
class LoadedModel:
    spec: ModelSpec
    pipe: Any
    # Anything the engine builds per model once (preview projection, schedules).
    extras: dict[str, Any] = field(default_factory=dict)
    # Loaded adapters by registry name, least recently used first, with the version of the file
    # each was loaded from.
    adapters: OrderedDict[str, FileVersion] = field(default_factory=OrderedDict)
    # The adapter set the pipeline runs with now (None: not set since loading).
    active: AdapterKey | None = None


@dataclass(eq=False)
class Binding:
    """What a step group runs on: its model and adapter set, pinned while the group (or a half
    split from it) lives, and how to set them on the pipeline before a call."""

    model_id: str
    adapters: AdapterKey
    activate: Callable[[], None]


class ModelShelf:
    """Loads, keeps and evicts models and adapters, on the engine thread (only the two
    `loaded_*` readers run elsewhere)."""

    def __init__(
        self,
        registry: ModelRegistry,
        served: list[str],
        load_pipe: Callable[[ModelSpec], Any],
        *,
        max_models: int,
        max_adapters: int,
    ) -> None:
        self.registry = registry
        self.served = served
        self._load_pipe = load_pipe
        self._max_models = max_models
        self._max_adapters = max_adapters
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._bindings: weakref.WeakSet[Binding] = weakref.WeakSet()
        self.adapter_load_s = 0.0

    # --- what is loaded ---------------------------------------------------------------------------

    # Read from the event loop (`/load`) while the engine thread changes them: each `list()` of a
    # dict is one step under the GIL, a Python loop over a live dict is not.

    def loaded_models(self) -> list[str]:
        return list(self._models)

    def loaded_adapters(self) -> list[str]:
        models = list(self._models.values())
        return sorted({name for model in models for name in list(model.adapters)})

    def bind(self, loaded: LoadedModel, adapters: AdapterKey) -> Binding:
        """A binding to `loaded` with `adapters`: they stay loaded while it lives."""
        binding = Binding(loaded.spec.id, adapters, lambda: self.activate(loaded, adapters))
        self._bindings.add(binding)
        return binding

    def _pinned(self, model_id: str) -> set[str]:
        return {
            name
            for binding in self._bindings
            if binding.model_id == model_id
            for name, _ in binding.adapters
        }

    # --- loading ----------------------------------------------------------------------------------

    def model(self, model_id: str | None) -> LoadedModel:
        """The model, loaded (evicting the least recently used unpinned one past the limit)."""
        wanted = model_id or self.registry.default
        if wanted not in self.served:
            raise RequestRefused("model_unavailable", f"model '{wanted}' is not served here")
        spec = self.registry.models[wanted]
        if spec.id in self._models:
            self._models.move_to_end(spec.id)
            return self._models[spec.id]
        self._evict_models(keep=self._max_models - 1)
        started = time.perf_counter()
        try:
            pipe = self._load_pipe(spec)
        except Exception as exc:
            log.exception("model failed to load", model=spec.id)
            raise RequestRefused(
                "model_unavailable", f"model '{spec.id}' failed to load: {exc}"
            ) from exc
        MODEL_LOAD_SECONDS.observe(time.perf_counter() - started)
        loaded = self._models[spec.id] = LoadedModel(spec, pipe)
        return loaded

    def _evict_models(self, keep: int) -> None:
        in_use = {binding.model_id for binding in self._bindings}
        evicted = False
        for model_id in list(self._models):
            if len(self._models) <= max(0, keep):
                break
            if model_id not in in_use:
                log.info("model evicted", model=model_id)
                del self._models[model_id]
                evicted = True
        if evicted:
            # Hand the evicted weights back before the next model loads into the same memory:
            # a pipeline's modules hold reference cycles, and CUDA's caching allocator keeps
            # freed blocks for this process until asked.
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def prepare(self, model_id: str | None, loras: list[LoraChoice]) -> LoadedModel:
        """The model with `loras` loaded on it (each load counted a miss, each loaded one a hit);
        `RequestRefused` when one is missing or cannot be loaded (a corrupt file)."""
        loaded = self.model(model_id)
        for lora in loras:
            if lora.name in loaded.adapters:
                if self._current(loaded, lora.name):
                    loaded.adapters.move_to_end(lora.name)
                    ADAPTER_LOADS.labels("hit").inc()
                    continue
                log.info("adapter file replaced: reloading", adapter=lora.name)
                self._forget(loaded, lora.name)
            ADAPTER_LOADS.labels("miss").inc()
            self._load_adapter(loaded, lora.name, keep={c.name for c in loras})
        return loaded

    def _current(self, loaded: LoadedModel, name: str) -> bool:
        """Whether loaded adapter `name` may serve a new request: its file is the one it was
        loaded from, or gone (the gateway refuses new jobs for it; accepted ones finish), or a
        running group still runs on it (PEFT holds one set of weights per name: the new file
        is loaded once that group ends)."""
        path = self.registry.adapter_path(name)
        version = None if path is None else file_version(path)
        return (
            version is None
            or version == loaded.adapters[name]
            or name in self._pinned(loaded.spec.id)
        )

    def _load_adapter(self, loaded: LoadedModel, name: str, keep: set[str]) -> None:
        path = self.registry.adapter_path(name)
        if path is None:
            raise RequestRefused("adapter_unavailable", f"adapter '{name}' is not available here")
        self._evict_adapters(loaded, room_for=1, keep=keep)
        # Read before the weights: a file replaced while they load is loaded again next time.
        version = file_version(path) or (0, 0)
        started = time.perf_counter()
        try:
            loaded.pipe.load_lora_weights(str(path), adapter_name=peft_name(name))
        except Exception as exc:
            self._forget(loaded, name)
            log.warning("adapter failed to load", adapter=name, error=repr(exc)[:300])
            raise RequestRefused(
                "adapter_invalid", f"adapter '{name}' could not be loaded: {exc}"[:500]
            ) from exc
        spent = time.perf_counter() - started
        ADAPTER_LOAD_SECONDS.observe(spent)
        average = self.adapter_load_s
        self.adapter_load_s = spent if not average else 0.8 * average + 0.2 * spent
        loaded.adapters[name] = version
        loaded.active = None  # loading may change what runs: set it again before the next call

    def _evict_adapters(self, loaded: LoadedModel, room_for: int, keep: set[str]) -> None:
        pinned = self._pinned(loaded.spec.id) | keep
        for name in list(loaded.adapters):
            if len(loaded.adapters) + room_for <= self._max_adapters:
                return
            if name not in pinned:
                log.info("adapter evicted", adapter=name, model=loaded.spec.id)
                self._forget(loaded, name)
        if len(loaded.adapters) + room_for > self._max_adapters:
            log.warning("every adapter loaded is in use: past the limit", model=loaded.spec.id)

    def _forget(self, loaded: LoadedModel, name: str) -> None:
        """Delete adapter `name` from the pipeline, if (even partly) there."""
        loaded.adapters.pop(name, None)
        loaded.active = None
        listed = loaded.pipe.get_list_adapters()
        if any(peft_name(name) in names for names in listed.values()):
            try:
                loaded.pipe.delete_adapters(peft_name(name))
            except Exception:  # a half-loaded adapter: nothing runs it, the next load may warn
                log.warning("adapter not deleted cleanly", adapter=name, exc_info=True)

    # --- running ----------------------------------------------------------------------------------

    @staticmethod
    def activate(loaded: LoadedModel, adapters: AdapterKey) -> None:
        """Make the pipeline run with exactly `adapters` (sorted: the same order every time)."""
        if loaded.active == adapters:
            return
        if adapters:
            loaded.pipe.enable_lora()
            loaded.pipe.set_adapters(
                [peft_name(name) for name, _ in adapters], [scale for _, scale in adapters]
            )
        elif loaded.adapters:
            loaded.pipe.disable_lora()
        loaded.active = adapters
