"""Errors under /v1/ in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`: the
one place a native error becomes an OpenAI one, whichever layer refused the request (auth, the
body limit, validation, admission, an unknown path)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIX = "/v1/"
# Our 422s are OpenAI's 400s: its SDKs raise `BadRequestError` for a bad parameter.
_STATUS = {422: 400}


def error_type(status: int) -> str:
    if status == 429:
        return "requests"
    return "server_error" if status >= 500 else "invalid_request_error"


def openai_error(status: int, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type(status), "param": param, "code": code}}


def from_native(status: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A native error answer (`{"error": {"code", "message", "field"?}, "task"?}`) as OpenAI's:
    the same code and message, `field` as `param`, and the task's id kept where there was one."""
    native = body["error"]
    status = _STATUS.get(status, status)
    answer = openai_error(status, native["code"], native["message"], native.get("field"))
    task = body.get("task")
    if isinstance(task, dict) and "task_id" in task:
        answer["error"]["task_id"] = task["task_id"]
    return status, answer


def _is_native(body: object) -> bool:
    return (
        isinstance(body, dict)
        and isinstance(body.get("error"), dict)
        and "code" in body["error"]
        and "type" not in body["error"]
    )


class OpenAIErrorMiddleware:
    """Rewrites the native error answers of /v1/ paths in OpenAI's shape; everything else
    passes untouched (only error bodies, which are small, are held)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def rewriting_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message
                return
            if start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                await self._send_rewritten(send, start, b"".join(chunks))

        await self.app(scope, receive, rewriting_send)

    @staticmethod
    async def _send_rewritten(send: Send, start: Message, body: bytes) -> None:
        status = start["status"]
        headers = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        if _is_native(parsed):
            status, answer = from_native(status, parsed)
            body = orjson.dumps(answer)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
