"""Celery task and queue names and broker options, shared by producers (gateway) and the worker."""

from __future__ import annotations

from typing import Any

TASK_FLUX = "fluxgate.flux"
QUEUE_GPU = "gpu"
QUEUE_CPU = "cpu"
QUEUE_WEBHOOKS = "webhooks"
ALL_QUEUES = (QUEUE_GPU, QUEUE_CPU, QUEUE_WEBHOOKS)


def broker_transport_options(*, visibility_timeout_s: int) -> dict[str, Any]:
    """Options both ends of the Redis broker must agree on (priority lanes, visibility)."""
    return {
        # Ten lanes per queue so API priorities 0..9 are kept apart; lane 0 is served first.
        "priority_steps": list(range(10)),
        "sep": ":",
        "queue_order_strategy": "priority",
        # An unacked message is redelivered after this; it must exceed the longest job.
        "visibility_timeout": visibility_timeout_s,
    }


def celery_priority(api_priority: int) -> int:
    """API priority 9 is the most urgent; kombu's Redis transport serves 0 first."""
    return 9 - api_priority
