"""Every command and snippet of README.md, the clients' READMEs and docs/*.md runs as written
against a real stack behind nginx, with real photos where the docs name image files; the blocks
that cannot run here are listed, with why, in snippets.toml (see there what a block may have
changed before it runs: addresses and the virtualenv's path only)."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from PIL import Image

from devtools.procs import ROOT, poll_until
from tests.client_js.node import node_or_skip
from tests.docs.conftest import DocsStack, write_photos
from tests.docs.snippets import Block, all_blocks, load_manifest, substitute

BLOCKS = all_blocks()
MANIFEST = load_manifest()
VENV_BIN = str(Path(sys.executable).parent)
BLOCK_TIMEOUT_S = 120
FINAL = {"succeeded", "failed", "canceled", "expired"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


def test_the_manifest_names_only_blocks_that_exist() -> None:
    present = {(block.file, block.id) for block in BLOCKS}
    listed = set(MANIFEST.skip) | set(MANIFEST.wrap_of)
    gone = sorted(f"{file}: {ident!r}" for file, ident in listed - present)
    assert not gone, "snippets.toml lists blocks that are no longer in the docs:\n" + "\n".join(
        gone
    )


def test_every_document_has_its_blocks_found() -> None:
    files = {block.file for block in BLOCKS}
    assert {"README.md", "clients/python/README.md", "clients/js/README.md"} <= files, files


def _script(block: Block, stack: DocsStack) -> str:
    addresses = {
        "localhost:8080": stack.front.removeprefix("http://"),
        "localhost:8000": stack.gateway.removeprefix("http://"),
        "localhost:8300": stack.notifier.removeprefix("http://"),
        "https://example.com": stack.photo_host,
    }
    text = block.text
    if block.language == "console" and "$ " in text:
        # A transcript: the commands are the lines after the prompt, the rest is their output.
        text = "".join(line[2:] + "\n" for line in text.splitlines() if line.startswith("$ "))
    code = substitute(text, addresses, VENV_BIN)
    wrap = MANIFEST.wrap_of.get((block.file, block.id))
    if wrap is None:
        return code
    before, after = MANIFEST.wraps[wrap]
    return before + code + after


def _json_objects(text: str) -> list[dict[str, object]]:
    """The JSON objects printed in `text`, also when several share a line (`curl -s` adds no
    newline after an answer)."""
    decoder = json.JSONDecoder()
    found: list[dict[str, object]] = []
    at = text.find("{")
    while at != -1:
        try:
            value, end = decoder.raw_decode(text, at)
        except ValueError:
            at = text.find("{", at + 1)
            continue
        if isinstance(value, dict):
            found.append(value)
        at = text.find("{", end)
    return found


def _refusals_and_tasks(stdout: str) -> tuple[list[str], list[str]]:
    """HTTP error status lines and JSON error answers a block printed, and the task ids it got."""
    refusals = [line for line in stdout.splitlines() if re.match(r"HTTP/[\d.]+ [45]\d\d", line)]
    tasks: list[str] = []
    for answer in _json_objects(stdout):
        if answer.get("error"):
            refusals.append(json.dumps(answer)[:300])
        if isinstance(answer.get("task_id"), str):
            tasks.append(str(answer["task_id"]))
    return refusals, tasks


# Tasks the blocks had accepted, checked once all blocks ran (the worker runs them meanwhile).
ACCEPTED: list[tuple[str, str]] = []


@pytest.mark.parametrize("block", BLOCKS, ids=[block.name for block in BLOCKS])
def test_block_runs_as_written(block: Block, docs_stack: DocsStack, tmp_path: Path) -> None:
    reason = MANIFEST.skip.get((block.file, block.id))
    if reason is not None:
        pytest.skip(f"listed in snippets.toml: {reason}")
    write_photos(docs_stack, tmp_path)
    before = set(tmp_path.iterdir())
    script = _script(block, docs_stack)
    if block.language == "python":
        (tmp_path / "snippet.py").write_text(script)
        args = [sys.executable, "snippet.py"]
    elif block.language == "js":
        args = [node_or_skip(), "snippet.mjs"]
        (tmp_path / "snippet.mjs").write_text(script)
        # `import ... from "@fluxgate/client"` finds the repository's client, as after an install.
        (tmp_path / "node_modules" / "@fluxgate").mkdir(parents=True)
        (tmp_path / "node_modules" / "@fluxgate" / "client").symlink_to(ROOT / "clients" / "js")
    else:
        args = ["bash", "-euo", "pipefail", "-c", script]
    env = {
        **docs_stack.env,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "FLUXGATE_URL": docs_stack.front,  # the client's default is localhost:8080
        "PYTHONPATH": str(ROOT),  # server-side commands run from the repository's root
    }
    try:
        done = subprocess.run(
            args,
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{block.name} ran past {BLOCK_TIMEOUT_S} s\n--- stdout ---\n{exc.stdout!r}")
    story = (
        f"{block.name}\n--- ran ---\n{script}\n--- stdout ---\n{done.stdout[-3000:]}\n"
        f"--- stderr ---\n{done.stderr[-3000:]}"
    )
    assert done.returncode == 0, f"exit {done.returncode}: {story}"
    refusals, tasks = _refusals_and_tasks(done.stdout)
    assert not refusals, f"the API refused: {refusals}\n{story}"
    ACCEPTED.extend((block.name, task_id) for task_id in tasks)
    for made in sorted(set(tmp_path.iterdir()) - before):
        if made.suffix.lower() in IMAGE_SUFFIXES:
            with Image.open(made) as image:
                image.verify()


def test_every_task_the_blocks_started_ends_well(docs_stack: DocsStack) -> None:
    """Accepted is not enough: what a block submitted succeeds (or was canceled by the block)."""

    def final(task_id: str) -> dict[str, object] | None:
        url = f"{docs_stack.gateway}/tasks/{task_id}"
        view: dict[str, object] = httpx.get(url, timeout=10).json()
        return view if view.get("status") in FINAL else None

    for name, task_id in ACCEPTED:
        view = poll_until(
            functools.partial(final, task_id),
            timeout=BLOCK_TIMEOUT_S,
            interval=0.2,
            what=f"{task_id} to end",
        )
        assert view["status"] in ("succeeded", "canceled"), f"{name}: task {task_id} {view}"
