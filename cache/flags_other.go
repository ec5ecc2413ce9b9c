//go:build !unix

package cache

import (
	"fmt"
	"io/fs"
)

// This platform has no O_NOFOLLOW; the lock file's open and Load rely on
// other checks (see openEntry).
const oNoFollow = 0

// oLockFlags: no O_NOFOLLOW or O_NONBLOCK here.
const oLockFlags = 0

// checkDir: file modes do not express access here (see the package doc).
func (c *Cache) checkDir() error { return nil }

// regular refuses a lock file that is not a regular file.
func regular(fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("not a regular file (mode %v)", fi.Mode().Type())
	}
	return nil
}
