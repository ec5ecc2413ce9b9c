//go:build !windows

package cache

import "os"

// openEntry opens an entry for reading. O_NOFOLLOW and O_NONBLOCK (where the
// platform has them) keep a symbolic link or a FIFO swapped in after Load's
// Lstat from being followed or from blocking.
func openEntry(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|oNoFollow|oNonBlock, 0)
}

// replace renames tmp over path atomically (rename(2)).
func replace(tmp, path string) error {
	return os.Rename(tmp, path)
}
