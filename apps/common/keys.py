"""Every Redis key and channel name Fluxgate uses, in one place."""

from __future__ import annotations

PREFIX = "fluxgate"
EVENTS_PATTERN = f"{PREFIX}:events:*"


def job_key(task_id: str) -> str:
    """Hash holding one job record."""
    return f"{PREFIX}:job:{task_id}"


def events_channel(task_id: str) -> str:
    """Pub/sub channel on which every applied event of one task is published as a job view."""
    return f"{PREFIX}:events:{task_id}"


def cancel_key(task_id: str) -> str:
    """Flag set when a running job is asked to stop."""
    return f"{PREFIX}:cancel:{task_id}"


def task_id_from_channel(channel: str) -> str:
    return channel.rsplit(":", 1)[-1]
