"""The nginx sync facade vs submit + WebSocket wait, 20 concurrent clients, on the real stack.

Starts redis, every service and nginx on free ports (tiny model, CPU). Each round runs 20
concurrent clients one way, then 20 the other (alternating which goes first), and records each
client's wall time from request to finished view: `POST /sync/flux` through nginx, or
`POST /flux` to the gateway then waiting on the WebSocket. Reports p50/p99 of both and the
difference, which is what the facade adds (or saves: it needs no WebSocket handshake).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apps.common.service.settings import DEV_INTERNAL_SECRET as DEV_SECRET
from benchmarks.common import machine, summary_ms, write_result
from devtools.procs import Proc, free_port, start_redis, start_stack, wait_http_ok, wait_stack_ready
from nginx.render import render

BODY = {"prompt": "a red fox", "width": 64, "height": 64, "num_inference_steps": 2, "seed": 1}
TERMINAL = {"succeeded", "failed", "canceled", "expired"}


async def via_facade(client: httpx.AsyncClient, front: str, seed: int) -> float:
    started = time.perf_counter()
    response = await client.post(f"{front}/sync/flux", json={**BODY, "seed": seed})
    assert response.status_code == 200 and response.json()["status"] == "succeeded", response.text
    return (time.perf_counter() - started) * 1000


async def via_websocket(client: httpx.AsyncClient, gateway: str, seed: int) -> float:
    started = time.perf_counter()
    answer = (await client.post(f"{gateway}/flux", json={**BODY, "seed": seed})).json()
    async with websockets.connect(answer["urls"]["ws"], compression=None) as ws:
        async for message in ws:
            view = json.loads(message)
            if view["status"] in TERMINAL:
                break
    assert view["status"] == "succeeded", view
    return (time.perf_counter() - started) * 1000


async def measure(
    front: str, gateway: str, clients: int, rounds: int
) -> tuple[list[float], list[float]]:
    facade: list[float] = []
    direct: list[float] = []
    limits = httpx.Limits(max_connections=clients * 2)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await asyncio.gather(*(via_facade(client, front, i) for i in range(clients)))
        await asyncio.gather(*(via_websocket(client, gateway, i) for i in range(clients)))
        for r in range(rounds):
            order = [("facade", front), ("direct", gateway)]
            if r % 2:
                order.reverse()
            for name, url in order:
                how = via_facade if name == "facade" else via_websocket
                times = await asyncio.gather(
                    *(how(client, url, r * 100 + i) for i in range(clients))
                )
                (facade if name == "facade" else direct).extend(times)
    return facade, direct


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    nginx = shutil.which("nginx")
    if nginx is None:
        raise SystemExit("nginx with the Lua module is needed (make setup as root)")

    with tempfile.TemporaryDirectory(prefix="fluxgate-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        redis_proc, redis_url = start_redis(tmp)
        ports, env, procs = start_stack(redis_url, tmp, worker_concurrency=args.clients)
        try:
            wait_stack_ready(ports, procs)
            port = free_port()
            conf = render(
                tmp / "nginx",
                listen=f"127.0.0.1:{port}",
                gateway=f"127.0.0.1:{ports['gateway']}",
                notifier=f"127.0.0.1:{ports['notifier']}",
                max_body="1m",
                workers="1",
            )
            procs["nginx"] = Proc(
                "nginx",
                [nginx, "-p", str(tmp / "nginx"), "-c", str(conf), "-e", "stderr"],
                # The facade's Lua reads the notifier's wait with a token of the services' secret.
                {"FLUXGATE_INTERNAL_SECRET": env.get("FLUXGATE_INTERNAL_SECRET", DEV_SECRET)},
                tmp / "nginx.log",
            ).start()
            front = f"http://127.0.0.1:{port}"
            wait_http_ok(f"{front}/healthz", timeout=20, proc=procs["nginx"])
            facade, direct = asyncio.run(
                measure(front, f"http://127.0.0.1:{ports['gateway']}", args.clients, args.rounds)
            )
        finally:
            for proc in procs.values():
                proc.stop()
            redis_proc.stop()

    f, d = summary_ms(facade), summary_ms(direct)
    print(f"{args.rounds} rounds x {args.clients} concurrent clients, 64x64, 2 steps, tiny model")
    print(f"{'ms':<34}{'p50':>8}{'p99':>8}")
    print(f"{'/sync/flux through nginx':<34}{f['p50']:>8}{f['p99']:>8}")
    print(f"{'POST /flux + WebSocket wait':<34}{d['p50']:>8}{d['p99']:>8}")
    print(
        f"{'facade - direct':<34}{f['p50'] - d['p50']:>8.1f}{f['p99'] - d['p99']:>8.1f}"
        "   (goal: p50 <= 3 ms)"
    )
    path = write_result(
        "sync_facade",
        {
            "facade_p50_ms": f["p50"],
            "facade_p99_ms": f["p99"],
            "direct_p50_ms": d["p50"],
            "direct_p99_ms": d["p99"],
            "added_p50_ms": round(f["p50"] - d["p50"], 1),
            "added_p99_ms": round(f["p99"] - d["p99"], 1),
            "requests": len(facade) + len(direct),
            "machine": machine(),
            "params": {
                "clients": args.clients,
                "rounds": args.rounds,
                "width": 64,
                "height": 64,
                "steps": 2,
                "auth": False,
                "model": "tiny-flux",
            },
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
