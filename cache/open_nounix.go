//go:build !unix && !windows

package cache

import "os"

// openEntry opens an entry for reading. On these platforms (plan9, js,
// wasip1) Load relies on its Lstat and Stat checks alone.
func openEntry(path string) (*os.File, error) {
	return os.Open(path)
}
