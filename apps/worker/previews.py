"""Live previews of an inference job: which progress lines become events, and storing a line's
preview image like an output so that events carry its URL (never its bytes)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from celery.exceptions import SoftTimeLimitExceeded

from apps.common import images
from apps.common.service.logging import get_logger
from apps.common.storage.names import OutputStore, preview_index
from apps.common.wire.contracts import JobPreview, OutputFormat
from apps.common.wire.inference import InferenceProgress

log = get_logger(__name__)

# A preview is a small image of a few KB: anything far larger or not an image is not one.
MAX_PREVIEW_BYTES = 1 << 20
MAX_PREVIEW_PIXELS = 1024 * 1024


@dataclass(frozen=True)
class Admitted:
    """What to send for one progress line: an event or not, and with its preview or not."""

    send: bool
    with_preview: bool


@dataclass
class ProgressGate:
    """Coalesces one job's progress lines: at most one event per `progress_interval_s`, and a
    preview at most once per `preview_interval_s`. A line with a preview that its own gate lets
    through is sent even inside the progress interval: a model server sends previews only every
    few steps, and dropping that line would lose the preview until the next one."""

    progress_interval_s: float
    preview_interval_s: float
    _last_progress: float = field(default=-math.inf, init=False)
    _last_preview: float = field(default=-math.inf, init=False)

    def admit(self, now: float, *, has_preview: bool) -> Admitted:
        """Whether the line seen at `now` (monotonic seconds) is sent, and with its preview."""
        with_preview = has_preview and now - self._last_preview >= self.preview_interval_s
        send = with_preview or now - self._last_progress >= self.progress_interval_s
        if send:
            self._last_progress = now
        if with_preview:
            self._last_preview = now
        return Admitted(send=send, with_preview=with_preview)


def store_preview(task_id: str, line: InferenceProgress, outputs: OutputStore) -> JobPreview | None:
    """Store the preview `line` carries under the task, one object per step (a URL never shows
    another image than its event said); None, logged, for one that cannot be read or stored: a
    preview is best effort and never fails its job."""
    if line.preview_b64 is None:
        return None
    try:
        data = images.decode_base64(line.preview_b64, max_bytes=MAX_PREVIEW_BYTES)
        info = images.inspect(data, max_bytes=MAX_PREVIEW_BYTES, max_pixels=MAX_PREVIEW_PIXELS)
        fmt = OutputFormat(info.format.lower())  # ValueError for an image that is not an output's
    except ValueError as exc:
        log.warning("preview dropped: not a small image", task_id=task_id, error=str(exc))
        return None
    try:
        url = outputs.put(task_id, preview_index(line.step), data, extension=fmt.extension)
    except SoftTimeLimitExceeded:
        raise  # the job's time is up: that ends the job, wherever it was
    except Exception as exc:  # a store hiccup (disk full, S3 down) costs this preview only
        log.warning("preview dropped: not stored", task_id=task_id, error=repr(exc))
        return None
    return JobPreview(
        url=url,
        content_type=fmt.content_type,
        step=line.step,
        total=max(line.total, 1),
        width=info.width,
        height=info.height,
    )
