//go:build unix

package cache

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestLoadFIFO(t *testing.T) {
	c := Open(t.TempDir())
	if err := syscall.Mkfifo(c.Path(testID), 0o600); err != nil {
		t.Skip(err)
	}
	checkInvalid(t, c) // must not block waiting for a writer
}

// TestOpenEntry: the open itself neither blocks on a FIFO nor follows a
// symbolic link (Load's Lstat usually stops both before it: this is the
// case of one swapped in after the Lstat), and what it returns reads in
// blocking mode, outside the network poller.
func TestOpenEntry(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip(err)
	}
	f, err := openEntry(fifo) // blocks forever without O_NONBLOCK
	if err != nil {
		t.Fatalf("openEntry(FIFO): %v", err)
	}
	defer f.Close()
	if nonblocking(t, f) {
		t.Error("the descriptor is still non-blocking")
	}

	file := filepath.Join(dir, "entry.json")
	if err := os.WriteFile(file, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	if f, err := openEntry(link); err == nil || errors.Is(err, os.ErrNotExist) {
		f.Close()
		t.Errorf("openEntry(symlink) = %v; want a refusal that is not ErrNotExist", err)
	}
	if _, err := openEntry(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("openEntry(missing) = %v; want ErrNotExist", err)
	}
	g, err := openEntry(file)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if b := make([]byte, 8); nonblocking(t, g) {
		t.Error("a regular file's descriptor is non-blocking")
	} else if n, err := g.Read(b); err != nil || string(b[:n]) != "{}" {
		t.Errorf("Read = %q, %v", b[:n], err)
	}
}

// nonblocking reports whether f's descriptor has O_NONBLOCK set.
func nonblocking(t *testing.T, f *os.File) bool {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var flags int
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		flags, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0)
	}); err != nil || ferr != nil {
		t.Fatal(err, ferr)
	}
	return flags&syscall.O_NONBLOCK != 0
}

func TestLockDoesNotFollowSymlink(t *testing.T) {
	c := Open(t.TempDir())
	target := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.Symlink(target, c.LockPath(testID)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.TryLock(testID); err == nil {
		t.Error("TryLock through a symlink succeeded")
	}
	if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("TryLock created the symlink's target: %v", err)
	}
}

// TestLockFIFO: a FIFO at <id>.lock hung latchkey forever, past
// --authentication-timeout-sec, SIGINT and SIGTERM. It is refused at once.
func TestLockFIFO(t *testing.T) {
	c := Open(t.TempDir())
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(c.LockPath(testID), 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := c.TryLock(testID)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("TryLock on a FIFO = %v, want a refusal", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("TryLock on a FIFO hangs")
	}
}

// TestCacheDirMode: a cache directory open to other users (0777) is set back
// to 0700 with a warning; one owned by another user is refused (needs root
// to make one).
func TestCacheDirMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	c := Open(dir)
	c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	if err := c.Save(testID, testEntry()); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 || !strings.Contains(logs.String(), "0777") {
		t.Errorf("directory mode %04o, logs %q; want 0700 and a warning", fi.Mode().Perm(), logs.String())
	}
	// A shared directory (sticky, as /tmp) is refused, never changed.
	shared := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(shared, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := Open(shared).Save(testID, testEntry()); err == nil || !strings.Contains(err.Error(), "shared") {
		t.Errorf("Save into a sticky 1777 directory = %v, want a refusal", err)
	}
	if fi, _ := os.Stat(shared); fi.Mode().Perm() != 0o777 {
		t.Errorf("the shared directory's mode was changed to %v", fi.Mode())
	}
	if os.Getuid() != 0 {
		t.Skip("chown to another user needs root")
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := c.Save(testID, testEntry()); err == nil || !strings.Contains(err.Error(), "belongs to user") {
		t.Errorf("Save into another user's directory = %v, want a refusal", err)
	}
	if _, _, err := c.TryLock(testID); err == nil {
		t.Error("TryLock in another user's directory succeeded")
	}
}
