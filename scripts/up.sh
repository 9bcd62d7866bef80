#!/usr/bin/env bash
# `make up`: the whole stack in the foreground, one log stream; Ctrl-C stops all of it.
set -euo pipefail
cd "$(dirname "$0")/.."
# The demo may call back a webhook receiver on this machine; production allows nothing.
export FLUXGATE_WEBHOOK_ALLOW=${FLUXGATE_WEBHOOK_ALLOW-loopback}
if command -v nginx >/dev/null && [ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ]; then
  # Clients go through the front door, so the URLs they are given point at it.
  port=${FLUXGATE_NGINX_PORT:-8080}
  export FLUXGATE_PUBLIC_URL=${FLUXGATE_PUBLIC_URL:-http://localhost:$port}
  export FLUXGATE_PUBLIC_WS_URL=${FLUXGATE_PUBLIC_WS_URL:-ws://localhost:$port}
fi
exec .venv/bin/honcho start -f Procfile
