//go:build unix

package main

import (
	"bufio"
	"context"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/latchkey/latchkey/cache"
	"github.com/latchkey/latchkey/plugin/idptest"
)

// TestCallerKilledMidLogin: killing flytectl in the middle of a login left
// its latchkey child running, holding the redirect port and the cache lock,
// so the next flytectl could not log in. latchkey now notices that its
// caller is gone and exits, freeing both, and starts no cool-down.
func TestCallerKilledMidLogin(t *testing.T) {
	e := newEnv(t, idptest.Config{})
	e.browser = []string{browserModeEnv + "=hang"}
	// Longer than the test waits: latchkey must not just time out.
	e.extra = []string{"--authentication-timeout-sec=600"}
	t.Cleanup(e.stopBrowsers)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	// sh plays the caller: it starts latchkey, says its pid, and waits.
	caller := exec.CommandContext(ctx, "sh", "-c", `"$0" "$@" 2>/dev/null & echo $!; wait`, bin)
	caller.Args = append(caller.Args, e.args()...)
	caller.Env = e.environ(execInfoV1)
	out, err := caller.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := caller.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	pid, perr := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || perr != nil {
		t.Fatalf("latchkey's pid: %q, %v, %v", line, err, perr)
	}
	// Wait until the login holds the lock (the browser hangs).
	store := cache.Open(e.dir)
	for lockFree(t, store, e.key().ID()) {
		if ctx.Err() != nil {
			t.Fatal("the login never took the lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	caller.Process.Kill()
	caller.Wait()
	for syscall.Kill(pid, 0) == nil {
		if ctx.Err() != nil {
			t.Fatal("latchkey still runs after its caller was killed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !lockFree(t, store, e.key().ID()) {
		t.Error("the lock is still held")
	}
	if en, err := store.Load(e.key().ID()); err == nil && en.LoginFailure != nil {
		t.Errorf("the abandoned login started the cool-down: %+v", en.LoginFailure)
	}
	// The next caller logs in.
	e.browser, e.extra = nil, nil
	if r := e.run(execInfoV1, e.args()...); r.code != 0 {
		t.Errorf("next get-token: exit %d: %s", r.code, r.stderr)
	}
}

func lockFree(t *testing.T, store *cache.Cache, id string) bool {
	t.Helper()
	l, ok, err := store.TryLock(id)
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if ok {
		l.Unlock()
	}
	return ok
}
