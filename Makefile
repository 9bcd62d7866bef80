# Fluxgate: `make up` runs the whole stack locally, `make test` runs the tests. Both set up first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fluxgate-installed

.PHONY: help setup up test lint format clean run-loadtest bench bench-submit bench-overhead bench-fanout bench-efficiency bench-submit_to_result bench-batching bench-sync_facade bench-balancer bench-task_types bench-cold_start bench-durability bench-recovery bench-fairness bench-previews chart-check setup-cluster build-image deploy-services deploy-app deploy-balancer start-workshop api-ui flower-ui show-ui delete-cluster bench-continuous bench-adapters

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
	$(VENV)/bin/ruff check apps tests benchmarks clients loadtest devtools nginx
	$(VENV)/bin/ruff format --check apps tests benchmarks clients loadtest devtools nginx
	$(VENV)/bin/mypy

format: setup  ## apply ruff's formatting and fixes
	$(VENV)/bin/ruff format apps tests benchmarks clients loadtest devtools nginx
	$(VENV)/bin/ruff check --fix apps tests benchmarks clients loadtest devtools nginx

run-loadtest: setup  ## locust against the stack (started if needed): USERS=4 SPAWN_RATE=2 DURATION=40s
	USERS=$(or $(USERS),4) SPAWN_RATE=$(or $(SPAWN_RATE),2) DURATION=$(or $(DURATION),40s) scripts/run-loadtest.sh

bench: bench-submit bench-overhead bench-fanout bench-efficiency bench-submit_to_result bench-batching bench-sync_facade bench-balancer bench-task_types bench-cold_start bench-durability bench-recovery bench-fairness bench-previews bench-continuous bench-adapters ## run every benchmark (results in benchmarks/results/)

bench-submit: setup  ## accepted POST /flux per second: gateway vs bare FastAPI+LPUSH vs Flask+apply_async (wrk)
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q wrk >/dev/null; } || { echo "bench-submit needs wrk (apt install wrk)"; exit 1; }
	$(PY) benchmarks/submit.py

bench-overhead: setup  ## submit -> WebSocket result minus model compute, 20 jobs/s: Fluxgate vs the seeds' design, interleaved
	$(PY) benchmarks/overhead.py

bench-fanout: setup  ## 10,000 WebSocket subscribers, 100 final views at once: notifier vs a bare websockets server, alternating
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

bench-task_types: setup  ## CPU time of each task type's work on a 512x512 photo
	$(PY) benchmarks/task_types.py

bench-cold_start: setup  ## from zero model servers: time to /readyz, to the first result; Redis load of 10,000 waiting jobs
	$(PY) benchmarks/cold_start.py

bench-durability: setup  ## accepted POST /flux per second with Redis AOF off, appendfsync everysec, always (wrk)
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q wrk >/dev/null; } || { echo "bench-durability needs wrk (apt install wrk)"; exit 1; }
	$(PY) benchmarks/durability.py

bench-recovery: setup  ## seconds from a fault (worker SIGKILL, Redis SIGKILL/SIGTERM) until the running job runs again
	$(PY) benchmarks/recovery.py

bench-fairness: setup  ## key A queues 200 jobs, key B then 10: B's submit -> start wait, fair share vs FIFO
	$(PY) benchmarks/fairness.py

bench-previews: setup  ## what live previews cost: submit -> result without, with, and every step
	$(PY) benchmarks/previews.py

bench-adapters: setup  ## LoRA adapter loads and p99: affinity routing vs plain least-outstanding, 12 adapters, Zipf mix
	$(PY) benchmarks/adapters.py

bench-continuous: setup  ## inference continuous vs window batching: Poisson mix, a small job during a big one, preview cost
	$(PY) benchmarks/continuous.py

chart-check: setup  ## helm lint + template of every chart mode, kubernetes-validate, helmfile (offline)
	VENV=$(VENV) scripts/chart-check.sh

# --- Kubernetes on k3d (docs/deploy.md): `make start-workshop`, then http://localhost:8080/ ---
K3D_CLUSTER ?= fluxgate
NAMESPACE ?= fluxgate
IMAGE ?= fluxgate:dev
API_UI_PORT ?= 8081
KUBECTL = kubectl --context k3d-$(K3D_CLUSTER) -n $(NAMESPACE)
# Pinned helm + helmfile from scripts/get-helm-tools.sh (no install needed); dev uses local charts.
HELMFILE = bin=$$(scripts/get-helm-tools.sh) && $$bin/helmfile -b $$bin/helm -f helmfile.yaml

setup-cluster:  ## k3d cluster "fluxgate" with a registry; localhost:8080 -> its ingress
	@scripts/need.sh docker k3d kubectl
	k3d cluster list $(K3D_CLUSTER) >/dev/null 2>&1 || k3d cluster create $(K3D_CLUSTER) \
	  --registry-create $(K3D_CLUSTER)-registry:0.0.0.0:5111 -p "8080:80@loadbalancer" --wait

build-image:  ## docker build fluxgate:dev (CPU torch) and import it into the k3d cluster
	@scripts/need.sh docker k3d
	docker build -t $(IMAGE) .
	k3d image import $(IMAGE) -c $(K3D_CLUSTER)

deploy-services:  ## Redis (charts/redis: AOF, password Secret) into the cluster
	@scripts/need.sh kubectl python3
	$(HELMFILE) -e dev -l name=redis sync --skip-deps

deploy-app:  ## every dev release (redis, then fluxgate) with helmfile -e dev sync
	@scripts/need.sh kubectl python3
	$(HELMFILE) -e dev sync --skip-deps

deploy-balancer:  ## re-sync the fluxgate release only (balancer, inference, ... after a change)
	@scripts/need.sh kubectl python3
	$(HELMFILE) -e dev -l name=fluxgate sync --skip-deps

start-workshop: setup-cluster build-image deploy-services deploy-app  ## cluster, image, redis, app
	@$(MAKE) --no-print-directory show-ui

api-ui:  ## port-forward the nginx front door to localhost:8081 (API_UI_PORT)
	@scripts/need.sh kubectl
	$(KUBECTL) port-forward svc/fluxgate-nginx $(API_UI_PORT):8080

flower-ui:  ## port-forward Flower to localhost:5555 (login: make show-ui)
	@scripts/need.sh kubectl
	$(KUBECTL) port-forward svc/fluxgate-flower 5555:5555

show-ui:  ## print the URLs and the Flower login
	@scripts/need.sh kubectl
	@echo "API + demo page: http://localhost:8080/  (k3d load balancer -> ingress -> nginx)"
	@echo "                 http://localhost:$(API_UI_PORT)/  (after make api-ui)"
	@echo "Flower:          http://localhost:5555/  (after make flower-ui), login: $$($(KUBECTL) get secret fluxgate-secrets -o jsonpath='{.data.flower-basic-auth}' | base64 -d)"
	@echo "Load test:       make run-loadtest KUBE_CONTEXT=k3d-$(K3D_CLUSTER)"

delete-cluster:  ## delete the k3d cluster (and its registry)
	@scripts/need.sh k3d
	k3d cluster delete $(K3D_CLUSTER)
	-k3d registry delete k3d-$(K3D_CLUSTER)-registry

clean:  ## remove local data (outputs, redis, model cache)
	rm -rf .data
