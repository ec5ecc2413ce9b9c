#!/usr/bin/env bash
# Runs the OS keyring tests against a real Secret Service: a private D-Bus
# session bus (dbus-run-session) with gnome-keyring-daemon, its login keyring
# created and unlocked with a throwaway password. Installs nothing; needs the
# Debian packages gnome-keyring and dbus-daemon (dbus-run-session).
# Usage: hack/keyring-test.sh [go test flags...]
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" != "--inner" ]]; then
	for bin in dbus-run-session gnome-keyring-daemon; do
		command -v "$bin" >/dev/null || { echo "keyring-test: $bin not found (apt-get install gnome-keyring dbus-daemon)" >&2; exit 1; }
	done
	exec dbus-run-session -- "$0" --inner "$@"
fi
shift

# A home of its own, so the test keyring is neither the user's nor kept.
home=$(mktemp -d)
trap 'kill "${GNOME_KEYRING_PID:-}" 2>/dev/null || true; rm -rf "$home"' EXIT
export HOME=$home XDG_DATA_HOME=$home/.local/share XDG_RUNTIME_DIR=$home/run
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"

# --unlock reads the password on stdin, creates the login keyring if needed
# and unlocks it; --daemonize would not wait, so the output is read here.
if ! out=$(printf '%s' keyring-test-password | gnome-keyring-daemon --unlock --components=secrets 2>&1); then
	echo "keyring-test: gnome-keyring-daemon did not start: $out" >&2
	exit 1
fi
eval "$(grep -E '^(GNOME_KEYRING_CONTROL|GNOME_KEYRING_PID)=' <<<"$out" | sed 's/^/export /')"
# The daemon must own org.freedesktop.secrets on this bus.
for _ in $(seq 50); do
	if dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
		org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null | grep -q 'boolean true'; then
		break
	fi
	sleep 0.1
done
if ! dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
	org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null | grep -q 'boolean true'; then
	echo "keyring-test: no Secret Service on the session bus after starting gnome-keyring-daemon" >&2
	exit 1
fi

LATCHKEY_KEYRING_TEST=1 go test -count=1 -run Keyring "$@" ./cache/ ./plugin/
