"""Model and adapter affinity in the pool's choice: never a backend that does not serve the
model, a warm backend before a cold one unless the warm one is busier by more than a load is
worth, cold adapter sets concentrated on one backend, and plain least outstanding work when
affinity is off."""

from __future__ import annotations

from apps.balancer.affinity import Affinity
from apps.balancer.pool import BackendPool
from apps.common.wire.inference import BALANCER_ADAPTERS_HEADER, BALANCER_MODEL_HEADER, BackendLoad


def report(
    serves: tuple[str, ...] = ("default",),
    models: tuple[str, ...] = ("default",),
    adapters: tuple[str, ...] = (),
) -> BackendLoad:
    return BackendLoad(
        queued=0,
        running=0,
        capacity=1,
        queued_seconds=0,
        models=["flux"],
        serves=list(serves),
        loaded_models=list(models),
        loaded_adapters=list(adapters),
        adapter_load_s=0.05,
    )


def pool_of(reports: dict[str, BackendLoad], **kwargs: object) -> BackendPool:
    pool = BackendPool(list(reports), queue_factor=10.0, **kwargs)  # type: ignore[arg-type]
    for url, load in reports.items():
        pool.check_passed(pool.backends[url], load)
        pool.backends[url].latency_ms = 100
    return pool


def want(model: str = "default", *adapters: str) -> Affinity:
    return Affinity(model, frozenset(adapters))


def test_the_headers_name_the_model_and_adapters() -> None:
    headers = {BALANCER_MODEL_HEADER: "dev", BALANCER_ADAPTERS_HEADER: "ink, neon"}
    assert Affinity.of_headers(headers) == want("dev", "ink", "neon")
    assert Affinity.of_headers({}) == Affinity()


def test_a_model_never_goes_to_a_backend_that_does_not_serve_it() -> None:
    pool = pool_of(
        {"http://a": report(serves=("default",)), "http://b": report(serves=("default", "dev"))}
    )
    pool.acquire(pool.backends["http://b"])
    pool.acquire(pool.backends["http://b"])
    for _ in range(5):
        chosen = pool.choose("flux", affinity=want("dev"))
        assert chosen is not None and chosen.url == "http://b"
    assert pool.choose("flux", affinity=want("other")) is None
    assert [b.url for b in pool.usable("flux", affinity=want("dev"))] == ["http://b"]


def test_the_backend_holding_the_adapters_wins_until_it_is_busier_than_a_load_is_worth() -> None:
    pool = pool_of({"http://warm": report(adapters=("ink",)), "http://cold": report()})
    warm = pool.backends["http://warm"]
    ink = want("default", "ink")
    # A load weighs two batches (plus its time): the warm one takes it with up to two queued.
    for _ in range(2):
        assert pool.choose("flux", affinity=ink) is warm
        pool.acquire(warm)
    assert pool.choose("flux", affinity=ink) is warm
    pool.acquire(warm)
    chosen = pool.choose("flux", affinity=ink)
    assert chosen is not None and chosen.url == "http://cold"


def test_without_affinity_the_least_busy_backend_wins() -> None:
    pool = pool_of(
        {"http://warm": report(adapters=("ink",)), "http://cold": report()}, affinity_batches=None
    )
    pool.acquire(pool.backends["http://warm"])
    chosen = pool.choose("flux", affinity=want("default", "ink"))
    assert chosen is not None and chosen.url == "http://cold"


def test_a_cold_adapter_set_goes_to_one_backend_and_stays_there() -> None:
    urls = [f"http://b{i}" for i in range(4)]
    pool = pool_of({url: report() for url in urls})
    for name in ("ink", "neon", "grain"):
        # Cold everywhere and equal load: always the same one (every balancer replica too).
        picks = [pool.choose("flux", affinity=want("default", name)) for _ in range(20)]
        first = picks[0]
        assert first is not None and all(p is first for p in picks), f"{name} moved around"
        pool.acquire(first, want("default", name))
        pool.release(first, ok=True)
        # Equal load everywhere: the same backend again, now warm.
        for _ in range(3):
            assert pool.choose("flux", affinity=want("default", name)) is first
        assert name in first.loaded_adapters
