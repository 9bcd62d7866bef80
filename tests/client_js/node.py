"""Where Node is, for the tests that run the TypeScript client: skipped without it, except in CI,
whose machines have Node 20+."""

from __future__ import annotations

import os
import shutil

import pytest


def node_or_skip() -> str:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            raise RuntimeError("node is missing: CI machines have Node 20+")
        pytest.skip("node is not installed: the TypeScript client needs Node 20+")
    return node
