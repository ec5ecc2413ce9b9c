package cache

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/adrg/xdg"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const testID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// secret is embedded in test tokens; it must never show up in errors or logs.
const secret = "SECRET-TOKEN-MATERIAL"

// fakeJWT returns a JWT-shaped string of about n bytes containing secret.
func fakeJWT(n int) string {
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","kid":"key-1","typ":"JWT"}`))
	payload := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"https://issuer.example.com","sub":"` + secret + `","groups":["` + strings.Repeat("g", n/2) + `"]}`))
	sig := base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xa5}, 256))
	return header + "." + payload + "." + sig
}

// testEntry returns a realistic entry: ~1 KB ID and access tokens, a refresh
// token and provider metadata with a one-key JWKS.
func testEntry() *Entry {
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	n := base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0x5a}, 256))
	return &Entry{
		Version:       Version,
		IDToken:       fakeJWT(300),
		IDTokenExpiry: at.Add(time.Hour),
		AccessToken:   fakeJWT(200),
		TokenType:     "Bearer",
		Expiry:        at.Add(30 * time.Minute),
		RefreshToken:  "ChlvYXV0aC1yZWZyZXNoLXRva2VuLQ" + secret,
		Issuer:        "https://issuer.example.com",
		Provider: json.RawMessage(`{"issuer":"https://issuer.example.com","token_endpoint":"https://issuer.example.com/token",` +
			`"jwks":{"keys":[{"kty":"RSA","kid":"key-1","use":"sig","alg":"RS256","n":"` + n + `","e":"AQAB"}]},"fetched_at":"` +
			at.Format(time.RFC3339) + `"}`),
	}
}

// dirNames returns the names in dir, sorted.
func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func perm(t testing.TB, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestOpenDefaultDir(t *testing.T) {
	home := filepath.Join(t.TempDir(), "xdg-cache")
	t.Cleanup(xdg.Reload) // runs after Setenv restores the variable
	t.Setenv("XDG_CACHE_HOME", home)
	xdg.Reload()

	c := Open("")
	if want := filepath.Join(home, "latchkey"); c.Dir != want {
		t.Errorf("Open(\"\").Dir = %q, want %q", c.Dir, want)
	}
	if _, err := os.Lstat(home); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open touched the disk: Lstat(%s) = %v", home, err)
	}
	if _, err := c.Load(testID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load = %v, want ErrNotFound", err)
	}
	if _, err := os.Lstat(home); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load created directories: Lstat(%s) = %v", home, err)
	}
}

func TestOpenRelativeDir(t *testing.T) {
	c := Open("rel/dir")
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(wd, "rel", "dir"); c.Dir != want {
		t.Errorf("Open(rel/dir).Dir = %q, want %q", c.Dir, want)
	}
	if got, want := c.Path("x"), filepath.Join(wd, "rel", "dir", "x.json"); got != want {
		t.Errorf("Path = %q, want %q", got, want)
	}
	if got, want := c.LockPath("x"), filepath.Join(wd, "rel", "dir", "x.lock"); got != want {
		t.Errorf("LockPath = %q, want %q", got, want)
	}
}

func TestSaveLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "latchkey")
	c := Open(dir)
	want := testEntry()
	want.ID = testID // Save notes the id the entry is for
	e := testEntry()
	e.Version = 0
	if err := c.Save(testID, e); err != nil {
		t.Fatal(err)
	}
	if e.Version != Version {
		t.Errorf("after Save, e.Version = %d, want %d", e.Version, Version)
	}
	// The modes as Save left them: Load would set an entry's back to 0600.
	if runtime.GOOS != "windows" {
		if p := perm(t, dir); p != 0o700 {
			t.Errorf("dir mode = %04o, want 0700", p)
		}
		if p := perm(t, filepath.Dir(dir)); p != 0o700 {
			t.Errorf("parent dir mode = %04o, want 0700", p)
		}
		if p := perm(t, c.Path(testID)); p != 0o600 {
			t.Errorf("entry mode = %04o, want 0600", p)
		}
	}
	got, err := c.Load(testID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Load after Save (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{testID + ".json"}, dirNames(t, dir)); diff != "" {
		t.Errorf("dir contents (-want +got):\n%s", diff)
	}
}

