"""Tiny real servers that misbehave on purpose: what the real stack will not do on demand."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from devtools.procs import free_port


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    # Close the connection without a response: a transport error for the client.
    drop: bool = False


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class FakeHTTP:
    """A real HTTP server on a free port: answers from a script in order, then `default`."""

    def __init__(self, *answers: Answer, default: Answer | None = None) -> None:
        self._answers = list(answers)
        self._default = default or Answer(404, {"error": {"code": "not_found", "message": "-"}})
        self._lock = threading.Lock()
        self.requests: list[Seen] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _next(self, seen: Seen) -> Answer:
        with self._lock:
            self.requests.append(seen)
            return self._answers.pop(0) if self._answers else self._default

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                seen = Seen(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
                answer = fake._next(seen)
                if answer.drop:
                    self.close_connection = True
                    return
                payload = b"" if answer.body is None else json.dumps(answer.body).encode()
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep the test output clean

        return Handler

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


Script = Callable[[ServerConnection], None]


def view(task_id: str, seq: int, status: str, progress: int = 0, event: str = "progress") -> str:
    """A job view as the notifier sends it (only what the client reads)."""
    return json.dumps(
        {
            "task_id": task_id,
            "type": "flux",
            "status": status,
            "progress": progress,
            "seq": seq,
            "created_at": "2026-01-01T00:00:00.000Z",
            "started_at": None,
            "finished_at": None,
            "queue_position": None,
            "result": None,
            "error": None,
            "urls": {"status": "-", "cancel": "-", "ws": "-"},
            "timings": {},
            "event": event,
        }
    )


def send(*messages: str, close_code: int = 1000, reason: str = "") -> Script:
    def script(ws: ServerConnection) -> None:
        for message in messages:
            ws.send(message)
        ws.close(code=close_code, reason=reason)

    return script


def send_and_hold(*messages: str) -> Script:
    """Send, then keep the socket open until the client leaves."""

    def script(ws: ServerConnection) -> None:
        for message in messages:
            ws.send(message)
        with contextlib.suppress(ConnectionClosed):
            ws.recv()

    return script


class FakeWS:
    """A real WebSocket server: connection n runs script n (the last one repeats)."""

    def __init__(self, *scripts: Script, refuse: int = 0) -> None:
        """`refuse`: answer the first handshakes 503, as a notifier that is restarting."""
        self._scripts = scripts
        self._lock = threading.Lock()
        self.connections: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.refused = 0
        self._refuse = refuse
        self._server: Server = serve(
            self._handle,
            "127.0.0.1",
            free_port(),
            compression=None,
            process_request=self._maybe_refuse,
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        host, port = self._server.socket.getsockname()[:2]
        return f"ws://{host}:{port}"

    def _maybe_refuse(self, ws: ServerConnection, _request: Request) -> Response | None:
        with self._lock:
            if self.refused >= self._refuse:
                return None
            self.refused += 1
        return ws.respond(503, "restarting\n")

    def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None  # set once the handshake is done, as it is here
        with self._lock:
            index = len(self.connections)
            self.connections.append({k.lower(): v for k, v in ws.request.headers.raw_items()})
            self.paths.append(ws.request.path)
        with contextlib.suppress(ConnectionClosed):  # the client may leave first
            self._scripts[min(index, len(self._scripts) - 1)](ws)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)
