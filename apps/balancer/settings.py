"""Settings of the balancer (`FLUXGATE_BALANCER_*`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import field_validator
from pydantic_settings import NoDecode

from apps.common.settings import CommonSettings


class BalancerSettings(CommonSettings):
    balancer_host: str = "127.0.0.1"
    balancer_port: int = 8100
    # Comma-separated base URLs of the inference servers.
    balancer_backends: Annotated[list[str], NoDecode] = ["http://127.0.0.1:8200"]
    balancer_connect_timeout_s: float = 2.0

    @field_validator("balancer_backends", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip().rstrip("/") for part in value.split(",") if part.strip()]
        return value
