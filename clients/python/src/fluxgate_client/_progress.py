"""The CLI's live progress display: rich when installed, else a one-line text bar."""

from __future__ import annotations

from typing import Any, Protocol, TextIO

from fluxgate_client.models import JobView

MODES = ("auto", "rich", "text", "none")


class Progress(Protocol):
    def update(self, view: JobView) -> None: ...

    def close(self) -> None: ...


WAITING_FOR = {
    "model_server": "waiting for a model server to start",
    "capacity": "waiting for a free model server",
    "identical_job": "waiting for an identical request to finish",
}


def describe(view: JobView) -> str:
    if view.status == "queued" and view.waiting_for:
        return f"queued, {WAITING_FOR.get(view.waiting_for, 'waiting for ' + view.waiting_for)}"
    if view.status == "queued" and view.queue_position is not None:
        ahead = view.queue_position
        return "queued, next up" if ahead == 0 else f"queued, {ahead} ahead"
    return view.status


class NullProgress:
    def update(self, view: JobView) -> None:
        pass

    def close(self) -> None:
        pass


class TextProgress:
    """`[#######.......]  50% running`, redrawn in place with a carriage return."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self._stream = stream
        self._width = width
        self._drawn = 0

    def update(self, view: JobView) -> None:
        percent = max(0, min(100, view.progress))
        filled = round(self._width * percent / 100)
        line = f"[{'#' * filled}{'.' * (self._width - filled)}] {percent:3d}% {describe(view)}"
        # Pad over what a longer previous line left behind.
        self._stream.write("\r" + line.ljust(self._drawn))
        self._stream.flush()
        self._drawn = len(line)

    def close(self) -> None:
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = 0


class RichProgress:
    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import Progress as Bar

        self._bar = Bar(
            TextColumn("{task.description:<18}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=Console(file=stream),
        )
        self._task: Any = self._bar.add_task("submitted", total=100)
        self._bar.start()
        self._open = True

    def update(self, view: JobView) -> None:
        self._bar.update(self._task, completed=view.progress, description=describe(view))

    def close(self) -> None:
        if self._open:
            self._open = False
            self._bar.stop()


def _rich_available() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def make_progress(mode: str, stream: TextIO) -> Progress:
    """`auto`: a bar on a terminal (rich if installed), nothing when output is piped."""
    if mode == "auto":
        if not stream.isatty():
            return NullProgress()
        mode = "rich" if _rich_available() else "text"
    if mode == "rich" and _rich_available():
        return RichProgress(stream)
    if mode in ("rich", "text"):
        return TextProgress(stream)
    return NullProgress()