func TestSaveReplaces(t *testing.T) {
	c := Open(t.TempDir())
	old := testEntry()
	if err := c.Save(testID, old); err != nil {
		t.Fatal(err)
	}
	oldData, err := os.ReadFile(c.Path(testID))
	if err != nil {
		t.Fatal(err)
	}
	// A reader that opened the entry before the write (another process's
	// Load) still reads the whole old entry: the new one is written
	// elsewhere and renamed over it, never into the file in place.
	reader, err := os.Open(c.Path(testID))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	// Shorter than the old one, so leftovers of the old file would show.
	e := &Entry{AccessToken: "new", Expiry: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)}
	if err := c.Save(testID, e); err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" {
		if b, err := io.ReadAll(reader); err != nil || !bytes.Equal(b, oldData) {
			t.Errorf("a reader of the old entry read %d bytes (%v), want the old %d: the entry was written in place", len(b), err, len(oldData))
		}
	}
	got, err := c.Load(testID)
	if err != nil {
		t.Fatal(err)
	}
	want := &Entry{Version: Version, ID: testID, AccessToken: "new", Expiry: e.Expiry}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Load after second Save (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{testID + ".json"}, dirNames(t, c.Dir)); diff != "" {
		t.Errorf("dir contents (-want +got):\n%s", diff)
	}
}

