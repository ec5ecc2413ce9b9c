package cache

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/adrg/xdg"
	"github.com/google/go-cmp/cmp"
)

// What differs per platform. adrg/xdg picks its defaults at build time (by
// file name suffix: paths_darwin.go, paths_windows.go, paths_unix.go), so
// these tests cannot inject GOOS; each checks the platform it runs on, and
// `make check` vets them for all six release platforms.

// wantCacheHome returns where the user's cache is expected when
// XDG_CACHE_HOME is unset, given the home directory.
func wantCacheHome(t *testing.T, home string) string {
	t.Helper()
	switch runtime.GOOS {
	case "darwin":
		return filepath.Join(home, "Library", "Caches")
	case "windows":
		// %LOCALAPPDATA% itself (os.UserCacheDir), not adrg/xdg's
		// %LOCALAPPDATA%\cache.
		local := os.Getenv("LOCALAPPDATA")
		if local == "" {
			t.Skip("LOCALAPPDATA is not set")
		}
		return local
	case "plan9":
		return filepath.Join(home, "lib", "cache")
	}
	return filepath.Join(home, ".cache")
}

// setHome points xdg at a fresh home directory with XDG_CACHE_HOME set to
// cacheHome ("" unsets it) and returns the home directory.
func setHome(t *testing.T, cacheHome string) string {
	home := t.TempDir()
	t.Cleanup(xdg.Reload) // runs after Setenv restores the variables
	t.Setenv("HOME", home)
	t.Setenv("USERPROFILE", home)
	t.Setenv("XDG_CACHE_HOME", cacheHome)
	xdg.Reload()
	return home
}

// samePath compares paths as the platform does: Windows ignores case.
func samePath(a, b string) bool {
	if runtime.GOOS == "windows" {
		return strings.EqualFold(a, b)
	}
	return a == b
}

func TestOpenDefaultDirPlatform(t *testing.T) {
	home := setHome(t, "")
	got := Open("").Dir
	want := filepath.Join(wantCacheHome(t, home), "latchkey")
	if !samePath(got, want) {
		t.Errorf("Open(\"\").Dir = %q, want %q", got, want)
	}
}

// The XDG Base Directory specification makes relative paths in its variables
// invalid; they must be ignored, not resolved against the working directory.
func TestOpenIgnoresRelativeXDGCacheHome(t *testing.T) {
	home := setHome(t, filepath.Join("relative", "cache"))
	got := Open("").Dir
	want := filepath.Join(wantCacheHome(t, home), "latchkey")
	if !samePath(got, want) {
		t.Errorf("Open(\"\").Dir with a relative XDG_CACHE_HOME = %q, want %q", got, want)
	}
}

// Windows locks byte ranges against every other handle, even for reading;
// the lock must therefore be a file of its own, and a held lock must not
// keep the holder (or anyone) from reading and replacing the entry.
func TestEntryUsableWhileLocked(t *testing.T) {
	c, l := lockedEntry(t)
	defer l.Unlock()

	entry, err := os.Stat(c.Path(testID))
	if err != nil {
		t.Fatal(err)
	}
	lock, err := os.Stat(l.Path())
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(entry, lock) {
		t.Fatalf("the lock file %s is the entry %s", l.Path(), c.Path(testID))
	}

	want := testEntry()
	want.IDToken = fakeJWT(2)
	if err := c.Save(testID, want); err != nil {
		t.Fatalf("Save while locked: %v", err)
	}
	got, err := c.Load(testID)
	if err != nil {
		t.Fatalf("Load while locked: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Load while locked (-want +got):\n%s", diff)
	}
}

// Load takes no lock, so another process may be reading the entry while a
// refresh saves a new one. On Windows, replacing a file fails while any
// handle to it was opened without FILE_SHARE_DELETE, which os.Open omits.
func TestSaveReplacesEntryOpenForReading(t *testing.T) {
	c := Open(t.TempDir())
	if err := c.Save(testID, testEntry()); err != nil {
		t.Fatal(err)
	}
	reader, err := os.Open(c.Path(testID)) // as a concurrent Load has it
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()

	want := testEntry()
	want.IDToken = fakeJWT(3)
	if err := c.Save(testID, want); err != nil {
		t.Fatalf("Save while another handle reads the entry: %v", err)
	}
	got, err := c.Load(testID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Load after Save (-want +got):\n%s", diff)
	}
}
