package cache

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const (
	helperEnv = "LATCHKEY_CACHE_TEST_HELPER"
	helperDir = "LATCHKEY_CACHE_TEST_DIR"
)

// TestHelperProcess is not a test: run by startHolder in a child process, it
// takes testID's lock in $LATCHKEY_CACHE_TEST_DIR, prints "locked" and holds
// the lock until its stdin is closed (then it unlocks and exits) or it is
// killed.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "lock" {
		t.Skip("helper process for the lock tests")
	}
	c := Open(os.Getenv(helperDir))
	l, ok, err := c.TryLock(testID)
	if err != nil || !ok {
		os.Stderr.WriteString("helper: TryLock failed\n")
		os.Exit(2)
	}
	os.Stdout.WriteString("locked\n")
	io.Copy(io.Discard, os.Stdin)
	if err := l.Unlock(); err != nil {
		os.Exit(3)
	}
	os.Exit(0)
}

// holder is a child process holding testID's lock.
type holder struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// startHolder starts a child process that takes testID's lock in dir and
// returns once it holds it.
func startHolder(t *testing.T, dir string) *holder {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	// GORACE: a race-enabled child otherwise sleeps 1s at exit.
	cmd.Env = append(os.Environ(), helperEnv+"=lock", helperDir+"="+dir, "GORACE=atexit_sleep_ms=0")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &holder{cmd: cmd, stdin: stdin}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- s
		io.Copy(io.Discard, stdout)
	}()
	select {
	case s := <-line:
		if s != "locked\n" {
			t.Fatalf("helper process printed %q, want \"locked\"", s)
		}
	case <-time.After(30 * time.Second): // only against hangs
		t.Fatal("helper process did not take the lock")
	}
	return h
}

// wait waits for the holder to exit and returns its exit error.
func (h *holder) wait(t *testing.T) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- h.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second): // only against hangs
		t.Fatal("helper process did not exit")
		return nil
	}
}

func TestTryLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	c := Open(dir)
	l, ok, err := c.TryLock(testID)
	if err != nil || !ok || l == nil {
		t.Fatalf("TryLock = %v, %v, %v; want a lock", l, ok, err)
	}
	if l.Path() != c.LockPath(testID) {
		t.Errorf("Path() = %q, want %q", l.Path(), c.LockPath(testID))
	}
	if runtime.GOOS != "windows" {
		if p := perm(t, dir); p != 0o700 {
			t.Errorf("dir mode = %04o, want 0700", p)
		}
		if p := perm(t, c.LockPath(testID)); p != 0o600 {
			t.Errorf("lock file mode = %04o, want 0600", p)
		}
	}
	// Locks are per open file: a second one excludes even in this process.
	l2, ok, err := Open(dir).TryLock(testID)
	if err != nil || ok || l2 != nil {
		t.Errorf("second TryLock = %v, %v, %v; want nil, false, nil", l2, ok, err)
	}
	// Other ids are independent.
	l3, ok, err := c.TryLock("other")
	if err != nil || !ok {
		t.Errorf("TryLock(other) = %v, %v", ok, err)
	}
	l3.Unlock()

	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(); err != nil {
		t.Errorf("second Unlock = %v, want nil", err)
	}
	if _, err := os.Lstat(c.LockPath(testID)); err != nil {
		t.Errorf("lock file after Unlock: %v, want it kept", err)
	}
	l, ok, err = c.TryLock(testID)
	if err != nil || !ok {
		t.Fatalf("TryLock after Unlock = %v, %v", ok, err)
	}
	l.Unlock()
	if err := (*Lock)(nil).Unlock(); err != nil {
		t.Errorf("nil Unlock = %v", err)
	}
}

func TestTryLockOtherProcess(t *testing.T) {
	c := Open(t.TempDir())
	h := startHolder(t, c.Dir)
	l, ok, err := c.TryLock(testID)
	if err != nil || ok || l != nil {
		t.Fatalf("TryLock while another process holds the lock = %v, %v, %v; want nil, false, nil", l, ok, err)
	}
	// The lock does not block the entry.
	want := testEntry()
	if err := c.Save(testID, want); err != nil {
		t.Fatalf("Save while locked elsewhere: %v", err)
	}
	got, err := c.Load(testID)
	if err != nil {
		t.Fatalf("Load while locked elsewhere: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Load (-want +got):\n%s", diff)
	}

	h.stdin.Close()
	if err := h.wait(t); err != nil {
		t.Fatalf("helper: %v", err)
	}
	l, ok, err = c.TryLock(testID)
	if err != nil || !ok {
		t.Fatalf("TryLock after the holder unlocked = %v, %v", ok, err)
	}
	l.Unlock()
}

