"""`run_job` in-process: real job store (Redis), a local output store, and the real event sender,
whose notifier is down so every event it must not lose is applied to the record directly."""

from __future__ import annotations

import io
import json

import pytest
import redis
from PIL import Image

from apps.common.jobs.record import CANCEL_BY_CLIENT, CANCEL_BY_DEADLINE, JobRecord, new_job
from apps.common.redis import keys
from apps.worker.balancer_client import BalancerClient
from apps.worker.handlers import HandlerContext, Output, face_detect
from apps.worker.imaging import checkpoint
from apps.worker.run_job import CancelWatch, JobDeps, progress_percent, run_job
from devtools.procs import free_port, poll_until
from tests.tasktypes.imagesrv import serving


def png(size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 120, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def submitted(client: redis.Redis, deps: JobDeps, image: bytes, **task_input: object) -> str:
    """A queued `face_detect` job whose image was uploaded, as the gateway leaves it."""
    record = new_job("face_detect", {"image": "placeholder", **task_input})
    record.input["image"] = deps.outputs.put_input(record.task_id, "image", image, extension="png")
    return queued(client, record)


def queued(client: redis.Redis, record: JobRecord) -> str:
    client.hset(keys.job_key(record.task_id), mapping=record.to_hash())  # type: ignore[arg-type]
    return record.task_id


def run(client: redis.Redis, deps: JobDeps, task_id: str) -> tuple[JobRecord, list[str]]:
    """Run the job; its record afterwards and the events published for it, in order."""
    pubsub = client.pubsub()
    pubsub.subscribe(keys.events_channel(task_id))
    poll_until(lambda: pubsub.get_message(timeout=0.1), timeout=5, what="the subscription")
    try:
        run_job(task_id, deps)
        record = deps.store.get(task_id)
        assert record is not None
        events: list[str] = []

        def all_in() -> bool:
            while (message := pubsub.get_message(timeout=0.1)) is not None:
                events.append(json.loads(message["data"])["event"])
            return record.seq == len(events)

        poll_until(all_in, timeout=5, what="every applied event to be published")
        return record, events
    finally:
        pubsub.close()


def test_a_worker_job_succeeds_and_stores_its_outputs(client: redis.Redis, deps: JobDeps) -> None:
    task_id = submitted(client, deps, png())
    record, events = run(client, deps, task_id)
    # Progress as the handler reports it (these deps coalesce nothing), between start and end.
    assert events[0] == "started" and events[-1] == "succeeded"
    assert set(events[1:-1]) <= {"progress"}
    assert record.status.value == "succeeded" and record.error is None
    assert record.result is not None
    assert record.result.model_extra == {"faces": []}  # a flat colour has none
    [annotated] = record.result.images
    assert (annotated.width, annotated.height) == (64, 48)
    stored = Image.open(io.BytesIO(deps.outputs.read_output(annotated.url)))
    assert stored.size == (64, 48)


def test_an_input_that_is_not_an_image_fails_naming_its_field(
    client: redis.Redis, deps: JobDeps
) -> None:
    task_id = submitted(client, deps, b"hello, not an image")
    record, events = run(client, deps, task_id)
    assert events == ["started", "failed"]
    assert record.error is not None
    assert record.error.code == "invalid_input_image"
    assert record.error.message.startswith("input.image: "), record.error.message


@pytest.mark.parametrize(
    ("task_type", "task_input", "code", "message"),
    [
        (
            "face_detect",
            {"image": "store://inputs/nothing/there.png"},
            "invalid_input_image",
            "input.image: the uploaded image is gone from the store",
        ),
        (
            "prompt_refine",
            {"prompt": "a fox", "method": "llm"},
            "model_not_configured",
            "method llm needs FLUXGATE_LLM_URL",
        ),
        (
            "prompt_refine",
            {"prompt": "a fox", "method": "llm"},
            "llm_unavailable",
            "the LLM failed 3 times, last: ConnectError",
        ),
        (
            "flux",
            {"prompt": "a fox", "width": 64, "height": 64},
            "pipeline_error",
            'inference refused the job: {"detail": "unsupported size"}',
        ),
    ],
    ids=["image_gone", "no_llm", "llm_down", "inference_refused"],
)
def test_a_failure_reaches_the_client_with_its_code_and_message(
    client: redis.Redis,
    deps: JobDeps,
    task_type: str,
    task_input: dict[str, object],
    code: str,
    message: str,
) -> None:
    if code == "llm_unavailable":
        dead = f"http://127.0.0.1:{free_port()}/v1"
        deps.settings = deps.settings.model_copy(update={"llm_url": dead})
    refusal = (400, "application/json", b'{"detail": "unsupported size"}')
    with serving({"/v1/infer/flux": refusal}) as balancer_url:
        deps.balancer.close()
        deps.balancer = BalancerClient(balancer_url, read_timeout_s=5)
        record, events = run(client, deps, queued(client, new_job(task_type, task_input)))
    assert events[-1] == "failed"
    assert record.error is not None
    assert record.error.code == code
    assert record.error.message.startswith(message), record.error.message


def test_a_job_canceled_before_it_runs_is_skipped(client: redis.Redis, deps: JobDeps) -> None:
    task_id = submitted(client, deps, png())
    client.set(keys.cancel_key(task_id), CANCEL_BY_CLIENT)
    record, events = run(client, deps, task_id)
    assert events == ["canceled"]
    assert record.status.value == "canceled" and record.error is None
    assert record.started_at is None and record.result is None


@pytest.mark.parametrize(
    ("reason", "code"), [(CANCEL_BY_CLIENT, None), (CANCEL_BY_DEADLINE, "deadline_exceeded")]
)
def test_a_job_stopped_midway_reports_canceled(
    client: redis.Redis,
    deps: JobDeps,
    monkeypatch: pytest.MonkeyPatch,
    reason: str,
    code: str | None,
) -> None:
    task_id = submitted(client, deps, png())

    def asked_to_stop_while_working(task_input: object, ctx: HandlerContext) -> Output:
        ctx.image("image")
        client.set(keys.cancel_key(task_id), reason)  # as the gateway's cancel (or the sweeper)
        checkpoint(ctx.should_stop)  # the imaging code's own check, raising `Stopped`
        raise AssertionError("should_stop() did not see the cancel")

    monkeypatch.setattr(face_detect, "run", asked_to_stop_while_working)
    record, events = run(client, deps, task_id)
    assert events == ["started", "canceled"]
    assert record.status.value == "canceled" and record.result is None
    assert (record.error.code if record.error else None) == code


def test_progress_percent_is_exact_for_steps_and_leaves_100_to_success() -> None:
    assert [progress_percent(step, 100) for step in (0, 29, 57, 99, 100)] == [0, 29, 57, 99, 99]
    assert progress_percent(1, 3) == 33 and progress_percent(3, 3) == 99
    # A handler's fraction of 1, as handlers report it.
    assert progress_percent(0.5) == 50 and progress_percent(1.0) == 99 and progress_percent(-1) == 0


def test_cancel_watch_asks_at_most_every_poll_interval_and_keeps_a_reason(
    client: redis.Redis, deps: JobDeps
) -> None:
    task_id = queued(client, new_job("face_detect", {"image": "placeholder"}))
    asked: list[str] = []
    real = deps.store.cancel_reason

    def counting(task: str) -> str | None:
        asked.append(task)
        return real(task)

    deps.store.cancel_reason = counting  # type: ignore[method-assign,assignment]
    try:
        watch = CancelWatch(deps.store, task_id)
        assert watch.reason() is None
        assert watch.reason() is None  # within the interval: Redis is not asked again
        assert asked == [task_id]
        client.set(keys.cancel_key(task_id), CANCEL_BY_CLIENT)
        poll_until(lambda: watch.reason() == CANCEL_BY_CLIENT, timeout=5, what="the cancel")
        seen = len(asked)
        assert watch.reason() == CANCEL_BY_CLIENT and len(asked) == seen  # kept
    finally:
        del deps.store.cancel_reason
