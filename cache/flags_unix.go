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

// openEntry opens an entry for reading. O_NOFOLLOW and O_NONBLOCK keep a
// symbolic link or a FIFO swapped in after Load's Lstat from being followed
// or from blocking the open; Load's Stat of the opened file then refuses
// anything but a regular file.
//
// The descriptor is made blocking again before os.NewFile wraps it: reads
// of a regular file never wait, and a blocking descriptor stays out of the
// runtime's network poller, whose set-up (epoll instance, eventfd,
// registration) a cached call would otherwise pay for.
func openEntry(path string) (*os.File, error) {
	var fd int
	var err error
	for {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC|oNoFollow|oNonBlock, 0)
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
