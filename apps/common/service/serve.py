"""The command line every HTTP service shares: `python -m apps.<service> [--host H] [--port P]`."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from apps.common.service.logging import configure_logging
from apps.common.service.settings import SettingsT, get_settings


def serve(
    name: str,
    settings_type: type[SettingsT],
    app_factory: Callable[[SettingsT], FastAPI],
    description: str,
) -> None:
    """Parse `--host/--port` (defaults: `FLUXGATE_<NAME>_HOST/_PORT`), set up logging and run the
    app under uvicorn (uvloop, httptools)."""
    settings = get_settings(settings_type)
    host: str = getattr(settings, f"{name}_host")
    port: int = getattr(settings, f"{name}_port")
    parser = argparse.ArgumentParser(prog=f"python -m apps.{name}", description=description)
    parser.add_argument("--host", default=host, help=f"bind address (default {host})")
    parser.add_argument("--port", type=int, default=port, help=f"port (default {port})")
    args = parser.parse_args()
    configure_logging(settings.log_level, json=settings.log_json)
    uvicorn.run(
        app_factory(settings),
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        ws="websockets-sansio",
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_s)),
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )
