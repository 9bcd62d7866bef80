"""The pool of inference backends: their health, their load, and the choice of one per request.

A backend is usable when active checks passed (`healthy`) and no recent error ejected it. After an
ejection's back-off it is half-open: one request may probe it; success closes the breaker, failure
ejects it again for twice as long.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from prometheus_client import Counter, Gauge

from apps.balancer.affinity import Affinity
from apps.common.wire.inference import BackendLoad

EJECTIONS = Counter("fluxgate_balancer_ejections_total", "Backends ejected", ["backend", "reason"])
IN_FLIGHT = Gauge("fluxgate_balancer_in_flight", "Requests in flight", ["backend"])


class BackendState(StrEnum):
    STARTING = "starting"  # not checked yet
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"  # failed active checks
    EJECTED = "ejected"  # failed requests; waiting out its back-off
    HALF_OPEN = "half_open"  # back-off over; one probe request allowed


@dataclass
class Backend:
    url: str
    source: str = "static"
    healthy: bool = False
    was_healthy: bool = False
    check_failures: int = 0
    check_successes: int = 0
    ejected_until: float = 0.0
    eject_backoff_s: float = 0.0
    probing: bool = False
    in_flight: int = 0
    capacity: int = 1
    queued_seconds: float = 0.0
    models: list[str] = field(default_factory=list)
    # Registry models it serves, those in memory, adapters loaded (its /load, plus what the
    # requests sent since then will have loaded), and how long an adapter load takes there.
    serves: list[str] = field(default_factory=list)
    loaded_models: set[str] = field(default_factory=set)
    loaded_adapters: set[str] = field(default_factory=set)
    adapter_load_ms: float = 0.0
    served: int = 0
    failures: int = 0
    latency_ms: float = 0.0

    def state(self, now: float) -> BackendState:
        if self.ejected_until and now < self.ejected_until:
            return BackendState.EJECTED
        if not self.healthy:
            failed_before = self.was_healthy or self.check_failures
            return BackendState.UNHEALTHY if failed_before else BackendState.STARTING
        # Back-off over and the health checks pass: one request may find out if it works again.
        return BackendState.HALF_OPEN if self.ejected_until else BackendState.HEALTHY

    def describe(self, now: float) -> dict[str, object]:
        return {
            "url": self.url,
            "source": self.source,
            "state": self.state(now).value,
            "in_flight": self.in_flight,
            "capacity": self.capacity,
            "models": self.models,
            "serves": self.serves,
            "loaded_models": sorted(self.loaded_models),
            "loaded_adapters": sorted(self.loaded_adapters),
            "queued_seconds": self.queued_seconds,
            "latency_ms": round(self.latency_ms, 1),
            "served": self.served,
            "failures": self.failures,
        }


class BackendPool:
    def __init__(
        self,
        urls: Iterable[str] = (),
        *,
        policy: str = "least_outstanding",
        unhealthy_after: int = 2,
        healthy_after: int = 2,
        eject_base_s: float = 1.0,
        eject_max_s: float = 30.0,
        queue_factor: float = 2.0,
        affinity_batches: float | None = 2.0,
    ) -> None:
        self.backends: dict[str, Backend] = {}
        self._policy = policy
        self._unhealthy_after = unhealthy_after
        self._healthy_after = healthy_after
        self._eject_base_s = eject_base_s
        self._eject_max_s = eject_max_s
        self._queue_factor = queue_factor
        # What one model or adapter load a backend would need weighs, in batches of its work
        # (plus the load's own time); None: no affinity, plain least outstanding work.
        self._affinity_batches = affinity_batches
        self._round_robin = itertools.count()
        # Requests waiting for room (see `wait_for_change`), woken by anything that may make some.
        self._waiters: list[asyncio.Future[None]] = []
        # Requests inside `wait_for_change` now (the balancer's /demand counts them).
        self.waiting = 0
        # When each model last had a usable backend (monotonic); a model never seen counts from
        # the pool's creation, so a cold start is measured from the balancer's start.
        self._created = time.monotonic()
        self._last_ready: dict[str, float] = {}
        for url in urls:
            self.add(url)

    # --- membership ----------------------------------------------------------------------------

    def add(self, url: str, source: str = "static") -> Backend:
        if url not in self.backends:
            self.backends[url] = Backend(url=url, source=source)
        return self.backends[url]

    def sync_source(self, source: str, urls: set[str]) -> None:
        """Make the backends of one discovery source exactly `urls`; requests in flight on a
        removed backend finish on their own."""
        for url in urls:
            self.add(url, source)
        for url in [u for u, b in self.backends.items() if b.source == source and u not in urls]:
            del self.backends[url]
        self._changed()

    # --- waiting for room -----------------------------------------------------------------------

    async def wait_for_change(self, timeout_s: float) -> None:
        """Return when a backend may have room (a request ended, a backend became healthy or
        joined), or after `timeout_s`. The caller checks `choose` again either way."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        self.waiting += 1
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout=max(0.0, timeout_s))
        except TimeoutError:
            pass
        finally:
            self.waiting -= 1
            if future in self._waiters:
                self._waiters.remove(future)

    def _changed(self) -> None:
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)

    def unready_s(self, model: str, now: float | None = None) -> float:
        """How long `model` has had no usable backend (0 while it has one)."""
        now = time.monotonic() if now is None else now
        if self.usable(model, now):
            return 0.0
        return now - self._last_ready.get(model, self._created)

    # --- choice ---------------------------------------------------------------------------------

    def _limit(self, backend: Backend) -> int:
        return max(1, int(backend.capacity * self._queue_factor))

    def usable(
        self, model: str, now: float | None = None, affinity: Affinity | None = None
    ) -> list[Backend]:
        """Backends that may take a request for `model` (a task type) on `affinity`'s registry
        model now (half-open ones only for a probe)."""
        now = time.monotonic() if now is None else now
        found = []
        for backend in self.backends.values():
            state = backend.state(now)
            if backend.models and model not in backend.models:
                continue
            if affinity is not None and not affinity.served_by(backend.serves):
                continue
            if state is BackendState.HEALTHY or (
                state is BackendState.HALF_OPEN and not backend.probing
            ):
                found.append(backend)
        if found:
            self._last_ready[model] = now
        return found

    def choose(
        self, model: str, *, exclude: set[str] | None = None, affinity: Affinity | None = None
    ) -> Backend | None:
        """A backend with room for one more request, or None when all are full or unusable."""
        candidates = [
            b for b in self.usable(model, affinity=affinity) if not exclude or b.url not in exclude
        ]
        candidates = [b for b in candidates if b.in_flight < self._limit(b)]
        if not candidates:
            return None
        if self._policy == "round_robin":
            ordered = sorted(candidates, key=lambda b: b.url)
            return ordered[next(self._round_robin) % len(ordered)]
        # Least outstanding work: how many batches this request would wait for (the requests in
        # flight plus this one, per batch slot), times how long a batch has recently taken there
        # (an EWMA, in the spirit of Finagle's peak-EWMA). A backend five times slower gets work
        # only once the fast ones have five batches' worth queued.
        known = [b.latency_ms for b in candidates if b.latency_ms]
        default_ms = sum(known) / len(known) if known else 1.0
        cost = {
            b.url: math.ceil((b.in_flight + 1) / b.capacity) * (b.latency_ms or default_ms)
            + self._miss_ms(b, affinity, default_ms)
            for b in candidates
        }
        cheapest = min(cost.values())
        tied = [b for b in candidates if cost[b.url] == cheapest]
        if len(tied) == 1:
            return tied[0]
        if affinity is not None and self._affinity_batches is not None:
            return max(tied, key=lambda b: affinity.rank(b.url))
        # Power of two choices among equals: of two at random, the one with fewer in flight.
        first, second = random.sample(tied, 2)
        return first if first.in_flight <= second.in_flight else second

    def retry_after_s(self, model: str) -> int:
        """A fair wait for a client refused because every backend is full."""
        waits = [b.queued_seconds for b in self.usable(model)]
        return max(1, int(min(waits))) if waits else 1

    def _miss_ms(self, backend: Backend, affinity: Affinity | None, default_ms: float) -> float:
        """What sending `affinity`'s request to `backend` adds for what it must load first: per
        load, `affinity_batches` of its batches (the churn evicting another costs) plus the
        load's own time. Zero without affinity."""
        if affinity is None or self._affinity_batches is None:
            return 0.0
        model_miss, adapter_misses = affinity.misses(backend.loaded_models, backend.loaded_adapters)
        batch_ms = backend.latency_ms or default_ms
        per_load = self._affinity_batches * batch_ms
        # A model load takes far longer than an adapter's: count it as several.
        return model_miss * 4 * per_load + adapter_misses * (per_load + backend.adapter_load_ms)

    # --- request accounting ---------------------------------------------------------------------

    def acquire(self, backend: Backend, affinity: Affinity | None = None) -> None:
        backend.in_flight += 1
        if affinity is not None:
            # It loads them for this request: the next request may count on it before /load
            # says so (the next health check corrects what was evicted).
            if affinity.model:
                backend.loaded_models.add(affinity.model)
            backend.loaded_adapters |= affinity.adapters
        if backend.state(time.monotonic()) is BackendState.HALF_OPEN:
            backend.probing = True
        IN_FLIGHT.labels(backend.url).set(backend.in_flight)

    def release(
        self, backend: Backend, *, ok: bool, latency_ms: float | None = None, reason: str = "error"
    ) -> None:
        backend.in_flight -= 1
        IN_FLIGHT.labels(backend.url).set(backend.in_flight)
        self._changed()
        if ok:
            backend.served += 1
            if latency_ms is not None:
                backend.latency_ms = (
                    latency_ms
                    if not backend.latency_ms
                    else (0.8 * backend.latency_ms + 0.2 * latency_ms)
                )
            # Only the half-open probe closes the breaker: a request that started before the
            # ejection and ends well now says nothing about the backend's state since.
            if backend.probing:
                backend.ejected_until = 0.0
                backend.eject_backoff_s = 0.0
                backend.probing = False
        else:
            backend.failures += 1
            # Several requests in flight fail together: that is one ejection, not one each.
            if backend.probing or backend.ejected_until <= time.monotonic():
                self.eject(backend, reason)

    def eject(self, backend: Backend, reason: str) -> None:
        """Keep requests away from `backend` for a back-off that doubles while it keeps failing."""
        backend.probing = False
        backend.eject_backoff_s = min(
            self._eject_max_s, backend.eject_backoff_s * 2 or self._eject_base_s
        )
        backend.ejected_until = time.monotonic() + backend.eject_backoff_s
        EJECTIONS.labels(backend.url, reason).inc()

    # --- active health checks -------------------------------------------------------------------

    def check_passed(self, backend: Backend, load: BackendLoad) -> None:
        backend.capacity = max(1, load.capacity)
        backend.models = list(load.models)
        backend.serves = list(load.serves)
        backend.loaded_models = set(load.loaded_models)
        backend.loaded_adapters = set(load.loaded_adapters)
        backend.adapter_load_ms = load.adapter_load_s * 1000
        backend.queued_seconds = load.queued_seconds
        backend.check_failures = 0
        backend.check_successes += 1
        # A new backend joins on its first good check; a failed one must prove itself M times.
        if not backend.healthy and (
            not backend.was_healthy or backend.check_successes >= self._healthy_after
        ):
            backend.healthy = backend.was_healthy = True
            # Re-admitted after a real outage: start afresh rather than as a suspect.
            backend.ejected_until = backend.eject_backoff_s = 0.0
        now = time.monotonic()
        if backend.state(now) is BackendState.HEALTHY:
            for model in backend.models:
                self._last_ready[model] = now
        # Admitted, back-off over (half-open), or more capacity: waiting requests look again.
        self._changed()

    def check_failed(self, backend: Backend) -> None:
        backend.check_successes = 0
        backend.check_failures += 1
        if backend.healthy and backend.check_failures >= self._unhealthy_after:
            backend.healthy = False
            EJECTIONS.labels(backend.url, "health_check").inc()
