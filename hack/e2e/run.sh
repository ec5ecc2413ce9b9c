#!/usr/bin/env bash
# `make e2e`: builds (or reuses) Dex, kubectl, kube-apiserver and etcd with
# tools.sh, checks for node and npm (oidc-provider, the second IdP; the tests
# run `npm ci` in oidc-provider/ when its node_modules is not from the current
# package-lock.json), then runs the e2e Go tests of this module against
# LATCHKEY_BIN (the Makefile builds it). Prints how long each phase took.
#
# Environment: LATCHKEY_BIN (required; without it the tests skip, or fail
# under CI=true), E2E_ID_TOKEN_TTL (default 20s), E2E_VERBOSE=1 (latchkey -v),
# E2E_TEST_FLAGS (extra `go test` flags, e.g. -run TestBrowserDrivers).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

start=$SECONDS
echo "==> e2e: tools (Dex, kubectl, kube-apiserver, etcd)"
exports=$("$here/tools.sh") # a failed build stops here (set -e)
eval "$exports"
echo "==> e2e: tools ready in $((SECONDS - start))s"

# oidc-provider 9 needs Node 20.18+ (URL.parse; it prefers 22 and says so).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	echo "run.sh: node and npm are needed for the oidc-provider tests (Node 20.18 or later: nodejs.org or NodeSource; Debian 12's nodejs 18 is too old)" >&2
	exit 1
fi
if ! node -e 'process.exit(typeof URL.parse === "function" ? 0 : 1)'; then
	echo "run.sh: node $(node --version) is too old for oidc-provider 9: need 20.18 or later" >&2
	exit 1
fi
echo "==> e2e: node $(node --version), npm $(npm --version) (oidc-provider)"

t=$SECONDS
echo "==> e2e: go test (LATCHKEY_BIN=${LATCHKEY_BIN:-unset})"
cd "$here"
# shellcheck disable=SC2086 # E2E_TEST_FLAGS is a list of flags
go test -race -p 1 -count=1 -timeout 30m -v ${E2E_TEST_FLAGS:-} ./...
echo "==> e2e: tests took $((SECONDS - t))s; total $((SECONDS - start))s"
