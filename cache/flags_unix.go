//go:build unix

package cache

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// Open flags that keep Load from following a symbolic link or blocking on a
// FIFO, and the lock file open from following a symbolic link.
const (
	oNoFollow = syscall.O_NOFOLLOW
	oNonBlock = syscall.O_NONBLOCK
)

// oLockFlags open the lock file without following a symbolic link or
// blocking on a FIFO (regular then refuses it).
const oLockFlags = syscall.O_NOFOLLOW | syscall.O_NONBLOCK

// openEntry opens an entry for reading. O_NOFOLLOW, O_NONBLOCK and
// O_NOCTTY keep a symbolic link, a FIFO or a terminal swapped in after
// Load's Lstat from being followed, from blocking the open or from becoming
// the controlling terminal; Load's Stat of the opened file then refuses
// anything but a regular file.
//
// The descriptor is made blocking again before os.NewFile wraps it: reads
// of a regular file never return EAGAIN, so they gain nothing from the
// runtime's network poller, and a blocking descriptor stays out of it and
// spares a cached call the poller's set-up (epoll instance, eventfd,
// registration).
func openEntry(path string) (*os.File, error) {
	var fd int
	var err error
	for {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NOCTTY|oNoFollow|oNonBlock, 0)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	if err := syscall.SetNonblock(fd, false); err != nil {
		syscall.Close(fd)
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// checkDir makes sure the cache directory is the user's own and that no
// other user may write to it (swap entries, plant files): a directory owned
// by another user is refused, and so is a shared one (sticky, as /tmp); one
// of the user's own that others may write to (0777, say) is set back to
// 0700 with a warning. Read access alone is left: entries are 0600.
func (c *Cache) checkDir() error {
	fi, err := os.Stat(c.Dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok && int(st.Uid) != os.Getuid() {
		return fmt.Errorf("token cache directory %s belongs to user %d, not to you: refusing to use it", c.Dir, st.Uid)
	}
	perm := fi.Mode().Perm()
	switch {
	case perm&0o022 == 0:
		return nil
	case fi.Mode()&fs.ModeSticky != 0:
		return fmt.Errorf("token cache directory %s is shared with other users (mode %v): use a directory of your own", c.Dir, fi.Mode())
	}
	if err := os.Chmod(c.Dir, 0o700); err != nil {
		return fmt.Errorf("token cache directory %s has mode %04o and cannot be made private: %w", c.Dir, perm, err)
	}
	c.logger().Warn("the token cache directory was writable by other users; changed its mode to 0700", "dir", c.Dir, "mode", fmt.Sprintf("%04o", perm))
	return nil
}

// regular refuses a lock file that is not a regular file (a FIFO would
// block, a device would be worse).
func regular(fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("not a regular file (mode %v)", fi.Mode().Type())
	}
	return nil
}
