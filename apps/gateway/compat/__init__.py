"""Drop-in routes for the APIs our users come from (docs/migrating.md).

Each surface is a thin router over the native service: it maps the old request onto a native
task type and input, submits through the same path as `POST /tasks`, and maps the native job
view back onto the old answer. Nothing is implemented twice. Off unless `FLUXGATE_COMPAT` names
it (`backserv`, `backendai`, `imagetext`, `wavespeed`, or `all`) — but for the OpenAI Images API
(`openai/`), which most image clients speak: on unless `FLUXGATE_OPENAI_API=false`.
"""

from __future__ import annotations

from fastapi import APIRouter

from apps.gateway.settings import GatewaySettings

SURFACES = ("backserv", "backendai", "imagetext", "wavespeed")


def enabled(settings: GatewaySettings) -> list[str]:
    names = {name.lower() for name in settings.compat}
    return list(SURFACES) if "all" in names else [s for s in SURFACES if s in names]


def routers(settings: GatewaySettings) -> list[APIRouter]:
    """The routers of the enabled surfaces; include them before the native routes (WaveSpeed's
    `POST /flux` accepts both body shapes)."""
    from apps.gateway.compat import backendai, backserv, imagetext, wavespeed

    modules = {
        "backserv": backserv,
        "backendai": backendai,
        "imagetext": imagetext,
        "wavespeed": wavespeed,
    }
    chosen = [modules[name].router for name in enabled(settings)]
    return [*chosen, *_openai_routers(settings)]


def _openai_routers(settings: GatewaySettings) -> list[APIRouter]:
    from apps.gateway.compat import openai

    return openai.routers() if settings.openai_api else []


# Routes of each surface whose bodies carry images (they get the upload body limit).
UPLOAD_PATHS = {
    "backserv": ("/submit_task",),
    "backendai": ("/api/v1/tasks/create/", "/api/v1/tasks/submit/"),
    "imagetext": ("/api/process",),
    "wavespeed": (),
}


def upload_paths(settings: GatewaySettings) -> list[str]:
    paths = [path for name in enabled(settings) for path in UPLOAD_PATHS[name]]
    if settings.openai_api:
        from apps.gateway.compat import openai

        paths += openai.UPLOAD_PATHS
    return paths
