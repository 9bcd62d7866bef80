"""Usage metering per API key: jobs, compute seconds and cost by task type and UTC day.

A job is metered once, when its final state is first announced; a repeated announce (a retried
terminal event) finds the job's guard key set and counts nothing. Totals live in one Redis hash
per owner and day (kept `USAGE_TTL_S`) and in Prometheus counters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import redis
import redis.asyncio as aioredis
from prometheus_client import Counter

from apps.common.jobs.record import JobRecord
from apps.common.redis import keys
from apps.common.service.settings import CommonSettings, get_settings
from apps.common.task_types import task_type

ANONYMOUS_OWNER = "anonymous"
USAGE_TTL_S = 400 * 86400
FINAL_STATES = ("succeeded", "failed", "canceled", "expired")

USAGE_JOBS = Counter(
    "fluxgate_usage_jobs_total", "Jobs metered by API key", ["key", "type", "status"]
)
USAGE_COMPUTE = Counter(
    "fluxgate_usage_compute_seconds_total",
    "Model compute metered by API key (a batch's time shared among its jobs)",
    ["key", "type"],
)

USAGE_COST = Counter(
    "fluxgate_usage_cost_total",
    "Job cost metered by API key, in megapixel-steps (jobs that started only)",
    ["key", "type"],
)

# Which models and adapters the metered jobs ran on (no key label: what a deployment serves is
# not a tenant's secret, what one tenant runs is kept behind GET /usage).
USAGE_MODEL_JOBS = Counter(
    "fluxgate_usage_model_jobs_total", "Metered jobs by registry model", ["type", "model"]
)
USAGE_ADAPTER_JOBS = Counter(
    "fluxgate_usage_adapter_jobs_total", "Metered jobs by LoRA adapter they named", ["adapter"]
)

METER_LUA = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local t = ARGV[2]
redis.call('HINCRBY', KEYS[2], t .. ':jobs', 1)
redis.call('HINCRBY', KEYS[2], t .. ':' .. ARGV[3], 1)
redis.call('HINCRBYFLOAT', KEYS[2], t .. ':compute_ms', ARGV[4])
if tonumber(ARGV[7]) > 0 then redis.call('HINCRBYFLOAT', KEYS[2], t .. ':cost', ARGV[7]) end
if ARGV[8] ~= '' then
  local m = 'model=' .. ARGV[8]
  redis.call('HINCRBY', KEYS[2], m .. ':jobs', 1)
  redis.call('HINCRBYFLOAT', KEYS[2], m .. ':compute_ms', ARGV[4])
  if tonumber(ARGV[7]) > 0 then redis.call('HINCRBYFLOAT', KEYS[2], m .. ':cost', ARGV[7]) end
end
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('SADD', KEYS[3], ARGV[6])
return 1
"""


def compute_share_ms(record: JobRecord) -> float:
    """The job's share of the model's time: a batch's compute split among its requests. A job
    answered from an identical job's result (`cached`) used none: it is charged nothing."""
    if record.result is None or record.cached:
        return 0.0
    timings = record.result.timings
    compute = float(timings.get("compute_ms", 0.0))
    return compute / max(1, int(timings.get("batch_size", 1)))


def charged_cost(record: JobRecord) -> float:
    """What a job that ended is charged: its cost once it started (succeeded, failed, or
    canceled while running); nothing when it never did (canceled while queued, expired), when
    an identical job's result answered it (`cached`: it used no GPU), nor for a record made
    before costs were kept."""
    if record.cost is None or record.started_at is None or record.cached:
        return 0.0
    return record.cost


def utc_day(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).date().isoformat()


def meter_args(record: JobRecord, *, guard_ttl_s: int) -> tuple[list[str], list[str]]:
    owner = record.owner or ANONYMOUS_OWNER
    day = utc_day(record.finished_at or record.created_at)
    return (
        [keys.usage_counted_key(record.task_id), keys.usage_key(owner, day), keys.USAGE_OWNERS],
        [
            str(guard_ttl_s),
            record.type,
            record.status.value,
            f"{compute_share_ms(record):.3f}",
            str(USAGE_TTL_S),
            owner,
            f"{charged_cost(record):.4f}",
            model_of(record) or "",
        ],
    )


# Fields of a day's usage hash that count a registry model's jobs, beside the task types'.
_MODEL_FIELD = "model="


def model_of(record: JobRecord) -> str | None:
    """The registry model the job ran on: the one its input names, the deployment's default for
    a type with models whose record leaves it out (`choice_at_default`), else None."""
    model = record.input.get("model")
    if isinstance(model, str):
        return model
    if "model" in task_type(record.type).input_model.model_fields:
        return get_settings(CommonSettings).model_registry().default
    return None


# The `key` label when counters are not kept per key (the default): /metrics is readable by
# whoever reaches a pod, so per-key usage stays behind GET /usage and /admin/usage.
ALL_KEYS = "all"