func TestSaveReplacesSymlinkWithoutFollowing(t *testing.T) {
	c := Open(t.TempDir())
	target := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(target, []byte("untouched"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, c.Path(testID)); err != nil {
		t.Skip(err)
	}
	if err := c.Save(testID, testEntry()); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(target); err != nil || string(b) != "untouched" {
		t.Errorf("symlink target = %q, %v; want it untouched", b, err)
	}
	if _, err := c.Load(testID); err != nil {
		t.Errorf("Load after Save over a symlink: %v", err)
	}
}

func TestEntryFormat(t *testing.T) {
	// A v1 entry as written by this version. Renaming a JSON field breaks
	// every existing cache; this test catches it.
	const doc = `{"version":1,"id_token":"i","id_token_expiry":"2026-01-02T03:04:05Z","access_token":"a","token_type":"Bearer",` +
		`"expiry":"2026-01-02T03:05:05Z","refresh_token":"r","issuer":"https://i","provider":{"issuer":"https://i","authorization_endpoint":"https://i/a",` +
		`"token_endpoint":"https://i/t","jwks_uri":"https://i/k","device_authorization_endpoint":"https://i/d","revocation_endpoint":"https://i/r",` +
		`"authorization_response_iss_parameter_supported":true,"id_token_signing_alg_values_supported":["RS256","ES256"],` +
		`"jwks":{"keys":[]},"fetched_at":"2026-01-02T03:00:00Z"}}`
	t0 := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	want := &Entry{
		Version: 1, IDToken: "i", IDTokenExpiry: t0.Add(245 * time.Second), AccessToken: "a", TokenType: "Bearer",
		Expiry: t0.Add(305 * time.Second), RefreshToken: "r",
		Issuer: "https://i",
		Provider: json.RawMessage(`{"issuer":"https://i","authorization_endpoint":"https://i/a",` +
			`"token_endpoint":"https://i/t","jwks_uri":"https://i/k","device_authorization_endpoint":"https://i/d","revocation_endpoint":"https://i/r",` +
			`"authorization_response_iss_parameter_supported":true,"id_token_signing_alg_values_supported":["RS256","ES256"],` +
			`"jwks":{"keys":[]},"fetched_at":"2026-01-02T03:00:00Z"}`),
	}
	got, err := decode("x.json", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("decode (-want +got):\n%s", diff)
	}
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != doc {
		t.Errorf("json.Marshal =\n%s\nwant\n%s", b, doc)
	}
	// Zero times and empty fields are omitted.
	b, err = json.Marshal(&Entry{Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"version":1}`; string(b) != want {
		t.Errorf("json.Marshal(empty entry) = %s, want %s", b, want)
	}
}

func TestLoadNotFound(t *testing.T) {
	for name, dir := range map[string]string{
		"missing entry": t.TempDir(),
		"missing dir":   filepath.Join(t.TempDir(), "missing"),
	} {
		c := Open(dir)
		_, err := c.Load(testID)
		if !errors.Is(err, ErrNotFound) || !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Load = %v, want ErrNotFound and fs.ErrNotExist", name, err)
		}
		if _, err := os.Lstat(dir); name == "missing dir" && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: Load created the directory", name)
		}
	}
}

func TestLoadInvalid(t *testing.T) {
	valid, err := json.Marshal(testEntry())
	if err != nil {
		t.Fatal(err)
	}
	entry := func(f func(e *Entry)) []byte {
		e := testEntry()
		f(e)
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	files := map[string][]byte{
		"garbage":            []byte("\x00\x01not json " + secret),
		"truncated":          valid[:len(valid)/2],
		"empty":              {},
		"whitespace":         []byte(" \n"),
		"null":               []byte("null"),
		"array":              []byte(`["` + secret + `"]`),
		"string":             []byte(`"` + secret + `"`),
		"trailing garbage":   append(slices.Clone(valid), "x"+secret...),
		"wrong field type":   []byte(`{"version":1,"access_token":42,"refresh_token":"` + secret + `"}`),
		"bad time":           []byte(`{"version":1,"expiry":"` + secret + `"}`),
		"bad jwks":           []byte(`{"version":1,"provider":{"jwks":` + secret + `}}`),
		"missing version":    []byte(`{"access_token":"` + secret + `"}`),
		"version 0":          entry(func(e *Entry) { e.Version = 0 }),
		"negative version":   entry(func(e *Entry) { e.Version = -1 }),
		"newer version":      entry(func(e *Entry) { e.Version = Version + 1 }),
		"fractional version": []byte(`{"version":1.5}`),
	}
	dir := t.TempDir()
	c := Open(dir)
	for name, content := range files {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(c.Path(testID), content, 0o600); err != nil {
				t.Fatal(err)
			}
			checkInvalid(t, c)
		})
	}

	t.Run("too large", func(t *testing.T) {
		// Valid JSON, but padded beyond the cap.
		big := append([]byte(`{"version":1,"id_token":"`), bytes.Repeat([]byte("a"), maxEntrySize)...)
		big = append(big, `"}`...)
		if err := os.WriteFile(c.Path(testID), big, 0o600); err != nil {
			t.Fatal(err)
		}
		checkInvalid(t, c)
	})
	t.Run("directory", func(t *testing.T) {
		c := Open(t.TempDir())
		if err := os.Mkdir(c.Path(testID), 0o700); err != nil {
			t.Fatal(err)
		}
		checkInvalid(t, c)
	})
	t.Run("symlink to valid entry", func(t *testing.T) {
		c := Open(t.TempDir())
		target := filepath.Join(t.TempDir(), "entry.json")
		if err := os.WriteFile(target, valid, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, c.Path(testID)); err != nil {
			t.Skip(err)
		}
		checkInvalid(t, c)
	})
	t.Run("dangling symlink", func(t *testing.T) {
		c := Open(t.TempDir())
		if err := os.Symlink(filepath.Join(t.TempDir(), "missing"), c.Path(testID)); err != nil {
			t.Skip(err)
		}
		checkInvalid(t, c)
	})
}

// checkInvalid asserts that c.Load(testID) and c.Peek(testID) fail with
// ErrInvalid, naming the path but no content.
func checkInvalid(t *testing.T, c *Cache) {
	t.Helper()
	for name, load := range map[string]func(string) (*Entry, error){"Load": c.Load, "Peek": c.Peek} {
		e, err := load(testID)
		if !errors.Is(err, ErrInvalid) || errors.Is(err, ErrNotFound) || e != nil {
			t.Fatalf("%s = %v, %v; want ErrInvalid", name, e, err)
		}
		if msg := err.Error(); !strings.Contains(msg, c.Path(testID)) || strings.Contains(msg, secret) {
			t.Errorf("%s error %q: want the path and no content", name, msg)
		}
		t.Log(err)
	}
}

func TestLoadTightensPermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("file modes do not express access on Windows")
	}
	// Readable by others, or only by the group.
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604} {
		t.Run(fmt.Sprintf("%04o", mode), func(t *testing.T) {
			var logs bytes.Buffer
			c := Open(t.TempDir())
			c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			want := testEntry()
			if err := c.Save(testID, want); err != nil {
				t.Fatal(err)
			}
			path := c.Path(testID)
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			got, err := c.Load(testID)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Load (-want +got):\n%s", diff)
			}
			if p := perm(t, path); p != 0o600 {
				t.Errorf("mode after Load = %04o, want 0600", p)
			}
			if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, fmt.Sprintf("%04o", mode)) || strings.Contains(out, secret) {
				t.Errorf("log = %q, want a warning naming the old mode and no token", out)
			}
			// A private entry is loaded without a warning.
			logs.Reset()
			if _, err := c.Load(testID); err != nil {
				t.Fatal(err)
			}
			if logs.Len() != 0 {
				t.Errorf("second Load logged %q", logs.String())
			}
		})
	}
}

