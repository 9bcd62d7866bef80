"""The backend pool's choice, health and ejection rules, and DNS discovery (resolver seam)."""

from __future__ import annotations

import time

import pytest

from apps.balancer.discovery import DnsDiscovery
from apps.balancer.pool import Backend, BackendPool, BackendState
from apps.common.contracts import BackendLoad


def load(
    capacity: int = 2, models: tuple[str, ...] = ("flux",), queued_s: float = 0.0
) -> BackendLoad:
    return BackendLoad(
        queued=0, running=0, capacity=capacity, queued_seconds=queued_s, models=list(models)
    )


def healthy_pool(*urls: str, **kwargs: object) -> BackendPool:
    pool = BackendPool(urls, **kwargs)  # type: ignore[arg-type]
    for backend in pool.backends.values():
        pool.check_passed(backend, load())
    return pool


def test_new_backends_wait_for_their_first_good_check() -> None:
    pool = BackendPool(["http://a"])
    assert pool.choose("flux") is None
    assert pool.backends["http://a"].state(time.monotonic()) is BackendState.STARTING
    pool.check_passed(pool.backends["http://a"], load())
    assert pool.choose("flux") is pool.backends["http://a"]


def test_least_outstanding_relative_to_capacity() -> None:
    pool = healthy_pool("http://a", "http://b")
    a, b = pool.backends["http://a"], pool.backends["http://b"]
    pool.check_passed(b, load(capacity=4))
    pool.acquire(a)
    pool.acquire(b)
    # a is at 1/2 of its capacity, b at 1/4: b is less loaded.
    assert pool.choose("flux") is b


def test_ties_are_broken_by_recent_latency() -> None:
    pool = healthy_pool("http://a", "http://b")
    pool.backends["http://a"].latency_ms = 500
    pool.backends["http://b"].latency_ms = 50
    assert {pool.choose("flux").url for _ in range(20)} == {"http://b"}  # type: ignore[union-attr]


def test_capacity_is_respected_and_models_filtered() -> None:
    pool = healthy_pool("http://a", queue_factor=1.0)
    a = pool.backends["http://a"]
    pool.acquire(a)
    pool.acquire(a)
    assert pool.choose("flux") is None, "full at capacity x queue factor"
    pool.release(a, ok=True)
    assert pool.choose("flux") is a
    assert pool.choose("sdxl") is None


def test_round_robin_ignores_load() -> None:
    pool = healthy_pool("http://a", "http://b", policy="round_robin")
    pool.acquire(pool.backends["http://a"])
    picks = [pool.choose("flux").url for _ in range(4)]  # type: ignore[union-attr]
    assert sorted(picks) == ["http://a", "http://a", "http://b", "http://b"]


def test_errors_eject_then_half_open_probe_readmits(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    pool = healthy_pool("http://a", eject_base_s=1.0, eject_max_s=8.0)
    a = pool.backends["http://a"]
    pool.acquire(a)
    pool.release(a, ok=False, reason="connect")
    assert a.state(now[0]) is BackendState.EJECTED and pool.choose("flux") is None
    now[0] += 1.1
    assert a.state(now[0]) is BackendState.HALF_OPEN
    probe = pool.choose("flux")
    assert probe is a
    pool.acquire(a)
    assert pool.choose("flux") is None, "one probe at a time"
    pool.release(a, ok=False)  # the probe failed: twice the back-off
    assert a.eject_backoff_s == 2.0
    now[0] += 2.1
    pool.acquire(a)
    pool.release(a, ok=True, latency_ms=30)
    assert a.state(now[0]) is BackendState.HEALTHY and a.eject_backoff_s == 0


def test_failed_checks_eject_and_successes_readmit() -> None:
    pool = healthy_pool("http://a", unhealthy_after=2, healthy_after=3)
    a = pool.backends["http://a"]
    pool.check_failed(a)
    assert a.healthy, "one failure is not enough"
    pool.check_failed(a)
    assert not a.healthy and a.state(time.monotonic()) is BackendState.UNHEALTHY
    for _ in range(2):
        pool.check_passed(a, load())
    assert not a.healthy, "needs three successes in a row"
    pool.check_passed(a, load())
    assert a.healthy


def test_dns_discovery_follows_the_record() -> None:
    answers = {"inference.fluxgate.svc": ["10.0.0.1", "10.0.0.2"]}
    pool = BackendPool(["http://static:8200"])
    discovery = DnsDiscovery(
        pool, ["inference.fluxgate.svc:8200"], interval_s=1, resolver=lambda host: answers[host]
    )
    discovery.refresh()
    assert set(pool.backends) == {
        "http://static:8200",
        "http://10.0.0.1:8200",
        "http://10.0.0.2:8200",
    }
    kept: Backend = pool.backends["http://10.0.0.2:8200"]
    answers["inference.fluxgate.svc"] = ["10.0.0.2", "10.0.0.3"]
    discovery.refresh()
    assert set(pool.backends) == {
        "http://static:8200",
        "http://10.0.0.2:8200",
        "http://10.0.0.3:8200",
    }
    assert pool.backends["http://10.0.0.2:8200"] is kept, "a kept backend keeps its state"

    def broken(_host: str) -> list[str]:
        raise OSError("SERVFAIL")

    DnsDiscovery(pool, ["inference.fluxgate.svc:8200"], interval_s=1, resolver=broken).refresh()
    assert len(pool.backends) == 3, "a failed lookup keeps the last known backends"
