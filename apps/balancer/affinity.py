"""Model and adapter affinity: what a request needs loaded (from the worker's headers), what a
backend would have to load for it, and a stable order among equals so that requests for the same
adapters meet on the same backend even before it holds them."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from apps.common.wire.inference import BALANCER_ADAPTERS_HEADER, BALANCER_MODEL_HEADER

# The most adapter names a request's header may list (the registry allows far fewer).
MAX_HEADER_ADAPTERS = 16


@dataclass(frozen=True)
class Affinity:
    """A request's registry model and adapter names (empty model: a caller older than the
    registry, which runs the default: any backend)."""

    model: str = ""
    adapters: frozenset[str] = frozenset()

    @classmethod
    def of_headers(cls, headers: Mapping[str, str]) -> Affinity:
        names = headers.get(BALANCER_ADAPTERS_HEADER, "")
        adapters = [n.strip() for n in names.split(",") if n.strip()][:MAX_HEADER_ADAPTERS]
        return cls(headers.get(BALANCER_MODEL_HEADER, "").strip(), frozenset(adapters))

    def served_by(self, serves: list[str]) -> bool:
        """Whether a backend serving `serves` may take it (one that reports none predates the
        registry and serves the default model, which is what such a request runs on)."""
        return not self.model or not serves or self.model in serves

    def misses(self, loaded_models: set[str], loaded_adapters: set[str]) -> tuple[int, int]:
        """(1 if the model would have to be loaded, adapters that would have to be loaded)."""
        model_miss = int(
            bool(self.model) and bool(loaded_models) and self.model not in loaded_models
        )
        return model_miss, len(self.adapters - loaded_adapters)

    def rank(self, url: str) -> int:
        """Rendezvous hashing: among backends equal otherwise, each adapter set prefers its own
        (the same one from every balancer replica), so a cold set is loaded on one backend."""
        key = f"{self.model}|{','.join(sorted(self.adapters))}|{url}".encode()
        return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")
