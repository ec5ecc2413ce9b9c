//go:build !windows

package cache

import "os"

// replace renames tmp over path atomically (rename(2)).
func replace(tmp, path string) error {
	return os.Rename(tmp, path)
}
