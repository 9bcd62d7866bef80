"""Services stay apart: no service imports another, and only inference pulls in torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

APPS = Path(__file__).resolve().parent.parent / "apps"
SERVICES = ("gateway", "worker", "balancer", "inference", "notifier")


def test_light_services_start_without_torch() -> None:
    code = (
        "import sys, apps.gateway.main, apps.balancer.main, apps.notifier.main, apps.worker.tasks;"
        "heavy = sorted({'torch', 'diffusers', 'transformers'} & set(sys.modules));"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=APPS.parent, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_service_imports_another() -> None:
    offenders = []
    for service in SERVICES:
        for path in (APPS / service).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                for name in names:
                    parts = name.split(".")
                    if (
                        parts[0] == "apps"
                        and len(parts) > 1
                        and parts[1] not in (service, "common")
                    ):
                        offenders.append(f"{path.relative_to(APPS)} imports {name}")
    assert offenders == []


def _common_imports() -> dict[str, set[str]]:
    """Which folders of apps/common each folder (or top-level module) imports, lazily or not."""
    common = APPS / "common"
    edges: dict[str, set[str]] = {}
    for path in common.rglob("*.py"):
        source = path.relative_to(common).parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.module:
                continue
            parts = node.module.split(".")
            if parts[:2] != ["apps", "common"]:
                continue
            targets = [parts[2]] if len(parts) > 2 else [alias.name for alias in node.names]
            edges.setdefault(source, set()).update(t for t in targets if t != source)
    return edges


def test_common_imports_no_service() -> None:
    offenders = [
        f"{path.relative_to(APPS)} imports {node.module}"
        for path in (APPS / "common").rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom)
        and node.module
        and node.module.split(".")[:2] in (["apps", s] for s in SERVICES)
    ]
    assert offenders == []


def test_common_folders_form_no_import_circle() -> None:
    """A circle between the folders of apps/common means a rule sits on the wrong side."""
    edges = _common_imports()
    circles = []
    for start in edges:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in edges.get(node, ()):
                if nxt == start:
                    circles.append(" -> ".join([*path, nxt]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert circles == []
