"""Several models and LoRA adapters on one pool, through the whole stack: `GET /models`, 422s
that name the field, the job's result naming its model and adapters, a model only on the servers
that serve it, a warm server preferred for an adapter, and a corrupt adapter failing its job only.

Two model servers: `inference-0` serves both models, `inference-1` only `draft`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import httpx
import pytest
import redis

from apps.common.redis import keys
from apps.inference.pipelines.tiny import ensure_tiny_flux
from devtools.loras import write_loras
from devtools.procs import poll_until
from tests.conftest import Stack, private_stack

MODELS = {
    "default": "draft",
    "models": [
        {"id": "draft", "default_steps": 2, "uses_guidance": False, "max_side": 512},
        {"id": "final", "default_steps": 3},
    ],
}


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("models")
    loras = tmp / "loras"
    write_loras(loras, ensure_tiny_flux(tmp / "models"), ["ink", "neon"])
    (loras / "broken.safetensors").write_bytes(b"\x00" * 64)
    env = {
        "FLUXGATE_MODELS": json.dumps(MODELS),
        "FLUXGATE_LORA_DIR": str(loras),
        "FLUXGATE_MODEL_CACHE_DIR": str(tmp / "models"),
        "FLUXGATE_INFERENCE_MAX_MODELS": "2",
        "FLUXGATE_BALANCER_HEALTH_INTERVAL_S": "0.3",
    }
    backends = [
        {"FLUXGATE_INFERENCE_MODELS": "draft,final"},
        {"FLUXGATE_INFERENCE_MODELS": "draft"},
    ]
    with private_stack(tmp, env=env, backends=backends) as stack:
        yield stack


def backends(stack: Stack) -> dict[str, dict[str, object]]:
    """The balancer's view of each backend, by URL."""
    listed = httpx.get(f"{stack.balancer}/backends", timeout=5).json()
    return {b["url"]: b for b in listed}


_SEEDS = itertools.count(7_000)


def run(stack: Stack, **fields: object) -> dict[str, object]:
    """Submit a small job (steps left to the model's default unless given) and wait for its end."""
    body = {"prompt": "a lighthouse", "width": 64, "height": 64, "seed": next(_SEEDS), **fields}
    response = httpx.post(f"{stack.gateway}/flux", json=body, timeout=10)
    assert response.status_code == 202, response.text
    return stack.wait_status(response.json()["task_id"], "succeeded", "failed", timeout=90)


def test_get_models_lists_models_and_adapters_without_a_key(pool: Stack) -> None:
    listing = httpx.get(f"{pool.gateway}/models", timeout=5).json()
    assert listing["default"] == "draft"
    assert [m["id"] for m in listing["models"]] == ["draft", "final"]
    assert "source" not in listing["models"][0], "where the weights live stays inside"
    assert listing["adapters"] == ["broken", "ink", "neon"]
    assert listing["max_loras"] == 4


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/flux", {"prompt": "x", "model": "nope"}, "model"),
        ("/flux", {"prompt": "x", "loras": [{"name": "ink"}, {"name": "nope"}]}, "loras[1].name"),
        ("/flux", {"prompt": "x", "loras": [{"name": "ink", "scale": 2.5}]}, "loras[0].scale"),
        ("/flux", {"prompt": "x", "model": "draft", "width": 1024}, "width"),
        ("/tasks", {"type": "flux", "input": {"prompt": "x", "model": "nope"}}, "input.model"),
        (
            "/tasks",
            {"type": "flux", "input": {"prompt": "x", "loras": [{"name": "nope"}]}},
            "input.loras[0].name",
        ),
    ],
)
def test_an_unknown_model_or_adapter_is_a_422_naming_the_field(
    pool: Stack, route: str, body: dict[str, object], field: str
) -> None:
    response = httpx.post(f"{pool.gateway}{route}", json=body, timeout=10)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


