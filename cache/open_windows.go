package cache

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// openEntry opens an entry for reading with FILE_SHARE_DELETE, which Go's
// os.Open leaves out: without it, another process's Save could not rename a
// new entry over one that this process is reading.
func openEntry(path string) (*os.File, error) {
	p, err := syscall.UTF16PtrFromString(path)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	h, err := syscall.CreateFile(p, syscall.GENERIC_READ,
		syscall.FILE_SHARE_READ|syscall.FILE_SHARE_WRITE|syscall.FILE_SHARE_DELETE,
		nil, syscall.OPEN_EXISTING, syscall.FILE_ATTRIBUTE_NORMAL, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(h), path), nil
}

// replace renames tmp over path (MoveFileEx with MOVEFILE_REPLACE_EXISTING,
// which os.Rename uses). A reader that opened the entry without
// FILE_SHARE_DELETE (an antivirus scanner, an older latchkey) makes it fail
// for a moment with a sharing error: retry for up to about a second.
func replace(tmp, path string) error {
	const errSharingViolation syscall.Errno = 32
	var err error
	for delay := 10 * time.Millisecond; delay < time.Second; delay *= 2 {
		if err = os.Rename(tmp, path); err == nil {
			return nil
		}
		if !errors.Is(err, syscall.ERROR_ACCESS_DENIED) && !errors.Is(err, errSharingViolation) {
			return err
		}
		time.Sleep(delay)
	}
	return err
}
