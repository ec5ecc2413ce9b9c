//go:build unix

package cache

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestLoadFIFO(t *testing.T) {
	c := Open(t.TempDir())
	if err := syscall.Mkfifo(c.Path(testID), 0o600); err != nil {
		t.Skip(err)
	}
	checkInvalid(t, c) // must not block waiting for a writer
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
