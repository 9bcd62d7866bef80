from __future__ import annotations

import base64
import os
import secrets

import pytest
from pydantic import ValidationError

from apps.common.service.settings import DEV_INTERNAL_SECRET, DEV_WEBHOOK_SECRET, CommonSettings

STRONG_WEBHOOK = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
def prod(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A prod environment with strong secrets; each test weakens one thing."""
    monkeypatch.setenv("FLUXGATE_ENV", "prod")
    monkeypatch.setenv("FLUXGATE_AUTH", "true")
    monkeypatch.setenv("FLUXGATE_INTERNAL_SECRET", secrets.token_urlsafe(32))
    monkeypatch.setenv("FLUXGATE_WEBHOOK_SECRET", STRONG_WEBHOOK)
    monkeypatch.setenv("FLUXGATE_ADMIN_TOKEN", secrets.token_urlsafe(32))
    monkeypatch.delenv("FLUXGATE_WEBHOOK_ALLOW", raising=False)
    return monkeypatch


def test_prod_starts_with_strong_secrets(prod: pytest.MonkeyPatch) -> None:
    assert CommonSettings().env == "prod"
    # The checks refuse what is weak, not everything: the weakest secrets the rules allow pass
    # (32 characters with 10 distinct, a 24-byte random key, no admin token, a public host).
    prod.setenv("FLUXGATE_INTERNAL_SECRET", "abcdefghij" * 3 + "kl")
    prod.setenv("FLUXGATE_WEBHOOK_SECRET", "whsec_" + base64.b64encode(bytes(range(24))).decode())
    prod.setenv("FLUXGATE_ADMIN_TOKEN", "")
    prod.setenv("FLUXGATE_WEBHOOK_ALLOW", "hooks.example.com")
    assert CommonSettings().env == "prod"
    # A private receiver is allowed only with the loudly named switch.
    prod.setenv("FLUXGATE_WEBHOOK_ALLOW", "loopback")
    prod.setenv("FLUXGATE_UNSAFE_ALLOW_PRIVATE_TARGETS", "true")
    assert CommonSettings().unsafe_allow_private_targets


def test_dev_starts_with_no_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FLUXGATE_"):
            monkeypatch.delenv(name)
    settings = CommonSettings()
    assert settings.env == "dev" and not settings.auth
    assert settings.internal_secret == DEV_INTERNAL_SECRET


def test_prod_refuses_to_run_without_auth(prod: pytest.MonkeyPatch) -> None:
    prod.setenv("FLUXGATE_AUTH", "false")
    with pytest.raises(ValidationError, match="FLUXGATE_AUTH"):
        CommonSettings()


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("FLUXGATE_INTERNAL_SECRET", DEV_INTERNAL_SECRET, "development default"),
        ("FLUXGATE_INTERNAL_SECRET", "a" * 16, "at least 32"),
        ("FLUXGATE_INTERNAL_SECRET", "ab" * 20, "distinct characters"),
        ("FLUXGATE_INTERNAL_SECRET", DEV_INTERNAL_SECRET + "-2", "development default"),
        ("FLUXGATE_WEBHOOK_SECRET", DEV_WEBHOOK_SECRET, "development default"),
        ("FLUXGATE_WEBHOOK_SECRET", DEV_WEBHOOK_SECRET.removeprefix("whsec_"), "whsec_"),
        ("FLUXGATE_WEBHOOK_SECRET", "whsec_" + "not base64!" * 4, "base64"),
        ("FLUXGATE_WEBHOOK_SECRET", "whsec_" + base64.b64encode(b"x" * 32).decode(), "random"),
        ("FLUXGATE_ADMIN_TOKEN", "admin", "at least 32"),
        ("FLUXGATE_WEBHOOK_ALLOW", "loopback,private", "UNSAFE_ALLOW_PRIVATE_TARGETS"),
        ("FLUXGATE_WEBHOOK_ALLOW", "10.1.0.0/16", "UNSAFE_ALLOW_PRIVATE_TARGETS"),
    ],
)
def test_prod_refuses_weak_or_dev_settings(
    prod: pytest.MonkeyPatch, name: str, value: str, why: str
) -> None:
    prod.setenv(name, value)
    with pytest.raises(ValidationError, match=why) as raised:
        CommonSettings()
    assert name.removeprefix("FLUXGATE_") in str(raised.value)


def test_prod_opens_private_targets_only_when_told_loudly(prod: pytest.MonkeyPatch) -> None:
    prod.setenv("FLUXGATE_WEBHOOK_ALLOW", "receiver.internal,10.1.2.3")
    prod.setenv("FLUXGATE_UNSAFE_ALLOW_PRIVATE_TARGETS", "true")
    assert CommonSettings().webhook_allow == "receiver.internal,10.1.2.3"
    prod.setenv("FLUXGATE_WEBHOOK_ALLOW", "receiver.internal")  # one named host is fine
    prod.delenv("FLUXGATE_UNSAFE_ALLOW_PRIVATE_TARGETS")
    assert CommonSettings().webhook_allow == "receiver.internal"


def test_dev_runs_with_no_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FLUXGATE_ENV", "FLUXGATE_INTERNAL_SECRET", "FLUXGATE_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    settings = CommonSettings()
    assert settings.env == "dev"
    assert settings.internal_secret == DEV_INTERNAL_SECRET
