#!/usr/bin/env bash
# unprivileged-test.sh (part of make unit): root bypasses file modes, so the
# tests that need an ordinary user (an unreadable entry, a read-only cache
# directory) skip as root, and CI runs as root. This builds the cache
# package's tests and runs those as the user nobody. As an ordinary user it
# does nothing: `go test ./...` has run them already.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
if [ "$(id -u)" != 0 ]; then
	exit 0
fi
if ! command -v setpriv >/dev/null || ! id nobody >/dev/null 2>&1; then
	echo "unprivileged-test: setpriv or the user nobody missing; skipping" >&2
	exit 0
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
chmod 0755 "$dir"
"$GO" test -c -o "$dir/cache.test" ./cache
cd "$dir"
setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME="$dir" TMPDIR=/tmp \
	./cache.test -test.count=1 -test.v -test.run '^(TestLoadPermissionDenied|TestSaveFailureKeepsOldEntry)$' 2>&1 |
	tee "$dir/out" | grep -E '^(=== RUN|--- |ok|PASS|FAIL)'
if grep -q -- '--- SKIP' "$dir/out" || ! grep -q '^PASS' "$dir/out"; then
	echo "unprivileged-test: the tests skipped or failed as nobody" >&2
	exit 1
fi
