"""A real WebSocket client that reads a task's messages until the server closes."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect


@dataclass
class Transcript:
    messages: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None

    @property
    def events(self) -> list[str]:
        return [m["event"] for m in self.messages]


def read_all(ws: ClientConnection, *, timeout: float = 60) -> Transcript:
    transcript = Transcript()
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"socket still open after {timeout}s: {transcript.events}")
            transcript.messages.append(json.loads(ws.recv(timeout=remaining)))
    except ConnectionClosed:
        pass
    transcript.close_code = ws.close_code
    return transcript


def watch(url: str, *, timeout: float = 60) -> Transcript:
    with connect(url, open_timeout=10, compression=None) as ws:
        return read_all(ws, timeout=timeout)
