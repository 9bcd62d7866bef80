#!/usr/bin/env bash
# `make run-loadtest`: locust, headless, against the local stack (started here if it is not up)
# or, with KUBE_CONTEXT set, against the chart's front door in that cluster (port-forwarded).
# Knobs: USERS, SPAWN_RATE, DURATION, LOADTEST_CLASSES, HOST; NAMESPACE/RELEASE for the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
users=${USERS:-4}
spawn_rate=${SPAWN_RATE:-2}
duration=${DURATION:-40s}
reports=loadtest/reports
mkdir -p "$reports"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

ready() { .venv/bin/python -c 'import sys, httpx; sys.exit(httpx.get(sys.argv[1] + "/readyz", timeout=2).status_code != 200)' "$1" 2>/dev/null; }
wait_ready() {
  for _ in $(seq 600); do ready "$1" && return 0; sleep 0.5; done
  echo "loadtest: $1 did not become ready" >&2; exit 1
}

if [ -n "${KUBE_CONTEXT:-}" ]; then
  # The chart's nginx front door (service <release>-nginx, port 8080) serves every route.
  port=${LOCAL_PORT:-18080}
  kubectl --context "$KUBE_CONTEXT" -n "${NAMESPACE:-fluxgate}" port-forward \
    "svc/${RELEASE:-fluxgate}-nginx" "$port:8080" >/dev/null &
  pids+=($!)
  host="http://127.0.0.1:$port"
  wait_ready "$host"
else
  has_front_door=0
  if command -v nginx >/dev/null && [ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ]; then
    has_front_door=1
  fi
  host=${HOST:-$([ "$has_front_door" = 1 ] && echo http://127.0.0.1:8080 || echo http://127.0.0.1:8000)}
  if ! ready "$host"; then
    echo "loadtest: no stack at $host, starting one (logs: $reports/stack.log)"
    # Its own session, so the whole stack stops with it.
    setsid scripts/up.sh >"$reports/stack.log" 2>&1 &
    pids+=($!)
    wait_ready "$host"
  fi
fi
classes=${LOADTEST_CLASSES:-}
if [ -z "$classes" ]; then
  classes="ResultUser PollUser SubmitUser"
  # The synchronous facade lives in nginx.
  case "$host" in *:8000) ;; *) classes="$classes SyncUser" ;; esac
fi
echo "loadtest: $users users ($classes), spawn rate $spawn_rate/s, $duration against $host"
# shellcheck disable=SC2086
.venv/bin/locust -f loadtest/locustfile.py --headless --only-summary \
  -u "$users" -r "$spawn_rate" -t "$duration" --host "$host" \
  --csv "$reports/run" --html "$reports/report.html" $classes >"$reports/locust.log" 2>&1 || true
.venv/bin/python loadtest/summary.py "$reports/run_stats.csv"