func TestLoadPermissionDenied(t *testing.T) {
	if runtime.GOOS == "windows" || os.Geteuid() == 0 {
		t.Skip("needs a non-root Unix user: root bypasses file modes")
	}
	c := Open(t.TempDir())
	if err := c.Save(testID, testEntry()); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(c.Path(testID), 0o200); err != nil {
		t.Fatal(err)
	}
	_, err := c.Load(testID)
	if !errors.Is(err, fs.ErrPermission) || errors.Is(err, ErrInvalid) || errors.Is(err, ErrNotFound) {
		t.Errorf("Load = %v, want a wrapped permission error", err)
	}
}

// checkUnchanged asserts that c's entry is still old after a failed Save.
func checkUnchanged(t *testing.T, c *Cache, old *Entry) {
	t.Helper()
	got, err := c.Load(testID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(old, got); diff != "" {
		t.Errorf("entry after failed Save (-old +got):\n%s", diff)
	}
}

func TestSaveFailureKeepsOldEntry(t *testing.T) {
	t.Run("unencodable entry", func(t *testing.T) {
		c := Open(t.TempDir())
		old := testEntry()
		if err := c.Save(testID, old); err != nil {
			t.Fatal(err)
		}
		bad := testEntry()
		bad.AccessToken = "new-" + secret
		bad.Provider = json.RawMessage(`{"keys":`)
		err := c.Save(testID, bad)
		if err == nil {
			t.Fatal("Save with invalid provider JSON succeeded")
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q contains a token", err)
		}
		checkUnchanged(t, c, old)
		if diff := cmp.Diff([]string{testID + ".json"}, dirNames(t, c.Dir)); diff != "" {
			t.Errorf("dir contents (-want +got):\n%s", diff)
		}
	})
	t.Run("rename fails", func(t *testing.T) {
		// Works as root: rename(2) cannot replace a non-empty directory.
		c := Open(t.TempDir())
		if err := os.MkdirAll(filepath.Join(c.Path(testID), "keep"), 0o700); err != nil {
			t.Fatal(err)
		}
		before := dirNames(t, c.Dir)
		if err := c.Save(testID, testEntry()); err == nil {
			t.Fatal("Save over a non-empty directory succeeded")
		}
		if diff := cmp.Diff(before, dirNames(t, c.Dir)); diff != "" {
			t.Errorf("dir contents changed (-before +after):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"keep"}, dirNames(t, c.Path(testID))); diff != "" {
			t.Errorf("directory at the entry path changed (-want +got):\n%s", diff)
		}
	})
	t.Run("read-only dir", func(t *testing.T) {
		if runtime.GOOS == "windows" || os.Geteuid() == 0 {
			t.Skip("needs a non-root Unix user: root bypasses file modes")
		}
		c := Open(t.TempDir())
		old := testEntry()
		if err := c.Save(testID, old); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(c.Dir, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(c.Dir, 0o700) })
		if err := c.Save(testID, &Entry{AccessToken: "new"}); !errors.Is(err, fs.ErrPermission) {
			t.Errorf("Save in a read-only dir = %v, want a permission error", err)
		}
		checkUnchanged(t, c, old)
	})
	t.Run("nil entry", func(t *testing.T) {
		c := Open(t.TempDir())
		if err := c.Save(testID, nil); err == nil {
			t.Error("Save(nil) succeeded")
		}
	})
}

func TestInvalidID(t *testing.T) {
	parent := t.TempDir()
	c := Open(filepath.Join(parent, "cache"))
	for _, id := range []string{"", "../escape", "a/b", `a\b`, ".hidden", "a.b", "a b", "é", strings.Repeat("a", maxIDLen+1)} {
		if _, err := c.Load(id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Load(%q) = %v, want ErrInvalidID", id, err)
		}
		if err := c.Save(id, testEntry()); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Save(%q) = %v, want ErrInvalidID", id, err)
		}
		if err := c.Delete(id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidID", id, err)
		}
		if _, _, err := c.TryLock(id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("TryLock(%q) = %v, want ErrInvalidID", id, err)
		}
		if _, err := c.Lock(t.Context(), id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Lock(%q) = %v, want ErrInvalidID", id, err)
		}
	}
	if diff := cmp.Diff([]string(nil), dirNames(t, parent)); diff != "" {
		t.Errorf("invalid ids created files (-want +got):\n%s", diff)
	}
	for _, id := range []string{"a", "A-Z_09", strings.Repeat("f", maxIDLen), Key{}.ID()} {
		if err := checkID(id); err != nil {
			t.Errorf("checkID(%q) = %v, want nil", id, err)
		}
	}
}

