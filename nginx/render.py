"""Render the front door's config into a runnable prefix directory.

The template and the Lua code have one home, the Helm chart's `charts/fluxgate/files/` (Helm
reads nothing outside its chart); this fills the template in as the chart does, for a local nginx.

Usage: python nginx/render.py PREFIX [--listen 8080] [--gateway 127.0.0.1:8000] ...
Defaults come from the same FLUXGATE_* variables as the services. The prefix gets conf/nginx.conf
and its temp directories; the config points at the chart's Lua files in place. Run it with
`nginx -p PREFIX -c conf/nginx.conf`.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

FILES = Path(__file__).resolve().parent.parent / "charts" / "fluxgate" / "files"
TEMPLATE = FILES / "nginx.conf.template"
LUA_DIR = FILES / "lua"
PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")
DEBIAN_MODULES = (
    "load_module /usr/lib/nginx/modules/ndk_http_module.so;\n"
    "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;"
)


def render(
    prefix: Path,
    *,
    listen: str,
    gateway: str,
    notifier: str,
    max_body: str,
    max_upload: str = "64m",
    load_modules: str = DEBIAN_MODULES,
    lua_dir: Path = LUA_DIR,
    workers: str = "auto",
    access_log: str = "off",
    error_level: str = "warn",
) -> Path:
    """Write PREFIX/conf/nginx.conf and the temp directories; returns the config path."""
    for sub in ("conf", "tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    values = {
        "LOAD_MODULES": load_modules,
        "WORKER_PROCESSES": workers,
        "PREFIX": str(prefix.resolve()),
        "ERROR_LOG_LEVEL": error_level,
        "ACCESS_LOG": access_log,
        "LUA_DIR": str(lua_dir.resolve()),
        "MAX_BODY": max_body,
        "MAX_UPLOAD": max_upload,
        "GATEWAY_UPSTREAM": gateway,
        "NOTIFIER_UPSTREAM": notifier,
        "LISTEN": listen,
    }
    # Only ${UPPER_CASE} is ours; a name the template uses but we do not fill is an error.
    config = PLACEHOLDER.sub(lambda m: values[m.group(1)], TEMPLATE.read_text())
    if os.geteuid() == 0:
        # Started as root, nginx's workers would drop to `nobody`, who cannot reach a prefix
        # inside a private directory (a clone under /root, a 0700 temp dir): every answer too
        # big for its memory buffers then comes back empty. This renderer serves local runs
        # (make up, the tests), so the workers keep the user that started them; the chart's
        # pods run unprivileged and never switch.
        config = "user root;\n" + config
    target = prefix / "conf" / "nginx.conf"
    target.write_text(config)
    return target


def main() -> None:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("prefix", type=Path)
    parser.add_argument("--listen", default=env("FLUXGATE_NGINX_PORT", "8080"))
    parser.add_argument("--gateway", default="127.0.0.1:" + env("FLUXGATE_GATEWAY_PORT", "8000"))
    parser.add_argument("--notifier", default="127.0.0.1:" + env("FLUXGATE_NOTIFIER_PORT", "8300"))
    parser.add_argument("--max-body", default=env("FLUXGATE_NGINX_MAX_BODY", "1m"))
    parser.add_argument(
        "--max-upload",
        default=env("FLUXGATE_NGINX_MAX_UPLOAD", "64m"),
        help="body limit of POST /tasks, which carries images",
    )
    parser.add_argument(
        "--no-load-modules",
        action="store_true",
        help="for OpenResty, which has the Lua module built in",
    )
    args = parser.parse_args()
    path = render(
        args.prefix,
        listen=args.listen,
        gateway=args.gateway,
        notifier=args.notifier,
        max_body=args.max_body,
        max_upload=args.max_upload,
        load_modules="" if args.no_load_modules else DEBIAN_MODULES,
    )
    print(path)


if __name__ == "__main__":
    main()
