"""Settings of the balancer (`FLUXGATE_BALANCER_*`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from apps.common.service.settings import CommaList, CommonSettings


class BalancerSettings(CommonSettings):
    balancer_host: str = "127.0.0.1"
    balancer_port: int = 8100
    # Static backends: comma-separated base URLs of inference servers.
    balancer_backends: CommaList = ["http://127.0.0.1:8200"]
    # DNS discovery: comma-separated `host:port` names (a Kubernetes headless Service), resolved
    # every `balancer_discovery_interval_s` to all their addresses.
    balancer_discovery_dns: CommaList = []
    balancer_discovery_interval_s: float = Field(default=5.0, gt=0)
    balancer_policy: Literal["least_outstanding", "round_robin"] = "least_outstanding"
    balancer_connect_timeout_s: float = Field(default=2.0, gt=0)
    # Active checks of /readyz and /load: eject after N failures, re-admit after M successes.
    balancer_health_interval_s: float = Field(default=2.0, gt=0)
    balancer_health_timeout_s: float = Field(default=1.0, gt=0)
    balancer_unhealthy_after: int = Field(default=2, ge=1)
    balancer_healthy_after: int = Field(default=2, ge=1)
    # Passive ejection: errors eject a backend for a back-off that doubles up to the maximum.
    balancer_eject_base_s: float = Field(default=1.0, gt=0)
    balancer_eject_max_s: float = Field(default=30.0, gt=0)
    # Tries per request (the first one included) before answering 503.
    balancer_max_attempts: int = Field(default=3, ge=1)
    # A backend takes up to capacity x this many requests: one batch running, one forming.
    balancer_queue_factor: float = Field(default=2.0, ge=1)
    # Prefer a backend that already holds the request's model and LoRA adapters: each load it
    # would need weighs this many of its batches of queued work (plus the load's own time).
    # 0 still breaks ties towards them; off: plain least outstanding work.
    balancer_affinity: bool = True
    balancer_affinity_batches: float = Field(default=2.0, ge=0, le=100)