// lockedEntry returns a cache holding testEntry under testID, and the
// entry's lock, held.
func lockedEntry(t *testing.T) (*Cache, *Lock) {
	t.Helper()
	c := Open(t.TempDir())
	if err := c.Save(testID, testEntry()); err != nil {
		t.Fatal(err)
	}
	l, ok, err := c.TryLock(testID)
	if err != nil || !ok {
		t.Fatalf("TryLock = %v, %v", ok, err)
	}
	return c, l
}

func TestDelete(t *testing.T) {
	c, l := lockedEntry(t)
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	other := "other"
	if err := c.Save(other, testEntry()); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(testID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Load(testID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load after Delete = %v, want ErrNotFound", err)
	}
	if diff := cmp.Diff([]string{other + ".json"}, dirNames(t, c.Dir)); diff != "" {
		t.Errorf("dir after Delete (-want +got):\n%s", diff)
	}
	if err := c.Delete(testID); err != nil {
		t.Errorf("second Delete = %v, want nil", err)
	}
	if err := Open(filepath.Join(t.TempDir(), "missing")).Delete(testID); err != nil {
		t.Errorf("Delete in a missing dir = %v, want nil", err)
	}
}

func TestList(t *testing.T) {
	c := Open(filepath.Join(t.TempDir(), "cache"))
	ids, err := c.List()
	if err != nil || len(ids) != 0 {
		t.Errorf("List of a missing dir = %q, %v; want empty", ids, err)
	}
	for _, id := range []string{"b", "a-b", "a"} {
		if err := c.Save(id, testEntry()); err != nil {
			t.Fatal(err)
		}
	}
	// Unusable entries are listed too; other files are not.
	if err := os.WriteFile(c.Path("broken"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"x.lock", ".a.123.tmp", "notes.txt", "bad id.json", ".json"} {
		if err := os.WriteFile(filepath.Join(c.Dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ids, err = c.List()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"a", "a-b", "b", "broken"}, ids); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
}

func TestEntryLogValue(t *testing.T) {
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "entry", testEntry(), "nil", (*Entry)(nil))
	out := logs.String()
	if strings.Contains(out, secret) || strings.Contains(out, testEntry().IDToken[:20]) {
		t.Errorf("log contains a token: %s", out)
	}
	for _, want := range []string{"entry.refresh_token=true", "entry.expiry=2026-03-04T05:36:07", "entry.issuer=https://issuer.example.com"} {
		if !strings.Contains(out, want) {
			t.Errorf("log %q lacks %q", out, want)
		}
	}
}

// BenchmarkLoad and BenchmarkPeek measure the read of a 2.6 KB entry in
// the steady state; a new process also pays for encoding/json's set-up,
// which Peek avoids (see make bench).
func BenchmarkLoad(b *testing.B) { benchmarkRead(b, (*Cache).Load) }

func BenchmarkPeek(b *testing.B) { benchmarkRead(b, (*Cache).Peek) }

func benchmarkRead(b *testing.B, read func(c *Cache, id string) (*Entry, error)) {
	c := Open(b.TempDir())
	if err := c.Save(testID, testEntry()); err != nil {
		b.Fatal(err)
	}
	fi, err := os.Stat(c.Path(testID))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(fi.Size())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := read(c, testID); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzLoad writes arbitrary bytes as an entry file and loads it. Load must not
// panic; an entry it returns has a supported version and survives a Save
// round trip; its errors are ErrInvalid without content.
func FuzzLoad(f *testing.F) {
	valid, err := json.Marshal(testEntry())
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		string(valid),
		string(valid[:len(valid)-1]),
		"",
		"null",
		"{}",
		`{"version":1}`,
		`{"version":2}`,
		`{"version":0,"access_token":"x"}`,
		`{"version":1,"expiry":"2026-01-02T03:04:05.123456789+05:30","id_token_expiry":"0001-01-01T00:00:00Z"}`,
		`{"version":1,"provider":{"jwks":{"keys":[{"n":"\u003c"}]},"id_token_signing_alg_values_supported":null}}`,
		`{"version":1,"access_token":"\ud800\xff","provider":null}`,
		`{"version":1e400}`,
		`{"version":1,"version":3}`,
		"\xef\xbb\xbf{\"version\":1}",
	} {
		f.Add([]byte(seed))
	}
	c := Open(f.TempDir())
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(c.Path(testID), data, 0o600); err != nil {
			t.Fatal(err)
		}
		e, err := c.Load(testID)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || e != nil {
				t.Fatalf("Load = %v, %v; want ErrInvalid", e, err)
			}
			return
		}
		if e.Version < 1 || e.Version > Version {
			t.Fatalf("Load returned version %d", e.Version)
		}
		// What Load accepts, Save must be able to write and Load to read
		// back unchanged (JWKS may be re-encoded, so compare it after one
		// round trip).
		e2 := roundTrip(t, e)
		if diff := cmp.Diff(e, e2, cmpopts.IgnoreFields(Entry{}, "Provider")); diff != "" {
			t.Fatalf("round trip (-loaded +reloaded):\n%s", diff)
		}
		if diff := cmp.Diff(e2, roundTrip(t, e2)); diff != "" {
			t.Fatalf("second round trip (-first +second):\n%s", diff)
		}
	})
}

// roundTrip encodes e as Save does and decodes it as Load does.
func roundTrip(t *testing.T, e *Entry) *Entry {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatalf("cannot encode a loaded entry: %v", err)
	}
	e2, err := decode("x.json", b)
	if err != nil {
		t.Fatalf("cannot decode an encoded entry: %v\n%s", err, fmt.Sprintf("%.200q", b))
	}
	return e2
}

// TestForgetKeepsTheLock: Forget removes the entry and what a killed Save
// left behind, but not the lock file another process may be waiting on.
func TestForgetKeepsTheLock(t *testing.T) {
	c, l := lockedEntry(t)
	defer l.Unlock()
	leftover := filepath.Join(c.Dir, "."+testID+".123.tmp")
	if err := os.WriteFile(leftover, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Forget(testID); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{testID + ".lock"}, dirNames(t, c.Dir)); diff != "" {
		t.Errorf("dir after Forget (-want +got):\n%s", diff)
	}
	if err := c.Delete(testID); err != nil {
		t.Fatal(err)
	}
	if names := dirNames(t, c.Dir); len(names) != 0 {
		t.Errorf("dir after Delete = %v, want empty", names)
	}
}
