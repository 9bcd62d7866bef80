"""Celery task and queue names and broker options, shared by producers (gateway) and the worker."""

from __future__ import annotations

from typing import Any

from celery import Celery

from apps.common.wire.contracts import WebhookMessage

TASK_FLUX = "fluxgate.flux"
TASK_WEBHOOK = "fluxgate.webhook"
QUEUE_GPU = "gpu"
QUEUE_CPU = "cpu"
QUEUE_WEBHOOKS = "webhooks"
ALL_QUEUES = (QUEUE_GPU, QUEUE_CPU, QUEUE_WEBHOOKS)
# The queues of jobs (not webhooks): where fair share orders what starts next.
JOB_QUEUES = (QUEUE_GPU, QUEUE_CPU)
# Celery message header carrying the submit's request id (read as `task.request.<name>`).
REQUEST_ID_MESSAGE_HEADER = "fluxgate_request_id"
# Every other task type runs through this one Celery task (the worker dispatches on the type).
TASK_JOB = "fluxgate.job"
# kombu's Redis transport names a queue's priority lanes `<queue><sep><priority>`.
LANE_SEPARATOR = ":"
PRIORITY_LANES = 10


def lane_name(queue: str, celery_priority: int) -> str:
    """The Redis list holding `queue`'s messages at one priority (lane 0 is the bare name)."""
    return queue if celery_priority == 0 else f"{queue}{LANE_SEPARATOR}{celery_priority}"


def broker_transport_options(*, visibility_timeout_s: int) -> dict[str, Any]:
    """Options both ends of the Redis broker must agree on (priority lanes, visibility)."""
    return {
        # Ten lanes per queue so API priorities 0..9 are kept apart; lane 0 is served first.
        "priority_steps": list(range(PRIORITY_LANES)),
        "sep": LANE_SEPARATOR,
        "queue_order_strategy": "priority",
        # An unacked message is redelivered after this; it must exceed the longest job.
        "visibility_timeout": visibility_timeout_s,
        # Look for messages of dead workers often enough that they come back soon after the
        # visibility timeout (kombu's defaults scan only every ~100 s).
        "unacked_restore_interval": max(1, min(10, visibility_timeout_s // 4)),
        "unacked_restore_throttle": 1,
    }


def celery_priority(api_priority: int) -> int:
    """API priority 9 is the most urgent; kombu's Redis transport serves 0 first."""
    return 9 - api_priority


def make_producer(redis_url: str, *, visibility_timeout_s: int) -> Celery:
    """A Celery app used only to publish (gateway, notifier): they never import the worker."""
    app = Celery("fluxgate-producer", broker=redis_url, set_as_current=False)
    app.conf.update(
        broker_transport_options=broker_transport_options(
            visibility_timeout_s=visibility_timeout_s
        ),
        broker_connection_timeout=3,
        # Ride out a reconnect (a Redis restart leaves stale connections), yet fail within
        # about a second so a client gets a 503 instead of a hung request when Redis is gone.
        task_publish_retry_policy={
            "max_retries": 3,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
    )
    return app


def send_webhook(producer: Celery, message: WebhookMessage) -> None:
    """Hand one webhook message to the delivery task (blocking publish)."""
    producer.send_task(TASK_WEBHOOK, args=[message.model_dump(mode="json")], queue=QUEUE_WEBHOOKS)
