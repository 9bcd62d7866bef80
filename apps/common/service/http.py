"""FastAPI pieces every service uses: the error handler and the health routes' shapes."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, compile_path

from apps.common.service.errors import (
    BodyTooLarge,
    FluxgateError,
    IdempotencyInProgress,
    RateLimited,
    Unauthorized,
)
from apps.common.service.logging import get_logger

log = get_logger(__name__)


def _field_of(loc: tuple[int | str, ...]) -> str:
    if len(loc) == 2 and loc[0] == "header":
        # Name a header the way the API documents it: `Cancel-After`, not `cancel_after`.
        return "-".join(part.capitalize() for part in str(loc[1]).replace("_", "-").split("-"))
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def validation_error_body(exc: RequestValidationError) -> dict[str, object]:
    """`{"error": {"code": "invalid_input", "message", "field"}}` from pydantic's first error."""
    first = exc.errors()[0]
    field = _field_of(tuple(first.get("loc", ())))
    kind = first.get("type", "")
    if kind == "extra_forbidden":
        message = f"unknown field '{field}'"
    elif kind == "json_invalid":
        message = "body is not valid JSON"
    else:
        # Our validators' ValueErrors read "Value error, <reason>": the reason is the message.
        reason = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        message = f"{field}: {reason}"
    return {"error": {"code": "invalid_input", "message": message, "field": field}}


UNAVAILABLE_RETRY_AFTER_S = 1


# Keep browsers from sniffing, framing or leaking referrers of our answers, errors included.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def install_error_handlers(app: FastAPI) -> None:
    """Map every error to `{"error": {...}}` in one place; never leak a traceback."""

    @app.exception_handler(FluxgateError)
    async def _fluxgate_error(_request: Request, exc: FluxgateError) -> JSONResponse:
        headers: dict[str, str] = {}
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(exc.retry_after_s)
        elif exc.status_code == 503 or isinstance(exc, IdempotencyInProgress):
            # Something the service depends on is down for now: tell clients when to come back.
            headers["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER_S)
        if isinstance(exc, Unauthorized):
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_error_body(exc), status_code=422)

    @app.exception_handler(RedisError)
    async def _redis_down(_request: Request, exc: RedisError) -> JSONResponse:
        # Redis restarting or unreachable: nothing was lost, the caller may retry soon.
        log.error("redis error", error=repr(exc))
        return JSONResponse(
            {
                "error": {
                    "code": "unavailable",
                    "message": "the job store is unavailable; retry later",
                }
            },
            status_code=503,
            headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)},
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error", exc_info=exc)
        # Answered outside every middleware (Starlette's outermost layer): it adds its own.
        return JSONResponse(
            {"error": {"code": "internal", "message": "internal error"}},
            500,
            headers=SECURITY_HEADERS,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 400 and isinstance(exc.__cause__, BodyTooLarge):
            # A chunked body went over the limit while FastAPI read it: that is a 413, not JSON
            # that failed to parse.
            return JSONResponse(exc.__cause__.body(), status_code=413)
        if exc.status_code == 400:
            # FastAPI's "error parsing the body" (bytes that are not JSON): the body is invalid.
            return JSONResponse(
                {
                    "error": {
                        "code": "invalid_input",
                        "message": "body is not valid JSON",
                        "field": "body",
                    }
                },
                status_code=422,
            )
        if exc.status_code == 405:
            # A mounted app (static files, /metrics) names no methods: it serves reads.
            headers["Allow"] = ", ".join(_allowed_methods(request) or ["GET", "HEAD"])
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(
            exc.status_code, "http_error"
        )
        return JSONResponse(
            {"error": {"code": code, "message": str(exc.detail)}},
            status_code=exc.status_code,
            headers=headers,
        )


def _allowed_methods(request: Request) -> list[str]:
    """Every method served at this path: what the OpenAPI document declares for it (the contract
    clients and schema checkers read; FastAPI's included routers do not expose their routes'
    methods to matching), else what the app's own routes serve."""
    path = request.url.path
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        if compile_path(template)[0].match(path):
            methods |= {m.upper() for m in operations if m.upper() in _HTTP_METHODS}
    if not methods:
        for route in request.app.routes:
            match, _ = route.matches({**request.scope, "method": "__none__"})
            if match is not Match.NONE:
                methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
