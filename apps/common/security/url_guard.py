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
from urllib.parse import SplitResult, urlsplit, urlunsplit

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


# IPv6 ranges that carry an IPv4 address a gateway or tunnel will reach: NAT64 (well-known and
# local-use prefixes, RFC 6052 / 8215) and IPv4-compatible addresses (::a.b.c.d, deprecated).
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 address leads to: mapped, 6to4, Teredo, NAT64, compatible."""
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if any(address in net for net in _NAT64) or (address in _IPV4_COMPATIBLE and int(address) > 1):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _refusal(address: IPAddress) -> str | None:
    """Why `address` may not be called (`loopback`, ...), or None."""
    if isinstance(address, ipaddress.IPv6Address):
        for inner in _embedded_ipv4(address):
            if (kind := _refusal(inner)) is not None:
                return f"{kind} (IPv4 {inner} inside)"
    for kind in ("loopback", "link_local", "multicast", "unspecified", "private", "reserved"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if address.is_global else "non-global"


def _resolve(host: str, resolver: Resolver) -> list[IPAddress]:
    try:
        resolved = resolver(host)
    except (OSError, UnicodeError, ValueError) as exc:
        # UnicodeError: IDNA cannot encode the name (a label over 63 characters, an empty one).
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
    parts = _split(url)
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


def _split(url: str) -> SplitResult:
    """The URL's parts; UnsafeUrl for anything a client could send that is not a clean URL."""
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        # urlsplit would silently drop tabs and line breaks; never call what was not written.
        raise UnsafeUrl("contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parses the port: "http://h:99999/" raises here
        hostname = parts.hostname
    except ValueError as exc:  # "http://[zz]/", "http://[::1", a port out of range
        raise UnsafeUrl(f"is not a valid URL ({exc})") from None
    if hostname is not None and (len(hostname) > 253 or ".." in hostname):
        raise UnsafeUrl("has an invalid host name")
    return parts


def _checked_addresses(url: str, allow: AllowList, resolver: Resolver) -> list[IPAddress]:
    """The host's addresses, all checked; empty for a host the allow list names."""
    parts = _split(url)
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
                f"host {host} is a refused address ({address}: {kind}); "
                "allow it with FLUXGATE_WEBHOOK_ALLOW if this is intended"
            )
    return addresses
