"""Webhook delivery: one signed POST per attempt, retries on a schedule, dead letters at the end.

Retries are not Celery countdowns: a long ETA outlives the broker's visibility timeout and comes
back twice. A failed attempt goes into a Redis sorted set instead, and the notifier's sweeper puts
it back on the `webhooks` queue when it is due.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import httpx
import redis
from prometheus_client import Counter, Histogram

from apps.common.jobs.view import iso_utc
from apps.common.redis import keys
from apps.common.security.apikeys import ApiKey
from apps.common.security.signing import sign_webhook
from apps.common.security.url_guard import AllowList, UnsafeUrl, pin_url
from apps.common.service.logging import get_logger
from apps.common.wire.contracts import WebhookAttempt, WebhookMessage
from apps.worker.settings import WorkerSettings

log = get_logger(__name__)

MAX_ATTEMPTS_KEPT = 50
_GONE = 410


def _retry_after_s(response: httpx.Response | None) -> float:
    value = response.headers.get("retry-after", "") if response is not None else ""
    return float(value) if value.strip().isdigit() else 0.0


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    retry: bool
    status_code: int | None
    error: str | None
    retry_after_s: float = 0.0


WEBHOOK_ATTEMPTS = Counter(
    "fluxgate_webhook_attempts_total",
    "Webhook delivery attempts by outcome: delivered, retrying, dead (gave up), refused",
    ["outcome"],
)
WEBHOOK_SECONDS = Histogram(
    "fluxgate_webhook_delivery_seconds", "Time of a successful webhook call to the receiver"
)


def _outcome_label(outcome: Outcome, next_at: float | None) -> str:
    if outcome.delivered:
        return "delivered"
    if outcome.error is not None and outcome.error.startswith("refused"):
        return "refused"
    return "retrying" if next_at is not None else "dead"


class WebhookDelivery:
    def __init__(self, settings: WorkerSettings, client: redis.Redis) -> None:
        self._settings = settings
        self._redis = client
        self._allow = AllowList.parse(settings.webhook_allow)
        # Redirects are not followed: a 3xx could point anywhere, past the SSRF guard.
        self._http = httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False)

    def deliver(self, message: WebhookMessage) -> Outcome:
        """Make one attempt, record it, and schedule the next one or dead-letter the message."""
        self._redis.set(
            keys.webhook_last_key(message.task_id),
            message.model_dump_json(),
            ex=self._settings.job_ttl_s,
        )
        started = time.perf_counter()
        outcome = self._attempt(message)
        now = time.time()
        next_at: float | None = None
        if not outcome.delivered:
            next_at = self._next_attempt_at(message, outcome, now)
            if next_at is None:
                self._redis.rpush(keys.webhook_dead_key(message.task_id), message.model_dump_json())
                self._redis.expire(keys.webhook_dead_key(message.task_id), self._settings.job_ttl_s)
            else:
                retry = message.model_copy(update={"attempt": message.attempt + 1})
                self._redis.zadd(keys.WEBHOOK_RETRIES, {retry.model_dump_json(): next_at})
        self._record(message, outcome, now, next_at)
        WEBHOOK_ATTEMPTS.labels(_outcome_label(outcome, next_at)).inc()
        if outcome.delivered:
            WEBHOOK_SECONDS.observe(time.perf_counter() - started)
        log.info(
            "webhook attempt",
            task_id=message.task_id,
            message_id=message.message_id,
            attempt=message.attempt,
            status=outcome.status_code,
            error=outcome.error,
            delivered=outcome.delivered,
            retry_in_s=None if next_at is None else round(next_at - now, 1),
        )
        return outcome

    def _attempt(self, message: WebhookMessage) -> Outcome:
        try:
            # DNS may have changed since submit: check again right before calling, and call the
            # address that was checked (a rebinding DNS gets no second answer).
            pinned = pin_url(message.url, self._allow)
        except UnsafeUrl as exc:
            return Outcome(False, False, None, f"refused: {exc}")
        body = message.body.encode()
        headers = {
            "content-type": "application/json",
            "user-agent": "Fluxgate-Webhooks/1",
            **sign_webhook(message.message_id, body, self._secrets_for(message.owner)),
        }
        try:
            kwargs = pinned.request_kwargs()
            headers.update(kwargs.pop("headers", {}))
            response = self._http.post(pinned.url, content=body, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            return Outcome(False, True, None, f"{type(exc).__name__}: {exc}")
        status = response.status_code
        if 200 <= status < 300:
            return Outcome(True, False, status, None)
        if status == 429 or status >= 500:
            return Outcome(False, True, status, f"HTTP {status}", _retry_after_s(response))
        if status == _GONE:
            return Outcome(False, False, status, "HTTP 410: the receiver is gone")
        # Other 4xx (and 3xx) rarely heal: one more try, in case it was a deploy in progress.
        return Outcome(False, message.attempt == 0, status, f"HTTP {status}")

    def _secrets_for(self, owner: str | None) -> list[str]:
        """The owner key's webhook secrets (two during a rotation), else the global one."""
        fallback = self._settings.webhook_secret
        if owner is not None:
            digest = self._redis.get(keys.apikey_id_key(owner))
            raw = self._redis.get(keys.apikey_key(str(digest))) if digest else None
            if raw:
                return ApiKey.model_validate_json(raw).webhook_secrets(fallback)
        return [fallback]

    def _next_attempt_at(
        self, message: WebhookMessage, outcome: Outcome, now: float
    ) -> float | None:
        schedule = self._settings.webhook_retry_schedule_s
        if not outcome.retry or message.attempt >= len(schedule):
            return None
        wait = schedule[message.attempt] * random.uniform(0.8, 1.2)
        return now + max(wait, outcome.retry_after_s)

    def _record(
        self, message: WebhookMessage, outcome: Outcome, now: float, next_at: float | None
    ) -> None:
        attempt = WebhookAttempt(
            message_id=message.message_id,
            attempt=message.attempt,
            at=iso_utc(now),
            status_code=outcome.status_code,
            error=outcome.error,
            next_retry_at=None if next_at is None else iso_utc(next_at),
        )
        key = keys.webhook_attempts_key(message.task_id)
        with self._redis.pipeline() as pipe:
            pipe.rpush(key, attempt.model_dump_json())
            pipe.ltrim(key, -MAX_ATTEMPTS_KEPT, -1)
            pipe.expire(key, self._settings.job_ttl_s)
            pipe.execute()
