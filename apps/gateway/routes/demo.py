"""`GET /`: the demo page (plain HTML and JavaScript in `apps/gateway/static`, no build step),
and the TypeScript client's committed build it imports, at `/demo/client/`."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# In a checkout the client's build is clients/js/dist; the image copies it under static/client
# (the gateway is installed there as a package, away from the repository).
CLIENT_DIST = next(
    (
        path
        for path in (STATIC_DIR / "client", Path(__file__).resolve().parents[3] / "clients/js/dist")
        if path.is_dir()
    ),
    STATIC_DIR / "client",
)
router = APIRouter(include_in_schema=False)

# Scripts and styles from this origin only; the WebSocket and images may live on another port
# (without the front door the notifier is :8300), so those two may go to any http(s)/ws(s) URL.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data: blob: http: https:; connect-src 'self' ws: wss: http: https:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@router.get("/")
async def demo_page() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "index.html",
        headers={"Content-Security-Policy": PAGE_POLICY, "Cache-Control": "no-cache"},
    )