def test_the_result_names_the_model_and_adapters_and_the_model_defaults_apply(
    pool: Stack,
) -> None:
    view = run(pool, loras=[{"name": "ink", "scale": 0.7}])
    assert view["status"] == "succeeded", view
    result = view["result"]
    assert isinstance(result, dict)
    assert result["model"] == "draft"
    assert result["loras"] == [{"name": "ink", "scale": 0.7}]
    # draft runs 2 steps unless asked (FluxInput says 28): the cost counts the steps it runs.
    assert view["cost"] == pytest.approx(64 * 64 / 1e6 * 2, abs=1e-4)


def _model_jobs(pool: Stack, model: str) -> int:
    usage = httpx.get(f"{pool.gateway}/usage", timeout=10).json()
    return int(usage["models"].get(model, {}).get("jobs", 0))


def test_a_record_names_only_what_differs_from_the_defaults(pool: Stack) -> None:
    """A worker one release older refuses input fields it does not know: a job that names no
    model and no adapter is stored as before the registry, and still says what it ran on."""
    client = redis.Redis.from_url(pool.redis_url, decode_responses=True)
    plain, chosen = run(pool), run(pool, model="final", loras=[{"name": "ink", "scale": 0.5}])
    stored = [
        json.loads(client.hget(keys.job_key(str(v["task_id"])), "input") or "{}")
        for v in (plain, chosen)
    ]
    assert "model" not in stored[0] and "loras" not in stored[0], stored[0]
    assert stored[1]["model"] == "final" and stored[1]["loras"] == [{"name": "ink", "scale": 0.5}]
    assert plain["result"]["model"] == "draft"  # type: ignore[index]
    assert chosen["result"]["model"] == "final"  # type: ignore[index]


def test_a_model_runs_only_on_the_servers_that_serve_it(pool: Stack) -> None:
    before = backends(pool)
    metered = _model_jobs(pool, "final")
    views = [run(pool, model="final") for _ in range(3)]
    assert all(v["status"] == "succeeded" for v in views), views
    assert all(v["result"]["model"] == "final" for v in views)  # type: ignore[index]
    after = backends(pool)
    served = {url: int(after[url]["served"]) - int(before[url]["served"]) for url in after}
    both = next(url for url, b in after.items() if "final" in b["serves"])  # type: ignore[operator]
    assert served[both] == 3 and sum(served.values()) == 3, served
    # Usage says which model the key's jobs ran on.
    poll_until(lambda: _model_jobs(pool, "final") == metered + 3, timeout=10, what="usage by model")


def test_jobs_for_an_adapter_go_to_the_server_that_has_it_loaded(pool: Stack) -> None:
    first = run(pool, loras=[{"name": "neon"}])
    assert first["status"] == "succeeded", first

    def holders() -> list[str] | None:
        found = [u for u, b in backends(pool).items() if "neon" in b["loaded_adapters"]]  # type: ignore[operator]
        return found if len(found) == 1 else None

    holder = poll_until(holders, timeout=10, what="one backend to report neon loaded")[0]
    before = backends(pool)
    for _ in range(4):
        assert run(pool, loras=[{"name": "neon"}])["status"] == "succeeded"
    after = backends(pool)
    served = {url: int(after[url]["served"]) - int(before[url]["served"]) for url in after}
    assert served[holder] == 4, served
    assert [u for u, b in after.items() if "neon" in b["loaded_adapters"]] == [holder]  # type: ignore[operator]


def test_a_corrupt_adapter_fails_its_job_clearly_and_the_servers_stay_healthy(pool: Stack) -> None:
    view = run(pool, loras=[{"name": "broken"}])
    assert view["status"] == "failed"
    error = view["error"]
    assert isinstance(error, dict) and error["code"] == "adapter_invalid", error
    assert "broken" in str(error["message"])
    for url in backends(pool):
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    assert all(b["state"] == "healthy" for b in backends(pool).values())
    assert run(pool, loras=[{"name": "ink"}])["status"] == "succeeded"
