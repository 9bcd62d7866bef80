"""Fixtures of the gateway's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway.auth_stack import AuthStack, start_auth_stack


@pytest.fixture(scope="package")
def auth_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthStack]:
    """One auth-on stack for every test file of the package that asks for it."""
    yield from start_auth_stack(tmp_path_factory.mktemp("auth"))
