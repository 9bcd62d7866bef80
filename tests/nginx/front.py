"""A real nginx with Debian's Lua module, rendered from the chart's template, in front of a
gateway and a notifier: the front door of the tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

from devtools.procs import Proc, free_port, wait_http_ok
from nginx.render import render


def start_front(
    prefix: Path, *, gateway: str, notifier: str, internal_secret: str
) -> Iterator[str]:
    """Yields the front door's URL; `gateway` and `notifier` are `http://host:port` URLs."""
    nginx = shutil.which("nginx")
    # CI installs nginx and its Lua module (.ci/run): missing ones fail here, they are not skipped.
    assert nginx, "nginx is not installed"
    assert Path("/usr/lib/nginx/modules/ngx_http_lua_module.so").exists(), "no Lua module"
    port = free_port()
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
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{url}/healthz", timeout=20, proc=proc)
        yield url
    finally:
        proc.stop()
