#!/usr/bin/env bash
# Builds (or reuses) the third-party programs of latchkey's e2e suite: Dex,
# kubectl, kube-apiserver and, when no etcd is installed, etcd. They are built
# from the tools modules under hack/e2e/tools (pinned in their go.mod/go.sum)
# into a folder of the user cache dir named by a hash of those files and the
# Go version, so a second run only checks that the binaries exist.
#
# Usage: eval "$(hack/e2e/tools.sh)"       # exports E2E_DEX, E2E_KUBECTL, ...
#        (in scripts: exports=$(hack/e2e/tools.sh); eval "$exports" so that a
#        failed build stops a `set -e` script)
#        hack/e2e/tools.sh dex              # only some tools
# Progress and build times go to stderr; stdout has only `export` lines.
# E2E_TOOLS_DIR overrides the cache folder. E2E_BUILD_ETCD=1 builds etcd even
# when an etcd binary is in PATH.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tools=$here/tools
wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(dex kubectl kube-apiserver etcd)

log() { printf 'tools.sh: %s\n' "$*" >&2; }

# The hash covers what decides the binaries' content: module files, the Go
# version and target, and this script.
version_hash=$(
  {
    go env GOVERSION GOOS GOARCH
    cat "$0"
    find "$tools" -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) | LC_ALL=C sort | xargs cat
  } | sha256sum | cut -c1-16
)
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/latchkey-e2e
bin=${E2E_TOOLS_DIR:-$cache_root/$version_hash/bin}
mkdir -p "$bin"
log "tools folder $bin"

# build NAME MODULE_DIR PACKAGE [CGO]
build() {
  local name=$1 dir=$2 pkg=$3 cgo=${4:-0}
  if [ -x "$bin/$name" ]; then
    log "$name: cached ($bin/$name)"
    return
  fi
  local start=$SECONDS
  log "$name: building $pkg in ${dir#"$here"/} ..."
  (cd "$dir" && CGO_ENABLED=$cgo go build -ldflags="-s -w" -o "$bin/$name.tmp" "$pkg")
  mv "$bin/$name.tmp" "$bin/$name"
  log "$name: built in $((SECONDS - start))s"
}

for t in "${wanted[@]}"; do
  case $t in
  dex) build dex "$tools/dex" github.com/dexidp/dex/cmd/dex 1 ;;
  kubectl) build kubectl "$tools/kube" ./kubectl ;;
  kube-apiserver) build kube-apiserver "$tools/kube" k8s.io/kubernetes/cmd/kube-apiserver ;;
  etcd)
    if [ -z "${E2E_BUILD_ETCD:-}" ] && command -v etcd >/dev/null && etcd --version 2>/dev/null | grep -Eq 'etcd Version: 3\.([4-9]|[1-9][0-9])\.'; then
      ln -sf "$(command -v etcd)" "$bin/etcd"
      log "etcd: using $(command -v etcd) ($(etcd --version | head -1))"
    else
      build etcd "$tools/etcd" go.etcd.io/etcd/server/v3
    fi
    ;;
  *) log "unknown tool $t"; exit 2 ;;
  esac
done

for t in "${wanted[@]}"; do
  var=E2E_$(echo "$t" | tr 'a-z-' 'A-Z_')
  printf 'export %s=%q\n' "$var" "$bin/$t"
done
