"""The anchor of `benchmarks/fanout.py`: a bare `websockets` server (its asyncio server on uvloop,
no ASGI, no framework) with the notifier's protocol on `/ws/tasks/{task_id}`: the job's snapshot
from its hash (the notifier's view, queue position included), then each newer view published on
the task's channel (one pattern subscription, as the notifier has), sent to all of the task's
subscribers with `websockets.broadcast`; the socket closes after the final view. `GET /readyz`
answers once the subscription is in place.

Run: `python -m benchmarks.servers.bare_fanout --port P --redis-url URL`.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import cast

import orjson
import redis.asyncio as aioredis
import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.http11 import Request, Response

from apps.common.jobs.positions import QueuePositions
from apps.common.jobs.record import JobRecord
from apps.common.jobs.view import JobViews
from apps.common.redis import keys
from apps.common.redis.client import async_redis

PATH = "/ws/tasks/"
FINAL = {"succeeded", "failed", "canceled", "expired"}
CLOSE_NOT_FOUND = 4404


@dataclass
class Group:
    """One task's subscribers, and the newest view published while any of them was joining."""

    # Set when the final view went out: every member's handler returns, which closes its socket.
    done: asyncio.Future[None]
    members: set[ServerConnection] = field(default_factory=set)
    joining: int = 0
    last_seq: int = -1
    last_text: str = ""
    last_final: bool = False


class BareFanout:
    def __init__(self, client: aioredis.Redis, views: JobViews) -> None:
        self._redis = client
        self._views = views
        self._positions = QueuePositions(client)
        self._groups: dict[str, Group] = {}
        self.ready = asyncio.Event()

    async def serve_socket(self, ws: ServerConnection) -> None:
        """Snapshot first, then the group's broadcasts; a view published while the snapshot
        was read is sent after it if it is newer (the notifier's "subscribe, then read")."""
        task_id = ws.request.path[len(PATH) :] if ws.request else ""
        group = self._groups.get(task_id)
        if group is None:
            group = self._groups[task_id] = Group(asyncio.get_running_loop().create_future())
        group.joining += 1
        try:
            raw = await self._redis.hgetall(keys.job_key(task_id))
            if not raw:
                await ws.close(CLOSE_NOT_FOUND, "task not found")
                return
            record = JobRecord.from_hash(cast(dict[str, str], raw))  # a decoding client
            position = await self._positions.of(record)
            snapshot = self._views.render(record, "snapshot", queue_position=position)
            await ws.send(snapshot.model_dump_json())
            if record.status.is_terminal:
                return  # returning closes the socket (1000)
            if group.last_seq > record.seq:
                await ws.send(group.last_text)
                if group.last_final:
                    return
            group.joining -= 1
            group.members.add(ws)
            # Until the final view, or the client leaves (the future `wait_closed` awaits). The
            # handler's own task closes the socket: no task per socket when a task ends.
            await asyncio.wait(
                (group.done, ws.connection_lost_waiter), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if ws in group.members:
                group.members.discard(ws)
            else:
                group.joining -= 1
            if not group.members and not group.joining:
                self._groups.pop(task_id, None)

    def dispatch(self, task_id: str, text: str) -> None:
        group = self._groups.get(task_id)
        if group is None:
            return
        view = orjson.loads(text)
        final = view["status"] in FINAL
        group.last_seq, group.last_text, group.last_final = int(view["seq"]), text, final
        broadcast(group.members, text)
        if final and not group.done.done():
            group.done.set_result(None)

    async def read_events(self) -> None:
        pubsub = self._redis.pubsub()
        await pubsub.psubscribe(keys.EVENTS_PATTERN)
        async for message in pubsub.listen():
            if message["type"] == "psubscribe":
                self.ready.set()
            elif message["type"] == "pmessage":
                self.dispatch(keys.task_id_from_channel(message["channel"]), message["data"])


def answer_http(ws: ServerConnection, request: Request) -> Response | None:
    if request.path == "/readyz":
        return ws.respond(HTTPStatus.OK, "ok\n")
    if not request.path.startswith(PATH) or "/" in request.path[len(PATH) :]:
        return ws.respond(HTTPStatus.NOT_FOUND, "not found\n")
    return None  # go on with the WebSocket handshake


async def run(args: argparse.Namespace) -> None:
    # The notifier's client: a blocking pool of 64 connections, replies decoded to str.
    client = async_redis(args.redis_url)
    fanout = BareFanout(
        client,
        JobViews(public_base=args.public_url, public_ws_base=f"ws://{args.host}:{args.port}"),
    )
    reader = asyncio.create_task(fanout.read_events())
    await asyncio.wait_for(fanout.ready.wait(), timeout=10)
    async with serve(
        fanout.serve_socket,
        args.host,
        args.port,
        process_request=answer_http,
        compression=None,  # as the notifier: per-message deflate off
        open_timeout=60,  # as patient as the clients (uvicorn has no handshake limit)
        backlog=2048,  # uvicorn's, where asyncio's default is 100
    ) as server:
        await asyncio.gather(server.serve_forever(), reader)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--public-url", default="http://127.0.0.1:8000", help="for the views")
    uvloop.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
