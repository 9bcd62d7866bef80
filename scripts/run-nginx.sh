#!/usr/bin/env bash
# Runs the nginx front door for `make up` in the foreground, from a prefix under .data/nginx.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nginx >/dev/null || [ ! -f /usr/lib/nginx/modules/ngx_http_lua_module.so ]; then
  echo "nginx: nginx with the Lua module is not installed (run 'make setup' as root);" \
       "the front door on :${FLUXGATE_NGINX_PORT:-8080} is off, the gateway is on :8000"
  exec tail -f /dev/null
fi
conf=$(realpath "$(.venv/bin/python nginx/render.py .data/nginx)")
# The sync facade's Lua reads the notifier's wait with a token derived from this secret: the same
# value the services use (their dev default when unset), taken from their settings.
FLUXGATE_INTERNAL_SECRET=$(.venv/bin/python -c \
  'from apps.common.service.settings import CommonSettings; print(CommonSettings().internal_secret)')
export FLUXGATE_INTERNAL_SECRET
exec nginx -p .data/nginx -c "$conf" -e stderr
