#!/usr/bin/env bash
# `make demo`: latchkey against a real IdP in one command. Builds latchkey and
# Dex (Dex is cached in the user cache dir after the first build), starts Dex
# on 127.0.0.1 with a demo user, runs `latchkey get-token` (your browser opens,
# or latchkey prints the URL), prints the ExecCredential and the decoded ID
# token, shows that a second call comes from the cache, and stops Dex.
#
# Needs only the Go toolchain (and a C compiler, for Dex's sqlite driver).
# DEMO_AUTO_LOGIN=1 fills the login form with a scripted browser (no human).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

echo "==> Building latchkey (bin/latchkey) ..."
go build -o bin/latchkey ./cmd/latchkey

echo "==> Building Dex (first time: a minute or two; then cached) ..."
exports=$(hack/e2e/tools.sh dex)
eval "$exports"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
demo_args=(-latchkey "$root/bin/latchkey" -dex "$E2E_DEX")
cd hack/e2e
if [ -n "${DEMO_AUTO_LOGIN:-}" ]; then
  go build -o "$tmp/" ./cmd/browser-http
  demo_args+=(-auto-login "$tmp/browser-http")
fi
go build -o "$tmp/" ./cmd/demo
"$tmp/demo" "${demo_args[@]}" "$@"
