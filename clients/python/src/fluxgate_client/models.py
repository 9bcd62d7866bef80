"""The job view and the submit answer, as plain frozen dataclasses over the server's JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled", "expired"})


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number_or_none(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _dict_or_none(value: object) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, Mapping) else None


@dataclass(frozen=True)
class TaskUrls:
    """Where a task can be read, canceled and followed, as the server announced them."""

    status: str
    cancel: str
    ws: str

    @classmethod
    def from_dict(cls, data: object) -> TaskUrls | None:
        if not isinstance(data, Mapping):
            return None
        return cls(
            status=str(data.get("status", "")),
            cancel=str(data.get("cancel", "")),
            ws=str(data.get("ws", "")),
        )


@dataclass(frozen=True)
class Preview:
    """A small image of a running job's current latents (asked for with `"preview": true`),
    taken at `step` of `total`; each preview has a URL of its own."""

    url: str
    content_type: str
    step: int
    total: int
    width: int
    height: int

    @classmethod
    def from_dict(cls, data: object) -> Preview | None:
        if not isinstance(data, Mapping) or not isinstance(data.get("url"), str):
            return None
        return cls(
            url=str(data["url"]),
            content_type=str(data.get("content_type", "")),
            step=_int_or_none(data.get("step")) or 0,
            total=_int_or_none(data.get("total")) or 0,
            width=_int_or_none(data.get("width")) or 0,
            height=_int_or_none(data.get("height")) or 0,
        )

    @property
    def extension(self) -> str:
        """The file extension its content type names (`webp`), for saving it."""
        kind = self.content_type.removeprefix("image/")
        return "jpg" if kind == "jpeg" else kind or "bin"


@dataclass(frozen=True)
class JobView:
    """One job as the server sees it: the same shape from status, WebSocket and webhooks.

    Fields the server adds later stay reachable through `raw`, so an older client keeps working.
    """

    task_id: str
    type: str
    status: str
    progress: int
    seq: int
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    queue_position: int | None
    # While queued: what the job waits for, e.g. `model_server` during a cold start.
    waiting_for: str | None
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    urls: TaskUrls | None
    timings: dict[str, Any]
    event: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)
    # What the job costs in megapixel-steps (one FLUX step of a 1-megapixel image); None from a
    # server that does not say.
    cost: float | None = None
    # While running, for a job that asked for previews: the latest one.
    preview: Preview | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobView:
        raw = dict(data)
        return cls(
            task_id=str(raw.get("task_id", "")),
            type=str(raw.get("type", "")),
            status=str(raw.get("status", "")),
            progress=_int_or_none(raw.get("progress")) or 0,
            # -1 sorts below any real view, so a view without a seq never hides a real one.
            seq=s if (s := _int_or_none(raw.get("seq"))) is not None else -1,
            created_at=raw.get("created_at"),
            started_at=raw.get("started_at"),
            finished_at=raw.get("finished_at"),
            queue_position=_int_or_none(raw.get("queue_position")),
            waiting_for=w if isinstance(w := raw.get("waiting_for"), str) else None,
            result=_dict_or_none(raw.get("result")),
            error=_dict_or_none(raw.get("error")),
            urls=TaskUrls.from_dict(raw.get("urls")),
            timings=_dict_or_none(raw.get("timings")) or {},
            event=raw.get("event"),
            raw=raw,
            cost=_number_or_none(raw.get("cost")),
            preview=Preview.from_dict(raw.get("preview")),
        )

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def images(self) -> list[dict[str, Any]]:
        images = (self.result or {}).get("images") or []
        return [dict(image) for image in images if isinstance(image, Mapping)]

    @property
    def error_code(self) -> str | None:
        code = (self.error or {}).get("code")
        return None if code is None else str(code)

    @property
    def error_message(self) -> str | None:
        message = (self.error or {}).get("message")
        return None if message is None else str(message)


@dataclass(frozen=True)
class Submitted:
    """The answer to a submit: the task is accepted (or was already, for a replayed key)."""

    task_id: str
    status: str
    urls: TaskUrls | None
    replayed: bool
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, replayed: bool) -> Submitted:
        raw = dict(data)
        return cls(
            task_id=str(raw.get("task_id", "")),
            status=str(raw.get("status", "")),
            urls=TaskUrls.from_dict(raw.get("urls")),
            replayed=replayed,
            raw=raw,
        )
