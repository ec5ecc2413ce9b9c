//go:build !unix

package cache

// This platform has no O_NOFOLLOW or O_NONBLOCK; Load relies on its Lstat and
// Stat checks alone.
const (
	oNoFollow = 0
	oNonBlock = 0
)
