"""The official `openai` npm package, unchanged, against the same front door (node:test)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.openai.conftest import OpenAIDoor

PROJECT = Path(__file__).parent / "node"


@pytest.fixture(scope="module")
def node_project() -> Path:
    """The test's package, installed from its lock file with `npm ci` (node_modules is ignored
    by git)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js is not installed: the JS SDK's test needs node and npm")
    installed = PROJECT / "node_modules" / "openai" / "package.json"
    lock = PROJECT / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return PROJECT


def test_the_openai_npm_package_works_unchanged(
    door: OpenAIDoor, key: str, node_project: Path
) -> None:
    env = {
        **os.environ,
        "FLUXGATE_OPENAI_BASE_URL": door.base_url,
        "FLUXGATE_OPENAI_KEY": key,
    }
    done = subprocess.run(
        ["node", "--test"], cwd=node_project, env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "# pass 6" in done.stdout, done.stdout[-3000:]
