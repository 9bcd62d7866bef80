#!/usr/bin/env bash
# Flower, the Celery monitoring UI, for `make up`: always behind basic auth.
# Credentials: FLUXGATE_FLOWER_BASIC_AUTH=user:password, else made once into .data/flower-auth.
set -euo pipefail
cd "$(dirname "$0")/.."
# The virtualenv, as the Makefile has it: VENV=... (relative to the repository root, or absolute).
venv=${VENV:-.venv}
host=${FLUXGATE_FLOWER_HOST:-127.0.0.1}
port=${FLUXGATE_FLOWER_PORT:-5555}
auth=${FLUXGATE_FLOWER_BASIC_AUTH:-}
if [ -z "$auth" ]; then
  mkdir -p .data
  if [ ! -s .data/flower-auth ]; then
    (umask 077 && "$venv/bin/python" -c \
      'import secrets; print("admin:" + secrets.token_urlsafe(18))' > .data/flower-auth)
  fi
  auth=$(cat .data/flower-auth)
  echo "flower: http://$host:$port/ (user:password in .data/flower-auth)"
fi
# Flower keeps every task it saw in memory: --max_tasks caps that history, so it stays bounded.
# Handed over in the environment, not on the command line, where `ps` would show it.
export FLOWER_BASIC_AUTH=$auth
exec "$venv/bin/python" -m celery -A apps.worker.celery_app flower \
  --address="$host" --port="$port" --purge_offline_workers=60 \
  --max_tasks="${FLUXGATE_FLOWER_MAX_TASKS:-2000}"
