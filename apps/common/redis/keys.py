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


# Sorted sets the notifier's sweeper drains: score = when the item is due (epoch seconds).
DEADLINES = f"{PREFIX}:deadlines"
WEBHOOK_RETRIES = f"{PREFIX}:webhook-retries"
SWEEPER_LOCK = f"{PREFIX}:sweeper-lock"

# Workers' leases (apps/worker/recovery.py): live workers (worker id -> last beat, epoch ms), the
# lock of the one that reclaims dead workers' jobs, and each worker's set of held deliveries.
WORKERS = f"{PREFIX}:workers"
RECLAIM_LOCK = f"{PREFIX}:reclaim-lock"


def worker_holds_key(worker_id: str) -> str:
    return f"{PREFIX}:worker-holds:{worker_id}"


# The key output file names are made with, when FLUXGATE_OUTPUT_NAME_SECRET is not set.
OUTPUT_NAME_KEY = f"{PREFIX}:output-name-key"


def webhook_attempts_key(task_id: str) -> str:
    """List of delivery attempts (JSON), newest last, shown in the owner's view."""
    return f"{PREFIX}:webhook-attempts:{task_id}"


def webhook_dead_key(task_id: str) -> str:
    """Messages whose delivery gave up (JSON), for redelivery."""
    return f"{PREFIX}:webhook-dead:{task_id}"


def webhook_last_key(task_id: str) -> str:
    """The last message handed to delivery (JSON)."""
    return f"{PREFIX}:webhook-last:{task_id}"


def webhook_progress_gate(task_id: str) -> str:
    """Short-lived flag that keeps progress webhooks to one per second per task."""
    return f"{PREFIX}:webhook-progress:{task_id}"


def idempotency_key(scope: str, key_digest: str) -> str:
    return f"{PREFIX}:idempotency:{scope}:{key_digest}"


APIKEY_IDS = f"{PREFIX}:apikeys"


def apikey_key(token_digest: str) -> str:
    """Hash of one API key, found by the SHA-256 of its token (the token is never stored)."""
    return f"{PREFIX}:apikey:{token_digest}"


def apikey_id_key(key_id: str) -> str:
    """The token digest of a key id (for listing and revoking by id)."""
    return f"{PREFIX}:apikey-id:{key_id}"


def rate_bucket_key(owner: str) -> str:
    return f"{PREFIX}:ratelimit:{owner}"


def active_jobs_key(owner: str) -> str:
    """Sorted set of an owner's queued and running task ids (score: created time)."""
    return f"{PREFIX}:active:{owner}"


def active_cost_key(owner: str) -> str:
    """Sorted set of the same task ids as `active_jobs_key`, scored by each job's cost."""
    return f"{PREFIX}:active-cost:{owner}"


def owner_tasks_key(owner: str) -> str:
    """Sorted set of an owner's task ids by created time, for `GET /tasks`."""
    return f"{PREFIX}:tasks:{owner}"


def queue_ticket_key(lane: str) -> str:
    """Counter of messages ever put on one Celery queue lane (a queue at one priority)."""
    return f"{PREFIX}:queue-tickets:{lane}"


def fair_staged_key(lane: str) -> str:
    """Sorted set of a lane's jobs staged for fair share (score: start tag), `fairshare.py`."""
    return f"{PREFIX}:fair:staged:{lane}"


def fair_state_key(lane: str) -> str:
    """Hash of a lane's fair-share state: virtual time `v`, keys' finish tags `t:<key>`, staged
    messages `m:<task id>`."""
    return f"{PREFIX}:fair:state:{lane}"


def fair_released_key(lane: str) -> str:
    """Sorted set of jobs released onto a Celery lane and maybe still on it (score: ticket)."""
    return f"{PREFIX}:fair:released:{lane}"


def fair_depth_key(queue: str) -> str:
    """List with one entry per job staged for fair share in `queue` (all lanes): its length is
    what autoscalers add to the Celery lanes' (KEDA's Redis scaler counts lists only)."""
    return f"{PREFIX}:fair:depth:{queue}"


USAGE_OWNERS = f"{PREFIX}:usage-owners"


def usage_key(owner: str, day: str) -> str:
    """Hash of one owner's usage on one UTC day: `<type>:jobs`, `<type>:<status>`,
    `<type>:compute_ms`, `<type>:cost`."""
    return f"{PREFIX}:usage:{owner}:{day}"


def usage_counted_key(task_id: str) -> str:
    """Set once a job's final state is metered, so a repeated announce counts nothing."""
    return f"{PREFIX}:usage-counted:{task_id}"


def attempt_key(task_id: str) -> str:
    """Hash of one job's runs: whether one is open, and how many died without finishing."""
    return f"{PREFIX}:attempt:{task_id}"


def dedupe_done_key(fingerprint: str) -> str:
    """Hash of the last result of a request fingerprint (`apps/worker/dedupe.py`): the task that
    made it, when it was written, the result; kept no longer than that task's record."""
    return f"{PREFIX}:dedupe-done:{fingerprint}"


def dedupe_running_key(fingerprint: str) -> str:
    """The task id running a request fingerprint now; identical jobs wait for its result."""
    return f"{PREFIX}:dedupe-running:{fingerprint}"
