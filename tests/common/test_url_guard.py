from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.common.security.url_guard import AllowList, UnsafeUrl, check_url, pin_url

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


def test_a_checked_url_is_pinned_to_the_address_that_was_checked() -> None:
    answers = iter([["93.184.216.34"], ["169.254.169.254"]])

    def rebinding(_host: str) -> list[str]:
        return next(answers)  # public for the check, metadata for any second lookup

    pinned = pin_url("https://images.example.com:8443/a.png?x=1", AllowList(), rebinding)
    assert pinned.url == "https://93.184.216.34:8443/a.png?x=1"
    assert pinned.request_kwargs() == {
        "headers": {"Host": "images.example.com:8443"},
        "extensions": {"sni_hostname": "images.example.com"},
    }
    plain = pin_url("http://[2606:4700::1]/x", AllowList())
    assert plain.url == "http://[2606:4700::1]/x" and plain.request_kwargs() == {}
    with pytest.raises(UnsafeUrl, match="link-local"):
        pin_url("http://meta.example/", AllowList(), lambda _h: ["169.254.169.254"])
    v6 = pin_url("http://v6.example/p", AllowList(), lambda _h: ["2606:4700::1"])
    assert v6.url == "http://[2606:4700::1]/p" and v6.host == "v6.example"


@pytest.mark.parametrize(
    ("url", "inner"),
    [
        ("http://[2002:7f00:1::]/", "127.0.0.1"),  # 6to4
        ("http://[2002:a9fe:a9fe::]/", "169.254.169.254"),  # 6to4 to cloud metadata
        ("http://[64:ff9b::7f00:1]/", "127.0.0.1"),  # NAT64, well-known prefix
        ("http://[64:ff9b:1::a00:1]/", "10.0.0.1"),  # NAT64, local-use prefix
        ("http://[::127.0.0.1]/", "127.0.0.1"),  # IPv4-compatible
        ("http://[::ffff:192.168.1.1]/", "192.168.1.1"),  # IPv4-mapped
        ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "127.0.0.1"),  # Teredo client
    ],
)
def test_ipv4_embedded_in_ipv6_is_checked_as_ipv4(url: str, inner: str) -> None:
    with pytest.raises(UnsafeUrl, match=inner.replace(".", r"\.")):
        check_url(url, AllowList())


def test_an_embedding_of_a_public_ipv4_passes() -> None:
    check_url("http://[2002:808:808::]/", AllowList())  # 6to4 of 8.8.8.8


@pytest.mark.parametrize(
    "url",
    [
        "http://[zz]/",
        "http://[::1",
        "http://example.com:99999/",
        "http://a..b/",
        "http://" + "a" * 64 + ".example/",
        "http://" + "a." * 150 + "example/",
        "http://exa\tmple.com/",
        "http://example.com/\r\nX-Injected: 1",
        "http://example.com/\x00",
    ],
)
def test_malformed_urls_are_refused_not_crashed_on(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        check_url(url, AllowList())


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80).map(lambda tail: "http://" + tail))
def test_any_text_is_checked_or_refused_never_raises_otherwise(url: str) -> None:
    with contextlib.suppress(UnsafeUrl):
        check_url(url, AllowList(), resolver=lambda _host: ["93.184.216.34"])
