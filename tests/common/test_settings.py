from __future__ import annotations

import pytest
from pydantic import ValidationError

from apps.common.settings import CommonSettings


def test_prod_refuses_to_run_without_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUXGATE_ENV", "prod")
    monkeypatch.setenv("FLUXGATE_INTERNAL_SECRET", "x" * 32)
    monkeypatch.setenv("FLUXGATE_WEBHOOK_SECRET", "whsec_" + "y" * 32)
    with pytest.raises(ValidationError, match="FLUXGATE_AUTH"):
        CommonSettings()


def test_prod_refuses_the_dev_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUXGATE_ENV", "prod")
    monkeypatch.setenv("FLUXGATE_AUTH", "true")
    with pytest.raises(ValidationError, match="FLUXGATE_INTERNAL_SECRET"):
        CommonSettings()


def test_prod_starts_with_real_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUXGATE_ENV", "prod")
    monkeypatch.setenv("FLUXGATE_AUTH", "true")
    monkeypatch.setenv("FLUXGATE_INTERNAL_SECRET", "x" * 32)
    monkeypatch.setenv("FLUXGATE_WEBHOOK_SECRET", "whsec_" + "y" * 32)
    assert CommonSettings().env == "prod"


def test_dev_runs_with_no_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLUXGATE_ENV", raising=False)
    assert CommonSettings().redis_url.startswith("redis://")