func TestLockWaitsForHolder(t *testing.T) {
	c := Open(t.TempDir())
	h := startHolder(t, c.Dir)
	if _, ok, _ := c.TryLock(testID); ok {
		t.Fatal("TryLock succeeded while the helper holds the lock")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // only against hangs
	defer cancel()
	type result struct {
		l   *Lock
		err error
	}
	got := make(chan result, 1)
	go func() {
		l, err := c.Lock(ctx, testID)
		got <- result{l, err}
	}()
	h.stdin.Close() // the helper unlocks and exits
	r := <-got
	if r.err != nil {
		t.Fatalf("Lock = %v, want the lock once the holder exits", r.err)
	}
	if err := h.wait(t); err != nil {
		t.Errorf("helper: %v", err)
	}
	// The lock is really held now.
	if _, ok, _ := Open(c.Dir).TryLock(testID); ok {
		t.Error("TryLock succeeded while Lock's lock is held")
	}
	r.l.Unlock()
}

func TestLockDeadline(t *testing.T) {
	c := Open(t.TempDir())
	startHolder(t, c.Dir)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	l, err := c.Lock(ctx, testID)
	if !errors.Is(err, context.DeadlineExceeded) || l != nil {
		t.Fatalf("Lock = %v, %v; want context.DeadlineExceeded", l, err)
	}
	if msg := err.Error(); !strings.Contains(msg, c.LockPath(testID)) || !strings.Contains(msg, "another latchkey process") {
		t.Errorf("error %q should name the lock file and say another process holds it", msg)
	}

	ctx, cancel = context.WithCancel(t.Context())
	cancel()
	if _, err := c.Lock(ctx, testID); !errors.Is(err, context.Canceled) {
		t.Errorf("Lock with a canceled context = %v, want context.Canceled", err)
	}
}

func TestLockFreeWithDoneContext(t *testing.T) {
	c := Open(t.TempDir())
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	l, err := c.Lock(ctx, testID)
	if err != nil {
		t.Fatalf("Lock of a free lock with a done context = %v, want the lock", err)
	}
	l.Unlock()
}

func TestLockReleasedOnKill(t *testing.T) {
	c := Open(t.TempDir())
	h := startHolder(t, c.Dir)
	if _, ok, _ := c.TryLock(testID); ok {
		t.Fatal("TryLock succeeded while the helper holds the lock")
	}
	if err := h.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	h.wait(t)
	// No waiting: the kernel released the lock when the process died.
	l, ok, err := c.TryLock(testID)
	if err != nil || !ok {
		t.Fatalf("TryLock after SIGKILL of the holder = %v, %v; want the lock", ok, err)
	}
	l.Unlock()
}

func TestLockStale(t *testing.T) {
	c := Open(t.TempDir())
	path := c.LockPath(testID)
	for name, change := range map[string]func(){
		"unchanged": func() {},
		"removed":   func() { os.Remove(path) },
		"replaced": func() {
			os.Remove(path)
			os.WriteFile(path, nil, 0o600)
		},
	} {
		l, ok, err := c.TryLock(testID)
		if err != nil || !ok {
			t.Fatalf("%s: TryLock = %v, %v", name, ok, err)
		}
		change()
		stale, err := l.stale()
		if err != nil {
			t.Fatalf("%s: stale = %v", name, err)
		}
		if want := name != "unchanged"; stale != want {
			t.Errorf("%s: stale = %v, want %v", name, stale, want)
		}
		if stale && l.fl.Locked() {
			t.Errorf("%s: a stale lock was not unlocked", name)
		}
		l.Unlock()
	}
}

func TestDeleteWhileLocked(t *testing.T) {
	// Documented behavior: Delete removes the lock file, so a later lock is
	// taken on a new file and does not wait for the old holder.
	c := Open(t.TempDir())
	l, ok, err := c.TryLock(testID)
	if err != nil || !ok {
		t.Fatalf("TryLock = %v, %v", ok, err)
	}
	defer l.Unlock()
	if err := c.Delete(testID); err != nil {
		t.Fatal(err)
	}
	l2, ok, err := c.TryLock(testID)
	if err != nil || !ok {
		t.Fatalf("TryLock after Delete = %v, %v; want a lock on a new lock file", ok, err)
	}
	l2.Unlock()
}
