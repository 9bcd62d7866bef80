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
