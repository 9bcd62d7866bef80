from __future__ import annotations

import pytest

from apps.common.url_guard import AllowList, UnsafeUrl, check_url

PUBLIC = "93.184.216.34"


def resolver_to(*addresses: str):  # type: ignore[no-untyped-def]
    return lambda _host: list(addresses)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1/hook", "loopback"),
        ("http://10.0.0.1/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[::1]:8080/hook", "loopback"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://224.0.0.1/hook", "multicast"),
    ],
)
def test_literal_internal_addresses_are_refused(url: str, kind: str) -> None:
    with pytest.raises(UnsafeUrl, match=kind):
        check_url(url, AllowList(), resolver_to(PUBLIC))


def test_a_name_that_resolves_inside_is_refused() -> None:
    with pytest.raises(UnsafeUrl, match="private"):
        check_url("https://hooks.example.com/x", AllowList(), resolver_to(PUBLIC, "192.168.1.5"))


def test_public_names_and_addresses_pass() -> None:
    check_url("https://hooks.example.com/x", AllowList(), resolver_to(PUBLIC))
    check_url(f"http://{PUBLIC}:8080/x", AllowList(), resolver_to())


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "http:///x"])
def test_other_schemes_and_hostless_urls_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        check_url(url, AllowList(), resolver_to(PUBLIC))


def test_unresolvable_host_is_refused() -> None:
    def fails(_host: str) -> list[str]:
        raise OSError("no such host")

    with pytest.raises(UnsafeUrl, match="does not resolve"):
        check_url("https://nowhere.invalid/x", AllowList(), fails)


def test_allow_list_lets_chosen_hosts_and_networks_through() -> None:
    allow = AllowList.parse("loopback, 10.1.0.0/16, receiver.internal")
    check_url("http://127.0.0.1:9000/hook", allow, resolver_to())
    check_url("http://[::1]/hook", allow, resolver_to())
    check_url("http://10.1.2.3/hook", allow, resolver_to())
    check_url("http://receiver.internal/hook", allow, resolver_to("10.9.9.9"))
    with pytest.raises(UnsafeUrl):
        check_url("http://10.2.0.1/hook", allow, resolver_to())
