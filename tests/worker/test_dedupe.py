"""The identical-job rule (`share_or_run`) in-process, on real Redis and a local output store; the
notifier is down, so the events it must not lose are applied to the records directly. The real
processes (two jobs in flight, a killed leader) are in tests/e2e/test_identical_jobs.py."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis

from apps.common.jobs.record import JobRecord, new_job
from apps.common.jobs.usage import compute_share_ms
from apps.common.jobs.view import job_view
from apps.common.redis import keys
from apps.common.wire.contracts import EventKind, ImageOutput, JobResult, TaskEvent, TaskStatus
from apps.worker.capacity import HandBack
from apps.worker.dedupe import IdenticalJobs, share_or_run
from apps.worker.run_job import JobDeps
from apps.worker.settings import WorkerSettings

PNG = b"\x89PNG\r\n\x1a\n not really, but bytes are bytes"


@pytest.fixture
def redis_db() -> int:
    return 5


@pytest.fixture
def worker_settings() -> WorkerSettings:
    return WorkerSettings(
        worker_event_retry_s=0,
        # A follower gives its slot back after this long.
        worker_capacity_slice_s=0.3,
    )


@pytest.fixture
def identical(client: redis.Redis) -> IdenticalJobs:
    return IdenticalJobs(client, claim_s=60, record_ttl_s=600)


def job(client: redis.Redis, fingerprint: str, *, cache: bool = False) -> JobRecord:
    """A queued FLUX job with an explicit seed, as the gateway leaves it."""
    record = new_job(
        "flux", {"prompt": "a fox", "seed": 5}, dedupe=fingerprint, cache=cache, owner=None
    )
    client.hset(keys.job_key(record.task_id), mapping=record.to_hash())  # type: ignore[arg-type]
    client.expire(keys.job_key(record.task_id), 600)
    return record


def ran_by_leader(deps: JobDeps, leader: JobRecord) -> JobResult:
    """`leader`'s result, its image stored and the result kept for identical jobs."""
    url = deps.outputs.put(leader.task_id, 0, PNG, extension="png")
    image = ImageOutput(url=url, content_type="image/png", width=64, height=64, seed=5)
    result = JobResult(images=[image], timings={"compute_ms": 900.0, "batch_size": 1}, prompt="p")
    assert leader.dedupe is not None and deps.identical is not None
    deps.identical.store_result(leader, leader.dedupe, result)
    deps.events.send(TaskEvent(task_id=leader.task_id, event=EventKind.SUCCEEDED, result=result))
    return result


def must_not_run() -> None:
    raise AssertionError("the job ran although a result answers it")


def stored(deps: JobDeps, record: JobRecord) -> JobRecord:
    current = deps.store.get(record.task_id)
    assert current is not None
    return current


def fingerprint() -> str:
    return f"fp-{uuid.uuid4().hex}"


def test_a_result_answers_the_jobs_in_flight_with_it_and_those_that_opt_in(
    client: redis.Redis, deps: JobDeps
) -> None:
    fp = fingerprint()
    in_flight = job(client, fp)
    leader = job(client, fp)
    result = ran_by_leader(deps, leader)
    opted_in = job(client, fp, cache=True)

    for answered in (in_flight, opted_in):
        share_or_run(answered, deps, must_not_run)
        record = stored(deps, answered)
        assert record.status is TaskStatus.SUCCEEDED and record.cached
        assert record.result is not None
        [image] = record.result.images
        # A copy under its own name, so it lives as long as this job's own record.
        assert image.url != result.images[0].url and answered.task_id in image.url
        assert deps.outputs.read_output(image.url) == PNG
        assert record.result.timings["compute_ms"] == 0
        assert record.result.model_extra == {"prompt": "p"}
        assert compute_share_ms(record) == 0
        assert job_view(record, public_base="", public_ws_base="").cached
    assert not stored(deps, leader).cached


def test_a_job_submitted_after_the_result_without_cache_runs_again(
    client: redis.Redis, deps: JobDeps
) -> None:
    fp = fingerprint()
    ran_by_leader(deps, job(client, fp))
    late = job(client, fp)
    claims: list[str | None] = []
    share_or_run(late, deps, lambda: claims.append(client.get(keys.dedupe_running_key(fp))))
    assert claims == [late.task_id], "it ran, holding the run"
    assert client.get(keys.dedupe_running_key(fp)) is None, "and let go when it ended"
    assert not stored(deps, late).cached


def test_a_waiting_job_runs_itself_when_the_running_one_ended_without_a_result(
    client: redis.Redis, deps: JobDeps
) -> None:
    fp = fingerprint()
    gone = job(client, fp)
    # Canceled while queued (the gateway does that without a worker): its claim is left behind.
    client.set(keys.dedupe_running_key(fp), gone.task_id)
    deps.events.send(TaskEvent(task_id=gone.task_id, event=EventKind.CANCELED))
    follower = job(client, fp)
    ran: list[bool] = []
    share_or_run(follower, deps, lambda: ran.append(True))
    assert ran == [True]


def test_a_waiting_job_gives_its_slot_back_after_a_slice(
    client: redis.Redis, deps: JobDeps
) -> None:
    fp = fingerprint()
    running = job(client, fp)
    client.set(keys.dedupe_running_key(fp), running.task_id)
    follower = job(client, fp)
    with pytest.raises(HandBack):
        share_or_run(follower, deps, must_not_run)
    assert stored(deps, follower).status is TaskStatus.QUEUED
    assert client.get(keys.dedupe_running_key(fp)) == running.task_id


def test_a_rerun_of_a_job_that_stored_its_result_reports_it(
    client: redis.Redis, deps: JobDeps
) -> None:
    fp = fingerprint()
    leader = job(client, fp)
    client.set(keys.dedupe_running_key(fp), leader.task_id)
    url = deps.outputs.put(leader.task_id, 0, PNG, extension="png")
    result = JobResult(images=[ImageOutput(url=url, content_type="image/png", width=1, height=1)])
    # Killed after its result was kept and before it reported it: its rerun reports it.
    assert deps.identical is not None
    deps.identical.store_result(leader, fp, result)
    share_or_run(leader, deps, must_not_run)
    record = stored(deps, leader)
    assert record.status is TaskStatus.SUCCEEDED and not record.cached
    assert record.result is not None and record.result.images[0].url == url


def test_a_claim_outlives_a_hand_back_and_nothing_else(client: redis.Redis, deps: JobDeps) -> None:
    fp = fingerprint()
    leader = job(client, fp)

    def wait_for_a_model_server() -> None:
        raise HandBack

    with pytest.raises(HandBack):
        share_or_run(leader, deps, wait_for_a_model_server)
    assert client.get(keys.dedupe_running_key(fp)) == leader.task_id, "still the one running it"

    def crash() -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        share_or_run(leader, deps, crash)
    assert client.get(keys.dedupe_running_key(fp)) is None


def test_a_result_whose_files_are_gone_answers_nobody(
    client: redis.Redis, deps: JobDeps, tmp_path: Path
) -> None:
    fp = fingerprint()
    follower = job(client, fp)
    leader = job(client, fp)
    ran_by_leader(deps, leader)
    for path in (tmp_path / "outputs" / leader.task_id).iterdir():
        path.unlink()  # swept
    ran: list[bool] = []
    share_or_run(follower, deps, lambda: ran.append(True))
    assert ran == [True] and not stored(deps, follower).cached
    assert not client.exists(keys.dedupe_done_key(fp)), "forgotten"
