"""The TypeScript client (clients/js): its strict build equals the committed dist/, and its Node
test suite (node --test, against dist/) passes against a real stack and an auth-on stack."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.procs import ROOT
from tests.client_js.node import node_or_skip
from tests.conftest import WEBHOOK_SECRET, Stack
from tests.gateway.auth_stack import ADMIN_TOKEN, AuthStack, start_auth_stack

CLIENT = ROOT / "clients" / "js"
NODE_TIMEOUT_S = 240


def _run(args: list[str], *, env: dict[str, str] | None = None, timeout: float) -> str:
    done = subprocess.run(
        args,
        cwd=CLIENT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = f"$ {' '.join(args)}\n{done.stdout[-12000:]}\n{done.stderr[-6000:]}"
    assert done.returncode == 0, output
    return output


def _node_test(files: list[str], env: dict[str, str]) -> None:
    node = node_or_skip()
    version = subprocess.check_output([node, "-p", "process.versions.node"], text=True)
    major = int(version.split(".")[0])
    # Node 22 has a global WebSocket; Node 20 has it behind a flag (without it the client would
    # follow tasks over server-sent events, which the suite tests on its own as well).
    flags = ["--experimental-websocket"] if major < 22 else []
    _run(
        [node, *flags, "--test", "--test-reporter=spec", *files],
        env=env,
        timeout=NODE_TIMEOUT_S,
    )


def test_the_strict_build_equals_the_committed_dist(tmp_path: Path) -> None:
    node = node_or_skip()
    if not (CLIENT / "node_modules" / "typescript").is_dir():
        npm = shutil.which("npm")
        assert npm is not None, "npm is missing: it installs typescript (clients/js/package.json)"
        _run([npm, "ci", "--no-audit", "--no-fund"], timeout=180)
    tsc = str(CLIENT / "node_modules" / "typescript" / "bin" / "tsc")
    # tsconfig.json is strict: any type error fails the build, and so this test.
    _run([node, tsc, "-p", "tsconfig.json", "--outDir", str(tmp_path)], timeout=120)
    built = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(
        str(p.relative_to(CLIENT / "dist")) for p in (CLIENT / "dist").rglob("*") if p.is_file()
    )
    assert built == committed, "dist/ has other files than a build: run `npm run build`"
    differ = [
        name
        for name in built
        if not filecmp.cmp(tmp_path / name, CLIENT / "dist" / name, shallow=False)
    ]
    assert not differ, f"dist/ is not what src/ builds to: {differ}; run `npm run build`"


def test_the_node_suite_passes_against_a_real_stack(stack: Stack) -> None:
    _node_test(
        ["test/stack.test.js"],
        {
            "FLUXGATE_TEST_URL": stack.gateway,
            "FLUXGATE_TEST_NOTIFIER_WS": stack.notifier_ws,
            "FLUXGATE_TEST_WEBHOOK_SECRET": WEBHOOK_SECRET,
        },
    )


@pytest.fixture(scope="module")
def auth_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthStack]:
    yield from start_auth_stack(tmp_path_factory.mktemp("js-auth"), relay_events=True)


def test_the_node_suite_passes_against_an_auth_on_stack(auth_stack: AuthStack) -> None:
    _node_test(
        ["test/auth.test.js"],
        {
            "FLUXGATE_TEST_AUTH_URL": auth_stack.gateway,
            "FLUXGATE_TEST_AUTH_NOTIFIER_WS": auth_stack.notifier_ws,
            "FLUXGATE_TEST_ADMIN_TOKEN": ADMIN_TOKEN,
        },
    )
