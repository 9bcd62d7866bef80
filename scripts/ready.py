"""For `make up`: wait until every service of the stack answers, then say where to go.

It stays alive afterwards, doing nothing: honcho stops the whole stack when one of its
processes ends."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import httpx

from apps.balancer.settings import BalancerSettings
from apps.common.service.settings import DEV_WEBHOOK_SECRET
from apps.gateway.settings import GatewaySettings
from apps.inference.settings import InferenceSettings
from apps.notifier.settings import NotifierSettings

# Loading a real FLUX checkpoint takes minutes: say so now and then instead of waiting mute.
NOTE_EVERY_S = 30.0


def _local(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _front_door_runs() -> bool:
    # The same test as scripts/run-nginx.sh, which otherwise leaves the front door off.
    lua = Path("/usr/lib/nginx/modules/ngx_http_lua_module.so")
    return shutil.which("nginx") is not None and lua.exists()


def main() -> None:
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, lambda *_: sys.exit(0))  # Ctrl-C: quietly, like the others
    gateway = GatewaySettings()
    inference = InferenceSettings()
    checks = {
        "gateway": _local(gateway.gateway_port) + "/readyz",
        "notifier": _local(NotifierSettings().notifier_port) + "/readyz",
        "balancer": _local(BalancerSettings().balancer_port) + "/readyz",
        "model server": _local(inference.inference_port) + "/readyz",
    }
    if _front_door_runs():
        checks["nginx"] = _local(int(os.environ.get("FLUXGATE_NGINX_PORT", "8080"))) + "/healthz"
    started = time.monotonic()
    next_note = started + NOTE_EVERY_S
    waiting = dict(checks)
    while waiting:
        for name, url in list(waiting.items()):
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    del waiting[name]
            except httpx.HTTPError:
                pass
        if waiting and time.monotonic() > next_note:
            print(f"still starting: {', '.join(waiting)}", flush=True)
            next_note += NOTE_EVERY_S
        time.sleep(0.5)
    base = gateway.public_base
    lines = [
        f"Fluxgate is ready ({time.monotonic() - started:.0f} s):",
        f"  demo page       {base}/",
        f"  API docs        {base}/docs",
        "  Flower          http://127.0.0.1:"
        f"{os.environ.get('FLUXGATE_FLOWER_PORT', '5555')}/  (user:password in .data/flower-auth)",
        f"  a first job     curl -s {base}/flux -H 'content-type: application/json' "
        """-d '{"prompt": "a red fox", "width": 256, "height": 256}'""",
    ]
    if gateway.webhook_secret == DEV_WEBHOOK_SECRET:
        lines.append(
            f"  webhook secret  {DEV_WEBHOOK_SECRET}  (the dev one: verify receivers with it)"
        )
    if not inference.flux_model:
        lines.append(
            "  model           the tiny offline FLUX: its images are coloured noise, by design "
            "(FLUXGATE_FLUX_MODEL=/path/to/FLUX.1-schnell for real ones)"
        )
    lines.append("  stop            Ctrl-C")
    print("\n".join(lines), flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
