"""A real HTTP webhook receiver for tests: verifies signatures and answers as scripted."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from apps.common.security.signing import webhook_signature_valid
from devtools.procs import free_port, poll_until


@dataclass(frozen=True)
class Answer:
    """One scripted answer: a status, its headers (`Retry-After`, `Location`), and how long to
    hold the request before answering (a hanging receiver)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hang_s: float = 0.0


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    verified: bool
    answered: int
    raw: bytes = b""
    # time.monotonic() when the request arrived.
    at: float = 0.0


@dataclass
class WebhookReceiver:
    secret: str
    port: int = field(default_factory=free_port)
    deliveries: list[Delivery] = field(default_factory=list)
    # path -> answers, in order; 200 once they run out.
    script: dict[str, deque[Answer]] = field(default_factory=lambda: defaultdict(deque))

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/{path}"

    def answer(self, path: str, *answers: int | Answer) -> None:
        self.script[path].extend(a if isinstance(a, Answer) else Answer(a) for a in answers)

    def at(self, path: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.path == path]

    def wait_for(self, path: str, count: int, *, timeout: float = 30) -> list[Delivery]:
        return poll_until(
            lambda: len(got := self.at(path)) >= count and got,
            timeout=timeout,
            what=f"{count} deliveries at /{path}",
        )

    async def _hook(self, request: Request) -> Response:
        arrived = time.monotonic()
        path = request.path_params["path"]
        body = await request.body()
        queue = self.script[path]
        answer = queue.popleft() if queue else Answer()
        self.deliveries.append(
            Delivery(
                path=path,
                headers=dict(request.headers),
                body=orjson.loads(body),
                verified=webhook_signature_valid(request.headers, body, self.secret),
                answered=answer.status,
                raw=body,
                at=arrived,
            )
        )
        if answer.hang_s:
            await asyncio.sleep(answer.hang_s)
        return Response(status_code=answer.status, headers=answer.headers)

    def start(self) -> WebhookReceiver:
        app = Starlette(routes=[Route("/{path:path}", self._hook, methods=["POST"])])
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        poll_until(lambda: self._server.started, timeout=10, what="webhook receiver")
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
