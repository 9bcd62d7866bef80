#!/usr/bin/env bash
# need.sh TOOL...: exit 1 naming every missing tool and where to get it (the k3d make targets).
# helm and helmfile are not needed here: scripts/get-helm-tools.sh fetches pinned ones.
set -uo pipefail
declare -A where=(
  [docker]="https://docs.docker.com/engine/install/"
  [k3d]="https://k3d.io"
  [kubectl]="https://kubernetes.io/docs/tasks/tools/"
  [helm]="https://helm.sh/docs/intro/install/ (or scripts/get-helm-tools.sh)"
  [helmfile]="https://helmfile.readthedocs.io (or scripts/get-helm-tools.sh)"
  [python3]="your distribution's python3 package"
)
missing=0
for tool in "$@"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "missing: $tool (${where[$tool]:-install it first})" >&2
    missing=1
  elif [ "$tool" = docker ] && ! docker info >/dev/null 2>&1; then
    echo "missing: a running docker daemon (docker info fails; start Docker or check its socket)" >&2
    missing=1
  fi
done
exit "$missing"
