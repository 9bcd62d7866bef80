"""A real nginx (Debian's, with its Lua module) running the front door's config in front of a
gateway and a notifier, as `make up` runs it."""

from __future__ import annotations

import shutil
from pathlib import Path

from devtools.procs import Proc, free_port, wait_http_ok
from nginx.render import render


def start_front_door(
    prefix: Path, *, gateway: str, notifier: str, internal_secret: str, port: int | None = None
) -> tuple[Proc, str]:
    """nginx on `port` (a free one by default) proxying to `gateway` and `notifier` (their
    `http://host:port`); returns the process and the front door's URL."""
    nginx = shutil.which("nginx")
    # CI installs nginx and its Lua module (.ci/run): missing ones fail here, they are not skipped.
    assert nginx, "nginx is not installed"
    assert Path("/usr/lib/nginx/modules/ngx_http_lua_module.so").exists(), "no Lua module"
    port = port or free_port()
    conf = render(
        prefix,
        listen=f"127.0.0.1:{port}",
        gateway=gateway.removeprefix("http://"),
        notifier=notifier.removeprefix("http://"),
        max_body="1m",
        workers="1",
    )
    proc = Proc(
        "nginx",
        [nginx, "-p", str(prefix), "-c", str(conf), "-e", "stderr"],
        # Its Lua signs the notifier reads of the sync facade with it, as in `make up`.
        {"FLUXGATE_INTERNAL_SECRET": internal_secret},
        prefix / "nginx.log",
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{url}/healthz", timeout=20, proc=proc)
    except BaseException:
        proc.stop()
        raise
    return proc, url
