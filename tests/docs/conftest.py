"""One stack for the documentation's snippets: redis, every service, a worker and nginx in front,
as `make up` runs them (public URLs through the front door, webhooks allowed to loopback), plus
the admin token the key-management snippets use and a local server for the photos the docs fetch
from outside hosts."""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image, ImageOps
from skimage import data as photos

from apps.worker.text.tiny_translator import ensure_tiny_translator, tiny_translator_dir
from devtools.procs import ROOT, free_port, start_redis, start_stack, wait_stack_ready
from tests.conftest import FAST_DELIVERY_ENV, INTERNAL_SECRET
from tests.nginx.front import start_front_door
from tests.tasktypes.imagesrv import serving

ADMIN_TOKEN = "docs-admin-token-0123456789abcdef"
MODEL_CACHE = ROOT / ".data" / "models"


def _encoded(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return out.getvalue()


def real_photos() -> dict[str, bytes]:
    """The file names the docs use, each a real photograph at full size (hundreds of KB)."""
    astronaut = Image.fromarray(photos.astronaut())  # a face
    coffee = Image.fromarray(photos.coffee())
    cat = Image.fromarray(photos.chelsea())  # the smallest: `upscale` x4 of it takes seconds
    return {
        "photo.png": _encoded(cat, "PNG"),
        "me.jpg": _encoded(astronaut, "JPEG"),
        "poster.jpg": _encoded(ImageOps.mirror(astronaut), "JPEG"),
        "team.jpg": _encoded(astronaut, "JPEG"),
        "product.jpg": _encoded(coffee, "JPEG"),
    }


@dataclass
class DocsStack:
    front: str  # nginx, where the docs say localhost:8080
    gateway: str
    notifier: str
    photo_host: str  # serves the photos where the docs say https://example.com
    env: dict[str, str]  # the stack's environment: the server-side snippets run with it
    photos: dict[str, bytes]


@pytest.fixture(scope="module")
def docs_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocsStack]:
    tmp = tmp_path_factory.mktemp("docs-stack")
    redis_proc, redis_url = start_redis(tmp)
    nginx_port = free_port()
    front = f"http://127.0.0.1:{nginx_port}"
    ports, env, procs = start_stack(
        redis_url,
        tmp,
        extra_env={
            **FAST_DELIVERY_ENV,
            "FLUXGATE_INTERNAL_SECRET": INTERNAL_SECRET,
            "FLUXGATE_ADMIN_TOKEN": ADMIN_TOKEN,
            # The tiny models are built once into `make up`'s own cache, not per run.
            "FLUXGATE_MODEL_CACHE_DIR": str(MODEL_CACHE),
            "FLUXGATE_TRANSLATE_MODEL": str(tiny_translator_dir(MODEL_CACHE)),
            # As `make up` with nginx: clients are given the front door's URLs.
            "FLUXGATE_PUBLIC_URL": front,
            "FLUXGATE_PUBLIC_WS_URL": front.replace("http://", "ws://"),
        },
    )
    nginx = None
    nginx_prefix = Path(tempfile.mkdtemp(prefix="fluxgate-docs-nginx-"))
    try:
        ensure_tiny_translator(MODEL_CACHE)  # while the services start
        wait_stack_ready(ports, procs)
        gateway = f"http://127.0.0.1:{ports['gateway']}"
        notifier = f"http://127.0.0.1:{ports['notifier']}"
        nginx, _ = start_front_door(
            nginx_prefix,
            gateway=gateway,
            notifier=notifier,
            internal_secret=INTERNAL_SECRET,
            port=nginx_port,
        )
        files = real_photos()
        served = {
            f"/{name}": (200, "image/png" if name.endswith(".png") else "image/jpeg", body)
            for name, body in files.items()
        }
        with serving(served) as photo_host:
            yield DocsStack(front, gateway, notifier, photo_host, env, files)
    finally:
        if nginx is not None:
            nginx.stop()
        for proc in procs.values():
            proc.stop()
        redis_proc.stop()
        shutil.rmtree(nginx_prefix, ignore_errors=True)


def write_photos(stack: DocsStack, where: Path) -> None:
    for name, body in stack.photos.items():
        (where / name).write_bytes(body)
