#!/usr/bin/env bash
# fuzz.sh (make fuzz): runs each native fuzz target of the main module for
# FUZZTIME (default 10s). The seed corpus lives in each package's
# testdata/fuzz.
#
# A target that fails without writing a failing input is run once more: Go's
# fuzzing coordinator can report "context deadline exceeded" at the end of
# -fuzztime on a loaded machine, a race of its own with nothing found (seen
# here on FuzzLoad, in CI). A failure that writes an input (a real finding)
# fails at once.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}

"$GO" list -f '{{.ImportPath}} {{.Dir}}' ./... | while read -r pkg dir; do
	for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | cut -d' ' -f2); do
		corpus=$dir/testdata/fuzz/$f
		for try in 1 2; do
			before=$(ls "$corpus" 2>/dev/null | sort || true)
			echo "fuzz $pkg $f"
			if "$GO" test -run='^$' -fuzz="^$f\$" -fuzztime="$FUZZTIME" "$pkg"; then
				break
			fi
			after=$(ls "$corpus" 2>/dev/null | sort || true)
			if [ "$before" != "$after" ] || [ "$try" = 2 ]; then
				echo "fuzz: $f failed (failing input: $(comm -13 <(echo "$before") <(echo "$after") | tr '\n' ' '))" >&2
				exit 1
			fi
			echo "fuzz: $f failed with no failing input written (Go's fuzzing coordinator race): once more" >&2
		done
	done
done
