//go:build !unix && !windows

package cache

import "os"

// openEntry opens an entry for reading; this platform has neither
// O_NOFOLLOW nor O_NONBLOCK, so Load relies on its Lstat and Stat checks.
func openEntry(path string) (*os.File, error) {
	return os.Open(path)
}
