"""The pool of inference backends and the choice of one for each request."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class Backend:
    url: str
    in_flight: int = 0
    served: int = 0
    failures: int = 0


class BackendPool:
    """Backends from a static list; requests go to the one with the fewest in flight."""

    def __init__(self, urls: list[str]) -> None:
        self.backends = [Backend(url=url) for url in urls]

    def choose(self, *, exclude: set[str] | None = None) -> Backend | None:
        """The least-loaded backend not in `exclude` (ties broken at random), or None."""
        candidates = [b for b in self.backends if not exclude or b.url not in exclude]
        if not candidates:
            return None
        fewest = min(b.in_flight for b in candidates)
        return random.choice([b for b in candidates if b.in_flight == fewest])

    def acquire(self, backend: Backend) -> None:
        """Count a request against `backend` until `release`."""
        backend.in_flight += 1

    def release(self, backend: Backend) -> None:
        backend.in_flight -= 1
