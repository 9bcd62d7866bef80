"""The balancer holds a request that finds no backend with room, and says why it refuses one."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from apps.balancer.main import create_app
from apps.balancer.pool import BackendPool
from apps.balancer.proxy import Forwarder
from apps.balancer.settings import BalancerSettings
from apps.common.wire.inference import BALANCER_REFUSED_HEADER, BALANCER_UNREADY_HEADER, BackendLoad

LOAD = BackendLoad(queued=0, running=0, capacity=1, queued_seconds=0, models=["flux"])


def test_a_waiter_wakes_when_a_backend_is_admitted() -> None:
    async def scenario() -> tuple[bool, int]:
        pool = BackendPool(["http://a"])
        waiter = asyncio.create_task(pool.wait_for_change(30))
        await asyncio.sleep(0)
        during = pool.waiting
        pool.check_passed(pool.backends["http://a"], LOAD)
        await asyncio.wait_for(waiter, 5)
        return pool.choose("flux") is not None, during

    chosen, waiting = asyncio.run(scenario())
    assert chosen
    assert waiting == 1


def test_a_waiter_gives_up_after_its_timeout() -> None:
    async def scenario() -> int:
        pool = BackendPool(["http://a"])
        await pool.wait_for_change(0.05)
        return pool.waiting

    assert asyncio.run(scenario()) == 0


def test_unready_time_counts_from_the_last_ready_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("apps.balancer.pool.time.monotonic", lambda: clock[0])
    pool = BackendPool(["http://a"])
    clock[0] += 7
    assert pool.unready_s("flux") == pytest.approx(7)
    pool.check_passed(pool.backends["http://a"], LOAD)
    assert pool.unready_s("flux") == 0
    for _ in range(2):
        pool.check_failed(pool.backends["http://a"])
    clock[0] += 3
    assert pool.unready_s("flux") == pytest.approx(3)


def test_refusals_say_why_after_the_hold() -> None:
    async def scenario() -> tuple[httpx.Response, httpx.Response, float]:
        async with httpx.AsyncClient() as client:
            cold = Forwarder(BackendPool(["http://a"]), client, max_attempts=3)
            loop = asyncio.get_running_loop()
            started = loop.time()
            no_backend = await cold.forward("flux", b"{}", {}, wait_s=0.2)
            held = loop.time() - started
            full_pool = BackendPool(["http://b"])
            full_pool.check_passed(full_pool.backends["http://b"], LOAD)
            for _ in range(2):  # capacity 1 x queue factor 2
                full_pool.acquire(full_pool.backends["http://b"])
            full = await Forwarder(full_pool, client, max_attempts=3).forward("flux", b"{}", {})
            return no_backend, full, held  # type: ignore[return-value]

    no_backend, full, held = asyncio.run(scenario())
    assert held >= 0.2
    assert no_backend.status_code == 503
    assert no_backend.headers[BALANCER_REFUSED_HEADER] == "no_backend"
    assert float(no_backend.headers[BALANCER_UNREADY_HEADER]) > 0
    assert full.headers[BALANCER_REFUSED_HEADER] == "full"
    assert BALANCER_UNREADY_HEADER not in full.headers


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf"])
def test_a_bad_wait_header_is_a_422_naming_it(value: str) -> None:
    async def scenario() -> httpx.Response:
        app = create_app(BalancerSettings(balancer_backends=[]))
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://b") as client,
        ):
            return await client.post(
                "/v1/infer/flux", content=b"{}", headers={"x-fluxgate-wait-s": value}
            )

    answer = asyncio.run(scenario())
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "x-fluxgate-wait-s"


def test_a_failed_server_and_a_full_one_mean_wait_not_fail() -> None:
    async def scenario() -> httpx.Response:
        pool = BackendPool(["http://127.0.0.1:9", "http://b"])
        for backend in pool.backends.values():
            pool.check_passed(backend, LOAD)
        full = pool.backends["http://b"]
        for _ in range(2):
            pool.acquire(full)
        async with httpx.AsyncClient() as client:
            # The closed port fails at once; the full server is waited for, then refused as full.
            return await Forwarder(pool, client, max_attempts=3).forward(
                "flux", b"{}", {}, wait_s=0.2
            )

    answer = asyncio.run(scenario())
    assert answer.status_code == 503
    assert answer.headers[BALANCER_REFUSED_HEADER] == "full"


def test_every_server_failing_is_a_failure() -> None:
    async def scenario() -> httpx.Response:
        pool = BackendPool(["http://127.0.0.1:9"])
        pool.check_passed(pool.backends["http://127.0.0.1:9"], LOAD)
        async with httpx.AsyncClient() as client:
            return await Forwarder(pool, client, max_attempts=3).forward(
                "flux", b"{}", {}, wait_s=5
            )

    answer = asyncio.run(scenario())
    assert answer.headers[BALANCER_REFUSED_HEADER] == "failed"
