package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"time"

	"github.com/gofrs/flock"
)

// lockPoll is how often Lock retries a held lock.
const lockPoll = 50 * time.Millisecond

// maxStaleRetries bounds how often TryLock starts over because the lock file
// it locked had been removed or replaced (see Lock.stale).
const maxStaleRetries = 10

// Lock is an exclusive inter-process lock on one key's lock file,
// <dir>/<id>.lock, taken with flock(2) (LockFileEx on Windows) through
// github.com/gofrs/flock. The operating system releases it when the holding
// process exits, however it exits.
//
// The lock file is separate from the entry so that Save can replace the entry
// by rename while the lock is held, and so that Windows byte-range locks never
// block Load, which reads the entry without locking.
//
// Locks are per open file, not per process: two Locks on the same id exclude
// each other within one process too. A Lock must not be used by several
// goroutines at once.
type Lock struct {
	fl   *flock.Flock
	path string
}

// TryLock takes id's lock if it is free, without waiting. It returns the lock
// and true, or nil and false (and no error) if another process holds it.
func (c *Cache) TryLock(id string) (*Lock, bool, error) {
	l, err := c.newLock(id)
	if err != nil {
		return nil, false, err
	}
	for range maxStaleRetries {
		ok, err := l.fl.TryLock()
		if err != nil {
			return nil, false, fmt.Errorf("lock token cache %s: %w", l.path, err)
		}
		if !ok {
			return nil, false, nil
		}
		if stale, err := l.stale(); err != nil || !stale {
			return l.result(err)
		}
	}
	return nil, false, fmt.Errorf("lock token cache %s: lock file keeps being removed or replaced", l.path)
}

// Lock takes id's lock, waiting (polling every 50ms) until it is free or ctx
// is done. If ctx is done first, the error says the lock is held by another
// latchkey process, names the lock file and wraps ctx.Err(), so
// errors.Is(err, context.DeadlineExceeded) reports a timeout. A free lock is
// taken even if ctx is already done.
func (c *Cache) Lock(ctx context.Context, id string) (*Lock, error) {
	l, ok, err := c.TryLock(id)
	if err != nil || ok {
		return l, err
	}
	l, err = c.newLock(id)
	if err != nil {
		return nil, err
	}
	c.logger().Debug("waiting for token cache lock held by another process", "path", l.path)
	for {
		if _, err := l.fl.TryLockContext(ctx, lockPoll); err != nil {
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				return nil, fmt.Errorf("lock token cache %s: held by another latchkey process: %w", l.path, err)
			}
			return nil, fmt.Errorf("lock token cache %s: %w", l.path, err)
		}
		// TryLockContext returns false only with an error.
		if stale, err := l.stale(); err != nil || !stale {
			lk, _, err := l.result(err)
			return lk, err
		}
	}
}

// newLock creates the cache directory and returns an unlocked Lock for id.
func (c *Cache) newLock(id string) (*Lock, error) {
	if err := checkID(id); err != nil {
		return nil, fmt.Errorf("lock token cache: %w", err)
	}
	path := c.LockPath(id)
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("lock token cache %s: %w", path, err)
	}
	if err := c.checkDir(); err != nil {
		return nil, fmt.Errorf("lock token cache %s: %w", path, err)
	}
	// gofrs/flock's default flags, plus O_NOFOLLOW and O_NONBLOCK.
	flag := os.O_CREATE | os.O_RDONLY
	switch runtime.GOOS {
	case "aix", "solaris", "illumos":
		flag = os.O_CREATE | os.O_RDWR // exclusive locks need write access there
	}
	fl := flock.New(path, flock.SetFlag(flag|oLockFlags), flock.SetPermissions(0o600))
	return &Lock{fl: fl, path: path}, nil
}

// stale reports whether the file l locked is no longer at l.path, because
// Delete removed it (or someone replaced it) between l opening it and locking
// it. Such a lock excludes nobody who opens the path now, so the caller must
// unlock and try again. On error l is unlocked.
func (l *Lock) stale() (bool, error) {
	locked, err := l.fl.Stat()
	if err == nil {
		if rerr := regular(locked); rerr != nil {
			_ = l.fl.Unlock()
			return false, fmt.Errorf("lock token cache %s: %w", l.path, rerr)
		}
		var current fs.FileInfo
		current, err = os.Lstat(l.path)
		if err == nil && os.SameFile(locked, current) {
			return false, nil
		}
		if errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
	}
	if uerr := l.fl.Unlock(); uerr != nil && err == nil {
		err = uerr
	}
	if err != nil {
		return false, fmt.Errorf("lock token cache %s: %w", l.path, err)
	}
	return true, nil
}

// result turns the outcome of stale into TryLock's results.
func (l *Lock) result(err error) (*Lock, bool, error) {
	if err != nil {
		return nil, false, err
	}
	return l, true, nil
}

// Unlock releases the lock and closes the lock file. The file stays, for the
// next process to lock. Unlocking an unlocked (or nil) Lock does nothing.
func (l *Lock) Unlock() error {
	if l == nil || l.fl == nil {
		return nil
	}
	if err := l.fl.Unlock(); err != nil {
		return fmt.Errorf("unlock token cache %s: %w", l.path, err)
	}
	return nil
}

// Path returns the path of the lock file.
func (l *Lock) Path() string {
	return l.path
}
