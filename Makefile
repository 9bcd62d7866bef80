# Fluxgate: `make up` runs the whole stack locally, `make test` runs the tests. Both set up first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fluxgate-installed

.PHONY: help setup up test lint format clean run-loadtest bench bench-submit bench-overhead bench-fanout bench-efficiency bench-submit_to_result bench-batching bench-sync_facade bench-balancer

help:  ## list targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml clients/python/pyproject.toml scripts/setup.sh
	VENV=$(VENV) scripts/setup.sh
	touch $@

setup: $(STAMP)  ## install system packages (as root), the virtualenv and Python deps

up: setup  ## start nginx (:8080), gateway, worker, balancer, inference, notifier, redis
	scripts/up.sh

test: setup  ## run the test suite (starts its own redis and services on free ports)
	@command -v chromium >/dev/null || FLUXGATE_SETUP_BROWSER=1 VENV=$(VENV) scripts/setup.sh
	$(VENV)/bin/pytest

lint: setup  ## ruff and mypy
	$(VENV)/bin/ruff check apps tests benchmarks clients loadtest
	$(VENV)/bin/ruff format --check apps tests benchmarks clients loadtest
	$(VENV)/bin/mypy

format: setup  ## apply ruff's formatting and fixes
	$(VENV)/bin/ruff format apps tests benchmarks clients loadtest
	$(VENV)/bin/ruff check --fix apps tests benchmarks clients loadtest

run-loadtest: setup  ## locust against the stack (started if needed): USERS=4 SPAWN_RATE=2 DURATION=40s
	USERS=$(or $(USERS),4) SPAWN_RATE=$(or $(SPAWN_RATE),2) DURATION=$(or $(DURATION),40s) scripts/run-loadtest.sh

bench: bench-submit bench-overhead bench-fanout bench-efficiency bench-submit_to_result bench-batching bench-sync_facade bench-balancer  ## run every benchmark (results in benchmarks/results/)

bench-submit: setup  ## accepted POST /flux per second: gateway vs bare FastAPI+LPUSH vs Flask+apply_async (wrk)
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q wrk >/dev/null; } || { echo "bench-submit needs wrk (apt install wrk)"; exit 1; }
	$(PY) benchmarks/submit.py

bench-overhead: setup  ## submit -> WebSocket result minus model compute, 20 jobs/s for 60 s, per hop
	$(PY) benchmarks/overhead.py

bench-fanout: setup  ## one notifier, 10,000 WebSocket subscribers, 100 final events at once
	$(PY) benchmarks/fanout.py

bench-efficiency: setup  ## images/s through the stack vs the same inference server driven directly
	$(PY) benchmarks/efficiency.py

bench-submit_to_result: setup  ## submit -> WebSocket result of one 256x256 4-step job at a time
	$(PY) benchmarks/submit_to_result.py

bench-batching: setup  ## inference server images/s, batching on vs max_batch_size=1
	$(PY) benchmarks/batching.py

bench-sync_facade: setup  ## /sync/flux through nginx vs submit + WebSocket wait, 20 clients
	$(PY) benchmarks/sync_facade.py

bench-balancer: setup  ## least-outstanding vs round-robin, 3 backends one 5x slower; then one killed
	$(PY) benchmarks/balancer.py

clean:  ## remove local data (outputs, redis, model cache)
	rm -rf .data
