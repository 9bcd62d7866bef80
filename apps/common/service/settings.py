"""Settings shared by every service, read from `FLUXGATE_*` environment variables."""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Literal, Self, TypeVar

from pydantic import BeforeValidator, Field, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from apps.common.model_registry import ModelRegistry, model_registry, parse_models
from apps.common.security.url_guard import AllowList

# Dev defaults: the stack runs with no configuration at all, and `prod` refuses to start with them.
DEV_INTERNAL_SECRET = "dev-internal-secret-change-me"  # noqa: S105
DEV_WEBHOOK_SECRET = "whsec_ZGV2LXdlYmhvb2stc2VjcmV0LWNoYW5nZS1tZQ=="  # noqa: S105


def split_commas(value: object) -> object:
    """`a, b/,c` from the environment becomes ["a", "b", "c"] (a trailing slash dropped)."""
    if isinstance(value, str):
        return [part.strip().rstrip("/") for part in value.split(",") if part.strip()]
    return value


# A list setting written in the environment as comma-separated values.
CommaList = Annotated[list[str], NoDecode, BeforeValidator(split_commas)]
CommaFloats = Annotated[list[float], NoDecode, BeforeValidator(split_commas)]


class Environment(StrEnum):
    DEV = "dev"
    PROD = "prod"


class CommonSettings(BaseSettings):
    """What every process needs: environment, Redis, shared secrets and the public URLs."""

    model_config = SettingsConfigDict(env_prefix="FLUXGATE_", extra="ignore")

    env: Environment = Environment.DEV
    redis_url: str = "redis://127.0.0.1:6379/0"
    internal_secret: str = DEV_INTERNAL_SECRET
    webhook_secret: str = DEV_WEBHOOK_SECRET
    public_url: str = "http://localhost:8000"
    public_ws_url: str = "ws://localhost:8300"
    # Key of the unguessable output file names; empty: one generated once and kept in Redis.
    output_name_secret: str = ""
    # A local directory (served by the gateway at /files/), or s3://bucket/prefix.
    output_dir: str = ".data/outputs"
    # For an s3:// output store: the endpoint (MinIO, R2, ...; empty: AWS), the region, and how
    # clients fetch outputs: `presigned` URLs from the bucket, or `proxy` through the gateway's
    # /files/. Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the pod's role.
    s3_endpoint_url: str = ""
    s3_region: str = ""
    s3_url_mode: Literal["presigned", "proxy"] = "presigned"
    # Proxies whose X-Forwarded-Proto/-For a service believes (the front door), comma-separated
    # addresses or `*`: URLs and redirects then name the client's scheme, host and port.
    forwarded_allow_ips: str = "127.0.0.1"
    # Seconds an HTTP service keeps serving in-flight requests after SIGTERM (long-poll waits,
    # inference streams) before it stops; keep it below terminationGracePeriodSeconds.
    shutdown_grace_s: float = Field(default=10.0, ge=1)
    job_ttl_s: int = Field(default=24 * 3600, ge=60)
    # An unacked Celery message is redelivered after this; it must exceed the longest job.
    broker_visibility_timeout_s: int = Field(default=3600, ge=5)
    # Fair share across API keys within a priority lane (apps/common/jobs/fairshare.py); off:
    # first come, first served. Read by the gateway (stages jobs) and the worker (releases them).
    fair_share: bool = True
    # Under fair share, how many released jobs wait on a queue's Celery lanes for the next free
    # worker slot; the rest wait in fair order. Higher smooths bursts, lower is fairer.
    fair_share_ready: int = Field(default=2, ge=1, le=1000)
    # API keys on every public route. Off in `dev` for a frictionless start; `prod` requires it.
    auth: bool = False
    # Guards the /admin routes (key management); empty turns them off.
    admin_token: str = ""
    # Prometheus usage counters per API key id (`key` label). Off: one `key="all"` series, since
    # /metrics is readable by whoever reaches a pod; per-key usage is at /usage and /admin/usage.
    metrics_per_key: bool = False
    # Who may be called back although private: host names, addresses, CIDRs, `loopback`, `private`.
    webhook_allow: str = ""
    log_level: str = "INFO"
    log_json: bool = False
    # OpenTelemetry traces go to this OTLP/HTTP collector (e.g. http://otel-collector:4318);
    # empty turns tracing off. The standard OTEL_* variables tune the exporter and sampler.
    otel_endpoint: str = ""
    # Input images of task types (uploads, base64, fetched URLs): bytes and decoded pixels.
    input_image_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    input_image_max_pixels: int = Field(default=40_000_000, ge=4096)
    # `translate`: a seq2seq model (MarianMT-style), a local directory or a hub id. Empty: the
    # type answers 503 `model_not_configured` at submit.
    translate_model: str = ""

    # The models and LoRA adapters this deployment serves (apps/common/model_registry.py):
    # FLUXGATE_MODELS is JSON or a JSON/YAML file's path (empty: one model, `default`, the tiny
    # one or FLUXGATE_FLUX_MODEL); FLUXGATE_LORA_DIR a directory of `<name>.safetensors`.
    models: str = ""
    lora_dir: str = ""
    # Per request: at most this many adapters, each scale within +-lora_max_scale.
    max_loras: int = Field(default=4, ge=0, le=8)
    lora_max_scale: float = Field(default=2.0, gt=0, le=4)
    # Prod refuses webhook and image URLs into loopback or private networks; this loudly named
    # switch lets FLUXGATE_WEBHOOK_ALLOW open them anyway (an internal receiver you trust).
    unsafe_allow_private_targets: bool = False

    @model_validator(mode="after")
    def _models_parse(self) -> Self:
        parse_models(self.models)  # a wrong FLUXGATE_MODELS stops the process at start
        return self

    def model_registry(self, default_source: str = "") -> ModelRegistry:
        """The deployment's models and adapters (`default_source`: the default model's weights
        when FLUXGATE_MODELS is empty)."""
        return model_registry(
            self.models,
            self.lora_dir,
            max_loras=self.max_loras,
            max_scale=self.lora_max_scale,
            default_source=default_source,
        )

    @model_validator(mode="after")
    def _refuse_weak_settings_in_prod(self) -> Self:
        if self.env is not Environment.PROD:
            return self
        if not self.auth:
            raise ValueError("FLUXGATE_AUTH must be true when FLUXGATE_ENV=prod")
        if problem := weak_secret(self.internal_secret, dev=DEV_INTERNAL_SECRET):
            raise ValueError(f"FLUXGATE_INTERNAL_SECRET {problem} (FLUXGATE_ENV=prod)")
        if problem := weak_webhook_secret(self.webhook_secret):
            raise ValueError(f"FLUXGATE_WEBHOOK_SECRET {problem} (FLUXGATE_ENV=prod)")
        if self.admin_token and (problem := weak_secret(self.admin_token)):
            raise ValueError(f"FLUXGATE_ADMIN_TOKEN {problem} (FLUXGATE_ENV=prod)")
        if not self.unsafe_allow_private_targets and (
            opened := private_targets(self.webhook_allow)
        ):
            raise ValueError(
                f"FLUXGATE_WEBHOOK_ALLOW opens {opened} to webhooks and image URLs; prod refuses "
                "that unless FLUXGATE_UNSAFE_ALLOW_PRIVATE_TARGETS=true"
            )
        return self

    @property
    def public_base(self) -> str:
        return self.public_url.rstrip("/")

    @property
    def public_ws_base(self) -> str:
        return self.public_ws_url.rstrip("/")


