#!/usr/bin/env bash
# `make e2e`: builds (or reuses) Dex, kubectl, kube-apiserver and etcd with
# tools.sh, then runs the e2e Go tests of this module against LATCHKEY_BIN
# (the Makefile builds it). Prints how long each phase took.
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

t=$SECONDS
echo "==> e2e: go test (LATCHKEY_BIN=${LATCHKEY_BIN:-unset})"
cd "$here"
# shellcheck disable=SC2086 # E2E_TEST_FLAGS is a list of flags
go test -race -p 1 -count=1 -timeout 30m -v ${E2E_TEST_FLAGS:-} ./...
echo "==> e2e: tests took $((SECONDS - t))s; total $((SECONDS - start))s"
