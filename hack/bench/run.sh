#!/usr/bin/env bash
# run.sh (make bench): measures a cached `latchkey get-token` against the
# floor baselines, side by side in one run, and prints the ratios against the
# targets of the Performance issue (see README "Performance").
#
#   1. builds latchkey and the baselines floor, floor-nohttp and floor-https
#      as `make build` does (CGO_ENABLED=0 -trimpath -ldflags '-s -w'), and
#      the helpers idp and driver;
#   2. warms a token cache in a temporary directory: idp starts an in-process
#      OpenID Connect provider, logs in once with latchkey (playing the
#      browser), and stops the provider, so any network access fails;
#   3. times the four programs with hyperfine (median wall, CPU), and with
#      driver (interleaved median wall, peak RSS under GNU time, binary size,
#      BENCH_PARALLEL simultaneous calls), and prints the table. The targets
#      are ratios to floor; floor-nohttp and floor-https are for the record;
#   4. runs the Go micro-benchmarks of cache/ and plugin/, and the unit test
#      that asserts the refresh path's single request.
#
# Linux only (GNU time). Installs hyperfine and time from Debian if missing
# and apt-get is usable. Exit status: non-zero if something fails to run, or
# if BENCH_STRICT=1 and a target is missed (these machines are noisy; the
# table matters more). Results are kept in bin/bench/.
#
# Knobs: BENCH_RUNS (hyperfine and interleaved runs, 300), BENCH_RSS_RUNS
# (20), BENCH_PARALLEL (100), BENCH_REPS (15), BENCH_STRICT (0),
# BENCH_MICRO (1: run the Go micro-benchmarks and the refresh-path test),
# BENCH_BASELINE (a latchkey binary to measure beside this one, e.g. one built
# from the commit before a change: same cache, same arguments; its column
# reads "latchkey / baseline").
set -euo pipefail

cd "$(dirname "$0")/../.."
GO=${GO:-go}
RUNS=${BENCH_RUNS:-300}
RSS_RUNS=${BENCH_RSS_RUNS:-20}
PARALLEL=${BENCH_PARALLEL:-100}
REPS=${BENCH_REPS:-15}
OUT=bin/bench

need() { # need COMMAND DEBIAN-PACKAGE
	command -v "$1" >/dev/null 2>&1 && return 0
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "bench: installing $2" >&2
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2"; } >/dev/null 2>&1 || true
	fi
	command -v "$1" >/dev/null 2>&1
}
if ! need /usr/bin/time time; then
	echo "bench: GNU time (/usr/bin/time, Debian package time) is required for peak RSS" >&2
	exit 1
fi
have_hyperfine=1
need hyperfine hyperfine || { have_hyperfine=0; echo "bench: hyperfine not found; wall time from the Go driver only" >&2; }

tmp=$(mktemp -d /tmp/latchkey-bench.XXXXXX) # no spaces: commands are split on them
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$OUT"

echo "==> build" >&2
for p in latchkey:./cmd/latchkey floor:./hack/bench/floor floor-nohttp:./hack/bench/floor-nohttp \
	floor-https:./hack/bench/floor-https; do
	CGO_ENABLED=0 "$GO" build -trimpath -ldflags '-s -w' -o "$tmp/${p%%:*}" "${p#*:}"
done
"$GO" build -o "$tmp/idp" ./hack/bench/idp
"$GO" build -o "$tmp/driver" ./hack/bench/driver

echo "==> warm the token cache" >&2
if ! args=$("$tmp/idp" warm -latchkey "$tmp/latchkey" -dir "$tmp/cache" 2>"$tmp/warm.log"); then
	cat "$tmp/warm.log" >&2
	exit 1
fi
grep '^idp:' "$tmp/warm.log" >&2 || true
entries=("$tmp"/cache/*.json)
if [ "${#entries[@]}" -ne 1 ] || [ ! -f "${entries[0]}" ]; then
	echo "bench: want one cache entry in $tmp/cache, got: ${entries[*]}" >&2
	exit 1
fi
# What kubectl passes to a v1 exec plugin (the floors ignore it).
export KUBERNETES_EXEC_INFO='{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}'
lk="$tmp/latchkey ${args//$'\n'/ }" # one argument a line, none with spaces (idp checks)
floor="$tmp/floor ${entries[0]}"
nohttp="$tmp/floor-nohttp ${entries[0]}"
https="$tmp/floor-https ${entries[0]}"
base_hf=() base_cmd=()
if [ -n "${BENCH_BASELINE:-}" ]; then
	cp "$BENCH_BASELINE" "$tmp/baseline"
	base="$tmp/baseline ${args//$'\n'/ }"
	base_hf=(-n baseline "$base") base_cmd=(-cmd "baseline=$base")
fi

hf=()
if [ "$have_hyperfine" = 1 ]; then
	echo "==> hyperfine" >&2
	hyperfine -N --style basic --warmup 30 --runs "$RUNS" --export-json "$OUT/hyperfine.json" \
		-n latchkey "$lk" -n floor "$floor" -n floor-nohttp "$nohttp" -n floor-https "$https" "${base_hf[@]}" >&2
	hf=(-hyperfine "$OUT/hyperfine.json")
fi

echo "==> driver" >&2
strict=()
[ "${BENCH_STRICT:-0}" = 1 ] && strict=(-strict)
rc=0
"$tmp/driver" -cmd "latchkey=$lk" -cmd "floor=$floor" -cmd "floor-nohttp=$nohttp" -cmd "floor-https=$https" "${base_cmd[@]}" \
	"${hf[@]}" "${strict[@]}" \
	-wall-runs "$RUNS" -rss-runs "$RSS_RUNS" -parallel "$PARALLEL" -reps "$REPS" >"$OUT/table.md" || rc=$?
if [ ! -s "$OUT/table.md" ]; then
	exit "$rc"
fi
{
	load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)
	echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load average $load, $("$GO" env GOVERSION) $("$GO" env GOOS)/$("$GO" env GOARCH)"
	echo
	cat "$OUT/table.md"
} >"$OUT/summary.md"

if [ "${BENCH_MICRO:-1}" = 1 ]; then
	echo "==> Go micro-benchmarks" >&2
	"$GO" test -run='^$' -bench=. -benchmem ./cache/ ./plugin/ | tee "$OUT/micro.txt" || rc=1
	echo "==> refresh path: one token request, no discovery or JWKS (plugin unit test)" >&2
	"$GO" test -count=1 -run='^TestRefreshRotatesAndReusesDiscovery$' -v ./plugin/ | grep -E '^(---|ok|FAIL)' || rc=1
fi

echo
echo "==> cached latchkey get-token vs the floors (also in $OUT/summary.md)"
cat "$OUT/summary.md"
exit "$rc"
