"""Live previews in the worker: the gate that keeps them to a few per second, storing one like an
output (under the task, apart from its outputs, swept with them), and a progress stream whose
lines carry previews becoming `progress` events with their URLs."""

from __future__ import annotations

import base64
import io
import os
import time
from pathlib import Path

import pytest
import redis
from celery.exceptions import SoftTimeLimitExceeded
from PIL import Image

from apps.common.jobs.record import new_job
from apps.common.storage.local import LocalOutputStore
from apps.common.storage.names import fixed_key
from apps.common.wire.contracts import EventKind, TaskEvent
from apps.common.wire.inference import InferenceImage, InferenceProgress, InferenceResult
from apps.worker.balancer_client import BalancerClient
from apps.worker.previews import ProgressGate, store_preview
from apps.worker.run_job import JobDeps, run_job
from tests.tasktypes.imagesrv import serving
from tests.worker.test_run_job import png, queued


def webp(size: tuple[int, int] = (32, 24)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (30, 90, 160)).save(buffer, format="WEBP")
    return buffer.getvalue()


def line(step: int, total: int = 8, preview: bytes | None = None) -> InferenceProgress:
    encoded = None if preview is None else base64.b64encode(preview).decode()
    return InferenceProgress(step=step, total=total, preview_b64=encoded)


@pytest.fixture
def outputs(tmp_path: Path) -> LocalOutputStore:
    return LocalOutputStore(
        tmp_path / "outputs", public_base="http://files.test", name_key=fixed_key("test-key")
    )


def test_the_gate_sends_previews_a_few_per_second_and_keeps_progress_to_its_interval() -> None:
    gate = ProgressGate(progress_interval_s=0.1, preview_interval_s=0.25)
    seen = [
        (at, gate.admit(at, has_preview=has_preview))
        for at, has_preview in [
            (0.00, True),  # the first preview goes out at once
            (0.05, False),  # inside the progress interval: dropped
            (0.10, True),  # progress is due, the preview is not: progress alone
            (0.15, True),  # neither is due
            (0.22, False),  # progress is due
            (0.26, True),  # only the preview is due: sent, inside the progress interval
            (0.30, True),  # neither is due
            (0.40, False),  # progress is due
        ]
    ]
    assert [(at, a.send, a.with_preview) for at, a in seen] == [
        (0.00, True, True),
        (0.05, False, False),
        (0.10, True, False),
        (0.15, False, False),
        (0.22, True, False),
        (0.26, True, True),
        (0.30, False, False),
        (0.40, True, False),
    ]


def test_a_preview_is_stored_under_its_task_apart_from_the_outputs(
    outputs: LocalOutputStore,
) -> None:
    data = webp()
    preview = store_preview("task-1", line(3, preview=data), outputs)
    assert preview is not None
    assert preview.model_dump(exclude={"url"}) == {
        "content_type": "image/webp",
        "step": 3,
        "total": 8,
        "width": 32,
        "height": 24,
    }
    assert preview.url.startswith("http://files.test/files/task-1/")
    assert preview.url.endswith(".webp")
    assert outputs.read_output(preview.url) == data
    # Never the name of an output, whatever its number; one object per step.
    output_url = outputs.put("task-1", 3, png(), extension="webp")
    assert output_url != preview.url
    assert outputs.read_output(preview.url) == data
    later = store_preview("task-1", line(4, preview=webp((16, 16))), outputs)
    assert later is not None and later.url != preview.url
    assert outputs.read_output(preview.url) == data


def test_what_is_not_a_small_image_is_dropped_and_never_stored(
    outputs: LocalOutputStore, tmp_path: Path
) -> None:
    assert store_preview("task-2", line(1, preview=b"not an image"), outputs) is None
    bmp = io.BytesIO()
    Image.new("RGB", (8, 8)).save(bmp, format="BMP")
    assert store_preview("task-2", line(1, preview=bmp.getvalue()), outputs) is None
    assert store_preview("task-2", line(1), outputs) is None
    assert not (tmp_path / "outputs").exists()


