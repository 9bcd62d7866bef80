"""DNS discovery: a headless Service name resolves to one address per inference pod."""

from __future__ import annotations

import asyncio

from apps.balancer.pool import BackendPool
from apps.common.security.url_guard import Resolver, system_resolver
from apps.common.service.logging import get_logger

log = get_logger(__name__)


def _url(address: str, port: str) -> str:
    return f"http://[{address}]:{port}" if ":" in address else f"http://{address}:{port}"


class DnsDiscovery:
    def __init__(
        self,
        pool: BackendPool,
        names: list[str],
        *,
        interval_s: float,
        resolver: Resolver = system_resolver,
    ) -> None:
        self._pool = pool
        self._names = names
        self._interval_s = interval_s
        self._resolver = resolver

    async def run_forever(self) -> None:
        while True:
            await asyncio.to_thread(self.refresh)
            await asyncio.sleep(self._interval_s)

    def refresh(self) -> None:
        """Resolve every name; its backends become exactly the addresses it has now."""
        for name in self._names:
            host, _, port = name.rpartition(":")
            try:
                addresses = self._resolver(host)
            except OSError as exc:
                # Keep what we had: a DNS hiccup must not empty the pool.
                log.warning("discovery lookup failed", name=name, error=repr(exc))
                continue
            urls = {_url(address, port) for address in addresses}
            before = {u for u, b in self._pool.backends.items() if b.source == f"dns:{name}"}
            self._pool.sync_source(f"dns:{name}", urls)
            if urls != before:
                log.info(
                    "discovered backends",
                    name=name,
                    added=sorted(urls - before),
                    removed=sorted(before - urls),
                )
