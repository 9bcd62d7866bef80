"""The seeds' result relay, for `benchmarks/overhead.py`: a worker POSTs a task's result to
`/results/{task_id}`; the relay pushes it to the clients on `/ws/{task_id}` and closes them.

A result that arrives before its client subscribed is kept and sent on subscribing (a seed relay
would drop it; keeping it lets both sides of the benchmark deliver every job).
Run: `uvicorn benchmarks.servers.seed_relay:app`.
"""

from __future__ import annotations

from collections import defaultdict

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect

app = FastAPI()
subscribers: dict[str, set[WebSocket]] = defaultdict(set)
early: dict[str, str] = {}


@app.websocket("/ws/{task_id}")
async def subscribe(websocket: WebSocket, task_id: str) -> None:
    await websocket.accept()
    text = early.pop(task_id, None)
    if text is not None:
        await websocket.send_text(text)
        await websocket.close()
        return
    subscribers[task_id].add(websocket)
    try:
        while True:  # until the client leaves or the result's push closes the socket
            await websocket.receive_text()
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        waiting = subscribers.get(task_id)
        if waiting is not None:
            waiting.discard(websocket)
            if not waiting:
                del subscribers[task_id]


@app.post("/results/{task_id}")
async def push_result(task_id: str, request: Request) -> dict[str, int]:
    text = (await request.body()).decode()
    sockets = subscribers.pop(task_id, set())
    if not sockets:
        early[task_id] = text
    for websocket in sockets:
        await websocket.send_text(text)
        await websocket.close()
    return {"delivered": len(sockets)}
