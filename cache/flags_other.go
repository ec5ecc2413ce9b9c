//go:build !unix

package cache

// This platform has no O_NOFOLLOW; the lock file's open and Load rely on
// other checks (see openEntry).
const oNoFollow = 0
