"""The OpenAI Images API (`/v1/images/generations`, `/v1/images/edits`, `/v1/models`) as thin
routes over the native service, so OpenAI SDKs and the apps built on them work unchanged with
`base_url` pointed here. On unless `FLUXGATE_OPENAI_API=false`; docs/openai.md maps every
parameter."""

from __future__ import annotations

from fastapi import APIRouter

from apps.gateway.compat.openai import images, models

# Its routes whose bodies carry images (they get the upload body limit).
UPLOAD_PATHS = (images.EDIT_PATH,)


def routers() -> list[APIRouter]:
    return [images.router, models.router]
