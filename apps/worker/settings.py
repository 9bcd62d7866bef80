"""Settings of the Celery worker (`FLUXGATE_WORKER_*`, service URLs)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from apps.common.service.settings import CommaFloats, CommonSettings


class WorkerSettings(CommonSettings):
    balancer_url: str = "http://127.0.0.1:8100"
    worker_concurrency: int = Field(default=4, ge=1)
    # `/metrics` of the worker (all pool processes, plus queue depths); port 0 turns it off.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = Field(default=9808, ge=0, le=65535)
    # A job past the soft limit fails with `timeout`; the hard limit kills a stuck process.
    job_soft_time_limit_s: int = Field(default=540, ge=1)
    job_time_limit_s: int = Field(default=600, ge=2)
    # Retries when an inference request fails (a stream that breaks, a server that errors), with
    # exponential backoff and jitter. Finding no model server ready, or all of them busy, is not
    # a failure: the job waits (below) and spends none of these.
    worker_max_retries: int = Field(default=5, ge=0)
    worker_retry_backoff_s: float = Field(default=2.0, gt=0)
    # A job whose worker process died this many times while running it (out of memory, killed)
    # fails with `worker_crashed` instead of being delivered again and again.
    worker_max_crashes: int = Field(default=3, ge=1)
    # Pixel budgets of the CPU task types: the result of an upscale, and the input of the
    # full-resolution filters (stylize, face swap); larger inputs fail with `image_too_large`.
    worker_max_output_pixels: int = Field(default=64_000_000, ge=4096)
    worker_max_work_pixels: int = Field(default=16_000_000, ge=4096)
    # Progress events are coalesced to at most one per this interval per task.
    worker_progress_interval_ms: int = Field(default=100, ge=0)
    # A job that asked for previews gets at most one per this interval (each is an object in the
    # output store and a progress event with its URL); a line with one may pass the gate above.
    worker_preview_interval_ms: int = Field(default=250, ge=0)
    # A job that finds no model server ready (cold start, scale from zero, all ejected) waits; once
    # none has been ready for this long during its wait it ends `expired` with `no_capacity`.
    max_capacity_wait_s: float = Field(default=900.0, gt=0)
    # A worker slot holds a waiting job this long, then puts it back at the head of its queue lane
    # (and takes the most urgent one): the wait never runs into the job's time limits, and a more
    # urgent job that arrived meanwhile goes first.
    worker_capacity_slice_s: float = Field(default=30.0, gt=0)
    # How long one inference request may wait in the balancer for room before it is refused and
    # the worker looks at the job again (canceled? past its deadline?).
    worker_capacity_poll_s: float = Field(default=10.0, gt=0, le=60)
    # Each worker says every heartbeat which jobs it holds; a job no live worker has held for a
    # lease (its worker was killed, or lost Redis) is put back in its queue and runs again.
    worker_heartbeat_s: float = Field(default=2.0, gt=0)
    worker_lease_s: float = Field(default=10.0, gt=0)
    # How long a job's terminal event is retried while Redis is unreachable (a restart) before
    # the job gives up its delivery and runs again.
    worker_event_retry_s: float = Field(default=30.0, ge=0)

    # `prompt_refine` (and `refine_prompt` of `flux`) through an OpenAI-compatible chat endpoint
    # (vLLM, Ollama, ...), e.g. http://ollama:11434/v1; empty: the deterministic rules.
    llm_url: str = ""
    llm_model: str = "llama3.1"
    llm_api_key: str = ""
    llm_timeout_s: float = Field(default=30.0, gt=0)

    webhook_timeout_s: float = Field(default=15.0, gt=0)
    # Waits before each retry of a failed webhook delivery; after the last one it is dead-lettered.
    webhook_retry_schedule_s: CommaFloats = [
        5,
        30,
        120,
        600,
        1800,
        3600,
        10800,
        21600,
    ]

    @model_validator(mode="after")
    def _limits_in_order(self) -> Self:
        if (
            not self.job_soft_time_limit_s
            < self.job_time_limit_s
            < self.broker_visibility_timeout_s
        ):
            raise ValueError(
                "need FLUXGATE_JOB_SOFT_TIME_LIMIT_S < FLUXGATE_JOB_TIME_LIMIT_S < "
                "FLUXGATE_BROKER_VISIBILITY_TIMEOUT_S, or jobs would be redelivered while running"
            )
        if self.worker_lease_s < 3 * self.worker_heartbeat_s:
            raise ValueError(
                "need FLUXGATE_WORKER_LEASE_S >= 3 x FLUXGATE_WORKER_HEARTBEAT_S: a live worker "
                "must renew its lease more than once before it lapses"
            )
        if self.worker_capacity_slice_s * 2 > self.job_soft_time_limit_s:
            raise ValueError(
                "need 2 x FLUXGATE_WORKER_CAPACITY_SLICE_S <= FLUXGATE_JOB_SOFT_TIME_LIMIT_S: a "
                "job that waited one slice for a model server must still have time to run"
            )
        return self