def count_in_metrics(record: JobRecord) -> None:
    per_key = get_settings(CommonSettings).metrics_per_key
    key = (record.owner or ANONYMOUS_OWNER) if per_key else ALL_KEYS
    USAGE_JOBS.labels(key, record.type, record.status.value).inc()
    USAGE_COMPUTE.labels(key, record.type).inc(compute_share_ms(record) / 1000)
    USAGE_COST.labels(key, record.type).inc(charged_cost(record))
    if (model := model_of(record)) is not None:
        USAGE_MODEL_JOBS.labels(record.type, model).inc()
    for lora in record.input.get("loras") or []:
        if isinstance(lora, dict) and isinstance(lora.get("name"), str):
            USAGE_ADAPTER_JOBS.labels(lora["name"]).inc()


@dataclass
class TypeUsage:
    jobs: int = 0
    compute_seconds: float = 0.0
    # Megapixel-steps of the jobs that started (`charged_cost`).
    cost: float = 0.0
    by_status: dict[str, int] = field(default_factory=dict)

    def add(self, other: TypeUsage) -> None:
        self.jobs += other.jobs
        self.compute_seconds += other.compute_seconds
        self.cost += other.cost
        for status, count in other.by_status.items():
            self.by_status[status] = self.by_status.get(status, 0) + count

    def as_json(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "compute_seconds": round(self.compute_seconds, 3),
            "cost": round(self.cost, 4),
            **{status: self.by_status.get(status, 0) for status in FINAL_STATES},
        }


def parse_day_hash(raw: dict[str, str]) -> dict[str, TypeUsage]:
    """A day's usage by task type (the model counts left out: `parse_day_models`)."""
    by_type: dict[str, TypeUsage] = {}
    for name, value in raw.items():
        if name.startswith(_MODEL_FIELD):
            continue
        task_type, _, what = name.rpartition(":")
        usage = by_type.setdefault(task_type, TypeUsage())
        if what == "jobs":
            usage.jobs = int(value)
        elif what == "compute_ms":
            usage.compute_seconds = float(value) / 1000
        elif what == "cost":
            usage.cost = float(value)
        else:
            usage.by_status[what] = int(value)
    return by_type


def parse_day_models(raw: dict[str, str]) -> dict[str, TypeUsage]:
    """A day's usage by registry model: jobs, compute and cost (no states)."""
    named = {k.removeprefix(_MODEL_FIELD): v for k, v in raw.items() if k.startswith(_MODEL_FIELD)}
    return parse_day_hash(named)


def _model_json(usage: TypeUsage) -> dict[str, Any]:
    return {k: v for k, v in usage.as_json().items() if k not in FINAL_STATES}


class UsageMeter:
    """Writes and reads usage over an asyncio Redis client."""

    def __init__(self, client: aioredis.Redis, *, job_ttl_s: int) -> None:
        self._redis = client
        self._meter = client.register_script(METER_LUA)
        self._guard_ttl_s = job_ttl_s

    async def meter_final(self, record: JobRecord) -> bool:
        """Count a job that just ended; False when it was already counted."""
        key_names, args = meter_args(record, guard_ttl_s=self._guard_ttl_s)
        if not await self._meter(keys=key_names, args=args):
            return False
        count_in_metrics(record)
        return True

    async def owners(self) -> list[str]:
        return sorted(str(owner) for owner in await self._redis.smembers(keys.USAGE_OWNERS))

    async def report(self, owner: str, since: date, until: date) -> dict[str, Any]:
        """`{"key", "since", "until", "totals": {type: ...}, "models": {model: ...}, "days":
        [{"day", "types", "models"}]}`."""
        days = [since + timedelta(days=n) for n in range((until - since).days + 1)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for day in days:
                pipe.hgetall(keys.usage_key(owner, day.isoformat()))
            raws = await pipe.execute()
        totals: dict[str, TypeUsage] = {}
        model_totals: dict[str, TypeUsage] = {}
        per_day = []
        for day, raw in zip(days, raws, strict=True):
            if not raw:
                continue
            by_type = parse_day_hash(raw)
            by_model = parse_day_models(raw)
            for type_name, usage in by_type.items():
                totals.setdefault(type_name, TypeUsage()).add(usage)
            for model, usage in by_model.items():
                model_totals.setdefault(model, TypeUsage()).add(usage)
            per_day.append(
                {
                    "day": day.isoformat(),
                    "types": {t: u.as_json() for t, u in by_type.items()},
                    "models": {m: _model_json(u) for m, u in sorted(by_model.items())},
                }
            )
        return {
            "key": owner,
            "since": since.isoformat(),
            "until": until.isoformat(),
            "totals": {t: u.as_json() for t, u in sorted(totals.items())},
            "models": {m: _model_json(u) for m, u in sorted(model_totals.items())},
            "days": per_day,
        }


class SyncUsageMeter:
    """Metering over a blocking client (a worker writing a final state itself)."""

    def __init__(self, client: redis.Redis, *, job_ttl_s: int) -> None:
        self._meter = client.register_script(METER_LUA)
        self._guard_ttl_s = job_ttl_s

    def meter_final(self, record: JobRecord) -> bool:
        key_names, args = meter_args(record, guard_ttl_s=self._guard_ttl_s)
        if not self._meter(keys=key_names, args=args):
            return False
        count_in_metrics(record)
        return True
