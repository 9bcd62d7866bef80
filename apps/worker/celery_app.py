"""The Celery application of the worker: broker-only (no result backend), at-least-once delivery."""

from __future__ import annotations

from celery import Celery
from celery.signals import setup_logging
from kombu import Queue

from apps.common.logging import configure_logging
from apps.common.queues import ALL_QUEUES, QUEUE_GPU, broker_transport_options
from apps.common.settings import get_settings
from apps.worker.settings import WorkerSettings

settings = get_settings(WorkerSettings)

app = Celery("fluxgate", broker=settings.redis_url, include=["apps.worker.tasks"])
app.conf.update(
    # Results travel as events to the notifier; a result backend would only duplicate them.
    task_ignore_result=True,
    result_backend=None,
    # At least once: a message is acked only after its job ran; a killed worker's job runs again.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_cancel_long_running_tasks_on_connection_loss=True,
    task_soft_time_limit=settings.job_soft_time_limit_s,
    task_time_limit=settings.job_time_limit_s,
    broker_transport_options=broker_transport_options(
        visibility_timeout_s=settings.broker_visibility_timeout_s
    ),
    broker_connection_retry_on_startup=True,
    task_queues=[Queue(name) for name in ALL_QUEUES],
    task_default_queue=QUEUE_GPU,
    task_serializer="json",
    accept_content=["json"],
    worker_concurrency=settings.worker_concurrency,
    worker_hijack_root_logger=False,
    worker_send_task_events=True,
    task_send_sent_event=False,
)


@setup_logging.connect
def _configure_logging(**_kwargs: object) -> None:
    configure_logging(settings.log_level, json=settings.log_json)