class FailingStore(LocalOutputStore):
    """A store whose writes fail with `error`."""

    def __init__(self, root: Path, error: BaseException) -> None:
        super().__init__(root, public_base="http://files.test", name_key=fixed_key("k"))
        self.error = error

    def put(self, task_id: str, index: int | str, data: bytes, *, extension: str) -> str:
        raise self.error


def test_a_store_that_fails_costs_the_preview_but_a_time_limit_still_ends_the_job(
    tmp_path: Path,
) -> None:
    full = FailingStore(tmp_path, OSError(28, "No space left on device"))
    assert store_preview("task-4", line(1, preview=webp()), full) is None
    out_of_time = FailingStore(tmp_path, SoftTimeLimitExceeded())
    with pytest.raises(SoftTimeLimitExceeded):
        store_preview("task-4", line(1, preview=webp()), out_of_time)


def test_previews_go_with_the_task_outputs_in_the_same_sweep(
    outputs: LocalOutputStore, tmp_path: Path
) -> None:
    preview = store_preview("task-3", line(2, preview=webp()), outputs)
    assert preview is not None
    outputs.put("task-3", 0, png(), extension="png")
    task_dir = tmp_path / "outputs" / "task-3"
    assert len(list(task_dir.iterdir())) == 2
    assert outputs.sweep(older_than_s=3600) == 0
    old = time.time() - 7200
    for path in task_dir.iterdir():
        os.utime(path, (old, old))
    assert outputs.sweep(older_than_s=3600) == 2
    with pytest.raises(FileNotFoundError):
        outputs.read_output(preview.url)


class Recorded:
    """Stands in for the event sender: keeps what the job reports, in order."""

    def __init__(self) -> None:
        self.events: list[TaskEvent] = []

    def send(self, event: TaskEvent) -> None:
        self.events.append(event)


def stream(*lines: InferenceProgress | InferenceResult) -> bytes:
    return b"".join(item.model_dump_json().encode() + b"\n" for item in lines)


def test_progress_lines_with_previews_become_progress_events_with_their_urls(
    client: redis.Redis, deps: JobDeps
) -> None:
    result = InferenceResult(
        images=[
            InferenceImage(
                content_type="image/png",
                width=64,
                height=48,
                seed=1,
                data_b64=base64.b64encode(png()).decode(),
            )
        ],
        compute_ms=5.0,
    )
    body = stream(
        line(0, 4),
        line(1, 4, preview=webp()),
        line(2, 4),
        line(3, 4, preview=webp((16, 8))),
        line(4, 4, preview=b"broken"),
        result,
    )
    recorded = Recorded()
    deps.events = recorded  # type: ignore[assignment]
    task_id = queued(
        client, new_job("flux", {"prompt": "a fox", "width": 64, "height": 64, "preview": True})
    )
    with serving({"/v1/infer/flux": (200, "application/x-ndjson", body)}) as balancer_url:
        deps.balancer.close()
        deps.balancer = BalancerClient(balancer_url, read_timeout_s=5)
        run_job(task_id, deps)
    progress = [e for e in recorded.events if e.event is EventKind.PROGRESS]
    # Step 0 is the server taking the job: `started`, not a progress event.
    assert [e.event for e in recorded.events[:2]] == [EventKind.STARTED, EventKind.PROGRESS]
    assert [e.progress for e in progress] == [25, 50, 75, 99]
    previews = [e.preview for e in progress]
    assert [p and (p.step, p.width, p.height) for p in previews] == [
        (1, 32, 24),
        None,
        (3, 16, 8),
        None,  # not an image: the event goes out without it, the job goes on
    ]
    for preview in previews:
        if preview is not None:
            assert Image.open(io.BytesIO(deps.outputs.read_output(preview.url))).format == "WEBP"
    assert recorded.events[-1].event is EventKind.SUCCEEDED
