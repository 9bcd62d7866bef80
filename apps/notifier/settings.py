"""Settings of the notifier (`FLUXGATE_NOTIFIER_*`)."""

from __future__ import annotations

from pydantic import Field

from apps.common.service.settings import CommonSettings


class NotifierSettings(CommonSettings):
    notifier_host: str = "127.0.0.1"
    notifier_port: int = 8300
    # Upper bound of `GET /internal/wait/{id}?timeout=`.
    notifier_max_wait_s: float = Field(default=300.0, gt=0)
    # How often due deadlines and webhook retries are looked for.
    notifier_sweep_interval_s: float = Field(default=1.0, gt=0)
    # A comment line on a quiet server-sent-events stream this often, so proxies keep it open.
    notifier_sse_keepalive_s: float = Field(default=15.0, gt=0)
