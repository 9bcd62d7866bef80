"""The backend pool's choice, health and ejection rules, and DNS discovery (resolver seam)."""

from __future__ import annotations

import time

import pytest

from apps.balancer.discovery import DnsDiscovery
from apps.balancer.pool import Backend, BackendPool, BackendState
from apps.common.wire.inference import BackendLoad


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


def test_least_outstanding_counts_batches_not_requests() -> None:
    pool = healthy_pool("http://a", "http://b")
    a, b = pool.backends["http://a"], pool.backends["http://b"]
    pool.check_passed(b, load(capacity=4))
    a.latency_ms = b.latency_ms = 100
    for _ in range(3):
        pool.acquire(b)
    pool.acquire(a)
    pool.acquire(a)
    # b's fourth request still rides in its first batch; a's third would need a second one.
    assert pool.choose("flux") is b


def test_a_slower_backend_gets_work_only_when_the_fast_one_is_busier() -> None:
    pool = healthy_pool("http://fast", "http://slow", queue_factor=10.0)
    fast, slow = pool.backends["http://fast"], pool.backends["http://slow"]
    for backend in (fast, slow):
        pool.check_passed(backend, load(capacity=1))  # one per batch; room for all
    fast.latency_ms, slow.latency_ms = 100, 500
    for _ in range(4):
        assert pool.choose("flux") is fast
        pool.acquire(fast)
    # Now the fast one costs (4 + 1) x 100 ms, as much as the idle slow one's 1 x 500 ms.
    assert pool.choose("flux") is slow


def test_ties_are_spread_over_equal_backends() -> None:
    pool = healthy_pool("http://a", "http://b")
    assert {pool.choose("flux").url for _ in range(40)} == {"http://a", "http://b"}  # type: ignore[union-attr]


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
