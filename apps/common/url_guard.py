"""SSRF guard for URLs Fluxgate calls on a client's behalf (webhooks, input images).

A URL is refused when its host is, or resolves to, an address that is not globally routable
(loopback, private, link-local incl. cloud metadata, multicast, unspecified, reserved, and their
IPv6 forms) unless `FLUXGATE_WEBHOOK_ALLOW` lets that host or network through.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# host -> its addresses; tests feed their own to pretend a name resolves somewhere.
Resolver = Callable[[str], list[str]]

_SHORTCUTS: dict[str, tuple[str, ...]] = {
    "loopback": ("127.0.0.0/8", "::1/128"),
    "private": ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"),
}


class UnsafeUrl(ValueError):
    """The URL may not be called: wrong scheme, no host, unresolvable or a refused address."""


def system_resolver(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]) for info in infos})


@dataclass(frozen=True)
class AllowList:
    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> AllowList:
        """Comma-separated host names, addresses, CIDR networks, `loopback` or `private`."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in spec.split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            for item in _SHORTCUTS.get(entry, (entry,)):
                try:
                    networks.append(ipaddress.ip_network(item, strict=False))
                except ValueError:
                    hosts.add(item)
        return cls(frozenset(hosts), tuple(networks))

    def permits(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


def _refusal(address: IPAddress) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for kind in ("loopback", "link_local", "multicast", "unspecified", "private", "reserved"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if address.is_global else "non-global"


def _resolve(host: str, resolver: Resolver) -> list[IPAddress]:
    try:
        resolved = resolver(host)
    except OSError as exc:
        raise UnsafeUrl(f"host {host} does not resolve") from exc
    if not resolved:
        raise UnsafeUrl(f"host {host} does not resolve")
    # A scoped IPv6 address ("fe80::1%eth0") keeps its scope out of the comparison.
    return [ipaddress.ip_address(address.split("%", 1)[0]) for address in resolved]


@dataclass(frozen=True)
class PinnedUrl:
    """A URL whose host was resolved and checked once, rewritten to that address, so the
    connection goes where the check looked (no second lookup a rebinding DNS could answer
    differently). `host` goes in the Host header and `sni` names the TLS server."""

    url: str
    host: str | None = None
    sni: str | None = None

    def request_kwargs(self) -> dict[str, Any]:
        """`headers` and `extensions` for an httpx request to `url`."""
        kwargs: dict[str, Any] = {}
        if self.host is not None:
            kwargs["headers"] = {"Host": self.host}
        if self.sni is not None:
            kwargs["extensions"] = {"sni_hostname": self.sni}
        return kwargs


def pin_url(url: str, allow: AllowList, resolver: Resolver = system_resolver) -> PinnedUrl:
    """Check `url` (as check_url) and pin it to the first checked address of its host."""
    addresses = _checked_addresses(url, allow, resolver)
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not addresses or _is_literal(host):
        return PinnedUrl(url)  # an address already, or a host the allow list names
    address = addresses[0]
    literal = f"[{address}]" if address.version == 6 else str(address)
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    host_header = host if parts.port is None else f"{host}:{parts.port}"
    return PinnedUrl(
        urlunsplit(parts._replace(netloc=netloc)),
        host=host_header,
        sni=host if parts.scheme == "https" else None,
    )


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_url(url: str, allow: AllowList, resolver: Resolver = system_resolver) -> None:
    """Raise UnsafeUrl unless `url` is http(s) and every address of its host may be called."""
    _checked_addresses(url, allow, resolver)


def _checked_addresses(url: str, allow: AllowList, resolver: Resolver) -> list[IPAddress]:
    """The host's addresses, all checked; empty for a host the allow list names."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl("must be an http or https URL")
    host = (parts.hostname or "").lower()
    if not host:
        raise UnsafeUrl("has no host")
    if host in allow.hosts:
        return []
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        addresses = _resolve(host, resolver)
    for address in addresses:
        kind = _refusal(address)
        if kind is not None and not allow.permits(address):
            raise UnsafeUrl(
                f"host {host} is a {kind} address ({address}); "
                "allow it with FLUXGATE_WEBHOOK_ALLOW if this is intended"
            )
    return addresses
