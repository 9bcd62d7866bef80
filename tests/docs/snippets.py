"""The runnable code blocks of the documentation: extraction, ids, the manifest of those not run
here, and the address substitution that points a block at a test stack."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from devtools.procs import ROOT

# The documents whose blocks must run as written (paths relative to the repository root).
DOCUMENTS = ("README.md", "clients/python/README.md", "clients/js/README.md", "docs/*.md")
# `js` blocks run with node, importing the TypeScript client as `@fluxgate/client`.
RUN_LANGUAGES = frozenset({"bash", "sh", "shell", "console", "python", "js"})
MANIFEST = Path(__file__).with_name("snippets.toml")

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    file: str  # relative to the repository root
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    id: str  # the first line, its trailing comment and extra spaces removed; unique in its file

    @property
    def name(self) -> str:
        return f"{self.file}:{self.line} [{self.id}]"


def documents() -> list[str]:
    found: list[str] = []
    for pattern in DOCUMENTS:
        found += sorted(str(p.relative_to(ROOT)) for p in ROOT.glob(pattern))
    return found


def block_id(text: str) -> str:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not first.startswith("#"):
        first = re.sub(r"\s+#\s.*$", "", first)
    return re.sub(r"\s+", " ", first)


def blocks_of(file: str) -> list[Block]:
    """Every fenced block of `file` tagged with a language we run."""
    lines = (ROOT / file).read_text().splitlines()
    found: list[Block] = []
    seen: dict[str, int] = {}
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        language = opening["info"].strip().split(" ")[0].lower()
        body: list[str] = []
        end = index + 1
        while end < len(lines) and lines[end].strip() != fence:
            body.append(lines[end][indent:] if lines[end][:indent].isspace() else lines[end])
            end += 1
        if language in RUN_LANGUAGES:
            text = "\n".join(body) + "\n"
            ident = block_id(text)
            seen[ident] = seen.get(ident, 0) + 1
            if seen[ident] > 1:
                ident = f"{ident} ({seen[ident]})"
            found.append(Block(file, index + 1, language, text, ident))
        index = end + 1
    return found


def all_blocks() -> list[Block]:
    return [block for file in documents() for block in blocks_of(file)]


@dataclass(frozen=True)
class Manifest:
    skip: dict[tuple[str, str], str]  # (file, id) -> why it is not run here
    wraps: dict[str, tuple[str, str]]  # name -> (code before, code after)
    wrap_of: dict[tuple[str, str], str]  # (file, id) -> wrap name


def load_manifest() -> Manifest:
    data = tomllib.loads(MANIFEST.read_text())
    skip = {(file, ident): why for file, ids in data["skip"].items() for ident, why in ids.items()}
    wraps = {name: (w.get("before", ""), w.get("after", "")) for name, w in data["wrap"].items()}
    wrap_of = {
        (file, ident): name
        for name, w in data["wrap"].items()
        for file, ids in w["blocks"].items()
        for ident in ids
    }
    return Manifest(skip, wraps, wrap_of)


def substitute(text: str, addresses: dict[str, str], venv_bin: str) -> str:
    """Point a block at the test stack: only the addresses (`addresses`: the documented one ->
    the stack's) and `.venv/bin/` (-> the virtualenv's absolute path) change."""
    for documented in sorted(addresses, key=len, reverse=True):
        text = re.sub(rf"(?<![\w.-]){re.escape(documented)}", addresses[documented], text)
    return re.sub(r"(?<![\w/.])\.venv/bin/", f"{venv_bin}/", text)
