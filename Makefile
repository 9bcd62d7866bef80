# Fluxgate: `make up` runs the whole stack locally, `make test` runs the tests. Both set up first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fluxgate-installed

.PHONY: help setup up test lint format clean bench bench-submit_to_result bench-batching bench-sync_facade bench-balancer

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
	$(VENV)/bin/ruff check apps tests benchmarks clients
	$(VENV)/bin/ruff format --check apps tests benchmarks clients
	$(VENV)/bin/mypy

format: setup  ## apply ruff's formatting and fixes
	$(VENV)/bin/ruff format apps tests benchmarks
	$(VENV)/bin/ruff check --fix apps tests benchmarks

bench: bench-submit_to_result bench-batching bench-sync_facade bench-balancer  ## run every benchmark (results in benchmarks/results/)

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
