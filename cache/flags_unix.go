//go:build unix

package cache

import "syscall"

// Open flags that keep Load from following a symbolic link or blocking on a
// FIFO, and the lock file open from following a symbolic link.
const (
	oNoFollow = syscall.O_NOFOLLOW
	oNonBlock = syscall.O_NONBLOCK
)