MIN_SECRET_CHARS = 32
MIN_SECRET_DISTINCT = 10
MIN_WEBHOOK_KEY_BYTES = 24


def weak_secret(value: str, *, dev: str | None = None) -> str | None:
    """Why `value` is not a strong secret (too short, too few distinct characters, the dev
    default or built from it), or None."""
    if dev is not None and (value == dev or dev in value):
        return "is the development default"
    if len(value) < MIN_SECRET_CHARS:
        return f"must be at least {MIN_SECRET_CHARS} characters"
    if len(set(value)) < MIN_SECRET_DISTINCT:
        return f"must have at least {MIN_SECRET_DISTINCT} distinct characters"
    return None


def weak_webhook_secret(value: str) -> str | None:
    """Why `value` is not a strong `whsec_<base64>` key, or None."""
    if not value.startswith("whsec_"):
        return "must be a Standard Webhooks key: whsec_<base64>"
    try:
        key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        return "must be whsec_ followed by base64"
    dev_key = base64.b64decode(DEV_WEBHOOK_SECRET.removeprefix("whsec_"))
    if key == dev_key or dev_key in key:
        return "is the development default"
    if len(key) < MIN_WEBHOOK_KEY_BYTES or len(set(key)) < MIN_SECRET_DISTINCT:
        return f"must decode to at least {MIN_WEBHOOK_KEY_BYTES} random bytes"
    return None


def private_targets(allow: str) -> list[str]:
    """What FLUXGATE_WEBHOOK_ALLOW opens of loopback, private or link-local space, as the SSRF
    guard reads it (named hosts other than localhost are the operator's one host each)."""
    parsed = AllowList.parse(allow)
    opened = [str(network) for network in parsed.networks if not network.is_global]
    return opened + sorted(host for host in parsed.hosts if host == "localhost")


SettingsT = TypeVar("SettingsT", bound=CommonSettings)


@lru_cache
def _cached(cls: type[CommonSettings]) -> CommonSettings:
    return cls()


def get_settings(cls: type[SettingsT]) -> SettingsT:
    """The process-wide settings of one class, read from the environment once."""
    settings = _cached(cls)
    assert isinstance(settings, cls)
    return settings
