//go:build unix

package cache

import (
	"os"
	"syscall"
)

// Open flags that keep Load from following a symbolic link or blocking on a
// FIFO, and the lock file open from following a symbolic link.
const (
	oNoFollow = syscall.O_NOFOLLOW
	oNonBlock = syscall.O_NONBLOCK
)

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
