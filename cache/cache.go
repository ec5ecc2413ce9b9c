// Package cache stores latchkey's tokens on disk, one file per [Key], and
// serializes token refreshes across processes with one lock file per key.
//
// # Layout
//
// A cache is one directory, by default $XDG_CACHE_HOME/latchkey (see [Open]):
//
//	<dir>/                 0700, created by the first Save, TryLock or Lock
//	<dir>/<id>.json        0600, one [Entry] as JSON; id is [Key.ID]
//	<dir>/<id>.lock        0600, empty; locked by [Cache.Lock] and [Cache.TryLock]
//	<dir>/.<id>.<rand>.tmp transient; written by Save, then renamed to <id>.json
//
// # Permissions
//
// Entries hold bearer and refresh tokens, so they are readable only by their
// owner: Save creates them 0600 in a directory it creates 0700 (an existing
// directory is left as it is). Load refuses anything but a regular file (it
// does not follow a symbolic link at the entry's path) and removes group and
// other permissions from an entry that has them. On Windows, file modes do not
// express access; there the user profile's ACLs protect the cache.
//
// # Atomicity
//
// Save writes a temporary file in the cache directory, flushes it to stable
// storage, renames it over the entry and flushes the directory. rename(2) (and
// MoveFileEx on Windows) replaces the entry atomically, so a reader sees the
// old entry or the new one, never a mix, and a crash leaves the old entry
// intact. Load therefore takes no lock, and neither does [Cache.Peek], its
// cheaper variant for a cached kubectl call.
//
// The lock serializes writers only. Public clients' refresh tokens are rotated
// on use (RFC 9700 §4.14): two processes that refresh with the same token at
// once lose one of the new tokens, and may have the whole token family
// revoked. A caller that is about to refresh must therefore take the key's
// [Lock], Load the entry again (another process may have refreshed while it
// waited), refresh, Save and only then Unlock.
package cache // import "github.com/latchkey/latchkey/cache"

import (
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
	"time"

	"github.com/adrg/xdg"
)

// Version is the entry format version written by this package. Load refuses
// entries of a newer version (written by a newer latchkey) with [ErrInvalid].
const Version = 1

// maxEntrySize caps how much Load reads. Real entries are a few kilobytes;
// anything above this is not an entry.
const maxEntrySize = 1 << 20

// maxIDLen caps the length of an id. [Key.ID] returns 64 characters.
const maxIDLen = 128

var (
	// ErrNotFound means there is no entry for the id. Errors that wrap it
	// also match [fs.ErrNotExist].
	ErrNotFound = errors.New("token cache entry not found")

	// ErrInvalid means an entry exists but is unusable: it is not a regular
	// file, is too large, is not valid JSON, has a format version this
	// package does not support, or is readable by other users and cannot be
	// made private. The error names the path and the reason, never the
	// file's content. Callers typically treat it like [ErrNotFound] and
	// overwrite the entry.
	ErrInvalid = errors.New("invalid token cache entry")

	// ErrInvalidID means an id is not usable as a file name: ids are 1 to 128
	// ASCII letters, digits, '-' or '_', as [Key.ID] returns.
	ErrInvalidID = errors.New("invalid token cache id")
)

// Entry is what is stored for one [Key]: the tokens of the last successful
// token response (RFC 6749 §5.1, OIDC Core §3.1.3.3) and the provider
// metadata they were obtained with.
//
// Entry holds secrets. Do not print it; its [Entry.LogValue] method shows
// only what is safe to log.
type Entry struct {
	// Version is the format version; Save sets it to [Version].
	Version int `json:"version"`
	// Key is the key the entry was saved under, for listing the cache; the
	// file name is its ID.
	Key *Key `json:"key,omitempty"`
	// ID is the id the entry was saved under (Save sets it): Load and Peek
	// refuse an entry found under another id, so that an entry copied
	// under another configuration's name is not served for it (nor its
	// refresh token sent to that configuration's issuer). Entries written
	// before it was stored are checked against Key instead.
	ID string `json:"id,omitempty"`
	// IDToken is the raw ID token (a JWT).
	IDToken string `json:"id_token,omitempty"`
	// IDTokenExpiry is the ID token's exp claim.
	IDTokenExpiry time.Time `json:"id_token_expiry,omitzero"`
	// AccessToken is the access token (RFC 6749 §1.4).
	AccessToken string `json:"access_token,omitempty"`
	// TokenType is the access token's type, usually "Bearer" (RFC 6749 §7.1).
	TokenType string `json:"token_type,omitempty"`
	// Expiry is when the access token expires, computed from expires_in.
	Expiry time.Time `json:"expiry,omitzero"`
	// RefreshToken is the newest refresh token (RFC 6749 §1.5). With
	// rotation, older ones are invalid, so only this one is kept.
	RefreshToken string `json:"refresh_token,omitempty"`
	// Scope is the scope the provider granted, as its last token response
	// said (RFC 6749 §5.1: the requested scope when it said nothing), so
	// that a refresh asks for no more than was granted (§6).
	Scope string `json:"scope,omitempty"`
	// OfflineNeedsConsent records that the provider granted offline_access
	// (a refresh token) only with prompt=consent (OpenID Connect Core §11):
	// a login without it gave none. Later logins ask with it.
	OfflineNeedsConsent bool `json:"offline_needs_consent,omitempty"`
	// Issuer is the issuer identifier of the provider that minted the
	// tokens. Callers refresh and revoke them only there (RFC 9700 §4.4:
	// tokens must not reach another authorization server).
	Issuer string `json:"issuer,omitempty"`
	// Provider is what the caller learned about the provider (its discovery
	// metadata and keys, say), kept so that a refresh needs one request. The
	// cache stores it as given and never interprets it; Save refuses a value
	// that is not valid JSON. It holds no secret.
	Provider json.RawMessage `json:"provider,omitempty"`
	// LoginFailure, if set, records the last browser login for this key
	// that failed or was abandoned, so that processes waiting behind it do
	// not retry it and background callers do not open another browser at
	// once. A successful login clears it.
	LoginFailure *Failure `json:"login_failure,omitempty"`
	// RefreshFailure, if set, records a refresh that failed for want of the
	// provider (network, timeout, 5xx) while the refresh token stays good,
	// so that processes waiting behind it give up at once instead of each
	// waiting out the same stalled provider. A successful save clears it.
	RefreshFailure *Failure `json:"refresh_failure,omitempty"`
	// LastFailure, if set, is the last login or refresh for this key that
	// failed, whatever the reason (a busy port, no way to reach the person
	// too), for `latchkey status`: callers that swallow latchkey's stderr
	// (flytectl) show only an exit status.
	LastFailure *Failure `json:"last_failure,omitempty"`
	// Secrets tells where the tokens are when the file does not hold them:
	// [SecretsInKeyring] means in [Cache.Keyring] (the file then keeps only
	// what is not secret: key, provider, expiries). Load fills them in.
	Secrets string `json:"secrets,omitempty"`
}

// Failure describes a failed login.
type Failure struct {
	// At is when the login ended.
	At time.Time `json:"at"`
	// Reason is a one-line description for people; it holds no secret.
	Reason string `json:"reason"`
}

// LogValue implements [slog.LogValuer]. It reports expiries and which tokens
// are present, never the tokens themselves.
func (e *Entry) LogValue() slog.Value {
	if e == nil {
		return slog.StringValue("<nil>")
	}
	attrs := []slog.Attr{
		slog.Int("version", e.Version),
		slog.Bool("id_token", e.IDToken != ""),
		slog.Time("id_token_expiry", e.IDTokenExpiry),
		slog.Bool("access_token", e.AccessToken != ""),
		slog.Time("expiry", e.Expiry),
		slog.Bool("refresh_token", e.RefreshToken != ""),
	}
	if e.Issuer != "" {
		attrs = append(attrs, slog.String("issuer", e.Issuer))
	}
	if e.LoginFailure != nil {
		attrs = append(attrs, slog.Time("login_failure", e.LoginFailure.At))
	}
	return slog.GroupValue(attrs...)
}

// Cache is a directory of entries and their lock files. The zero value is not
// usable; use [Open]. A Cache is safe for concurrent use; its methods do not
// modify it.
type Cache struct {
	// Dir is the cache directory, an absolute path.
	Dir string
	// Logger receives warnings, such as about entries whose permissions had
	// to be tightened, and debug messages. Nil discards them.
	Logger *slog.Logger
	// Keyring, if set, keeps the tokens of the entries Save writes in the OS
	// keyring, named after the entry's path; the entry file, which List
	// finds and which `latchkey status` reads, keeps the rest, and the lock
	// files stay in Dir. A token set the keyring refuses (none reachable,
	// locked, too large) is written to the file instead, with a warning. Nil
	// keeps everything in the files and never touches the keyring.
	Keyring *Keyring
}

// Open returns a Cache for dir; dir "" means $XDG_CACHE_HOME/latchkey (that
// is, filepath.Join(xdg.CacheHome, "latchkey")). A relative dir is made
// absolute against the working directory. Open does not touch the disk; Save,
// TryLock and Lock create the directory when they need it.
func Open(dir string) *Cache {
	if dir == "" {
		dir = filepath.Join(defaultCacheHome(), "latchkey")
	}
	if !filepath.IsAbs(dir) {
		if abs, err := filepath.Abs(dir); err == nil {
			dir = abs
		}
	}
	return &Cache{Dir: dir}
}

// Path returns the path of id's entry file, <dir>/<id>.json. It does not
// validate id.
func (c *Cache) Path(id string) string {
	return filepath.Join(c.Dir, id+".json")
}

// LockPath returns the path of id's lock file, <dir>/<id>.lock. It does not
// validate id.
func (c *Cache) LockPath(id string) string {
	return filepath.Join(c.Dir, id+".lock")
}

// Load reads id's entry. It takes no lock and creates nothing (see the
// package documentation for why that is safe).
//
// A missing entry is an error wrapping [ErrNotFound] and [fs.ErrNotExist]; an
// unusable one wraps [ErrInvalid]. If the entry grants group or other users
// any permission, Load sets its mode to 0600 and logs a warning; if it cannot,
// the entry is invalid. Other I/O errors, such as permission denied, are
// returned wrapped.
func (c *Cache) Load(id string) (*Entry, error) {
	return c.load(id, decode)
}

// load reads id's entry and decodes it with dec.
func (c *Cache) load(id string, dec func(path string, data []byte) (*Entry, error)) (*Entry, error) {
	if err := checkID(id); err != nil {
		return nil, fmt.Errorf("load token cache: %w", err)
	}
	path := c.Path(id)
	fi, err := os.Lstat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, notFound(path)
		}
		return nil, fmt.Errorf("load token cache %s: %w", path, err)
	}
	if reason := checkMode(fi); reason != "" {
		return nil, invalid(path, reason)
	}
	// O_NOFOLLOW and O_NONBLOCK (where the platform has them) keep a
	// symbolic link or a FIFO swapped in after the Lstat from being followed
	// or from blocking; the Stat below re-checks what was opened.
	f, err := openEntry(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, notFound(path)
		}
		return nil, fmt.Errorf("load token cache %s: %w", path, err)
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return nil, fmt.Errorf("load token cache %s: %w", path, err)
	}
	if reason := checkMode(fi); reason != "" {
		return nil, invalid(path, reason)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		if err := f.Chmod(0o600); err != nil {
			return nil, fmt.Errorf("load token cache %s: %w: mode %04o grants access to other users and cannot be changed: %w", path, ErrInvalid, perm, err)
		}
		c.logger().Warn("token cache entry was accessible to other users; changed its mode to 0600", "path", path, "mode", fmt.Sprintf("%04o", perm))
	}
	data, err := readFile(f, fi.Size())
	if err != nil {
		if errors.Is(err, errTooLarge) {
			return nil, invalid(path, fmt.Sprintf("larger than %d bytes", maxEntrySize))
		}
		return nil, fmt.Errorf("load token cache %s: %w", path, err)
	}
	e, err := dec(path, data)
	if err != nil {
		return nil, err
	}
	if !writtenFor(id, e, data) {
		return nil, invalid(path, "it was written for another configuration")
	}
	if e.Secrets == "" {
		return e, nil
	}
	return c.loadSecrets(path, e)
}

// writtenFor tells whether entry e, read from data, was written for id: its
// ID says so, or, in an entry written before the ID was stored, its key
// (which Peek does not decode: it is read from data then).
func writtenFor(id string, e *Entry, data []byte) bool {
	if e.ID != "" {
		return e.ID == id
	}
	k := e.Key
	if k == nil {
		var v struct {
			Key *Key `json:"key"`
		}
		if json.Unmarshal(data, &v) != nil {
			return true // damaged elsewhere: Load refuses it, Peek looks only at tokens
		}
		k = v.Key
	}
	return k == nil || k.ID() == id
}

// checkMode returns why fi cannot be an entry, or "" if it can.
func checkMode(fi fs.FileInfo) string {
	switch m := fi.Mode(); {
	case m&fs.ModeSymlink != 0:
		return "is a symbolic link"
	case m.IsDir():
		return "is a directory"
	case !m.IsRegular():
		return fmt.Sprintf("is not a regular file (mode %v)", m.Type())
	case fi.Size() > maxEntrySize:
		return fmt.Sprintf("larger than %d bytes", maxEntrySize)
	}
	return ""
}

// errTooLarge is returned by readFile for a file above maxEntrySize.
var errTooLarge = errors.New("too large")

// readFile reads f to its end, expecting size bytes. It reads at most
// maxEntrySize+1 bytes, in case the file grew after it was measured.
func readFile(f io.Reader, size int64) ([]byte, error) {
	// One more byte than expected, so the read that returns io.EOF needs no
	// reallocation.
	buf := make([]byte, 0, min(size, maxEntrySize)+1)
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, 4096)
		}
		n, err := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > maxEntrySize {
			return nil, errTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// decode parses an entry read from path. Its errors wrap [ErrInvalid] and do
// not quote data.
func decode(path string, data []byte) (*Entry, error) {
	if len(data) == 0 {
		return nil, invalid(path, "file is empty")
	}
	var e Entry
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, invalid(path, jsonReason(err))
	}
	if err := checkVersion(path, e.Version); err != nil {
		return nil, err
	}
	return &e, nil
}

// checkVersion refuses format versions this package cannot read.
func checkVersion(path string, v int) error {
	switch {
	case v < 1:
		return invalid(path, fmt.Sprintf("missing or bad format version %d", v))
	case v > Version:
		return invalid(path, fmt.Sprintf("format version %d is newer than this latchkey supports (%d)", v, Version))
	}
	return nil
}

// jsonReason describes a json.Unmarshal error without quoting the input: the
// error texts of encoding/json and time.Time can contain parts of it, and the
// input holds tokens.
func jsonReason(err error) string {
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) {
		return fmt.Sprintf("malformed or truncated JSON at byte %d", syntax.Offset)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		if typ.Field == "" {
			return "JSON value is not an object"
		}
		return fmt.Sprintf("JSON field %q has the wrong type", typ.Field)
	}
	return "malformed JSON value"
}

// invalid returns an error wrapping ErrInvalid that names path and reason.
func invalid(path, reason string) error {
	return fmt.Errorf("load token cache %s: %w: %s", path, ErrInvalid, reason)
}

// notFound returns an error wrapping ErrNotFound and fs.ErrNotExist.
func notFound(path string) error {
	return fmt.Errorf("load token cache %s: %w (%w)", path, ErrNotFound, fs.ErrNotExist)
}

// Save writes e as id's entry, replacing any previous one atomically, and
// sets e.Version to [Version].
//
// It creates the cache directory (0700) if needed, writes a temporary file
// (0600) in it, flushes the file to stable storage, renames it over the entry
// and, except on Windows, flushes the directory so the rename is durable. On
// failure the temporary file is removed and the previous entry is left as it
// was.
func (c *Cache) Save(id string, e *Entry) (err error) {
	if err := checkID(id); err != nil {
		return fmt.Errorf("save token cache: %w", err)
	}
	path := c.Path(id)
	if e == nil {
		return fmt.Errorf("save token cache %s: nil entry", path)
	}
	e.Version, e.ID = Version, id
	stored := e
	if c.Keyring != nil {
		stored = c.saveSecrets(path, e)
	}
	data, err := json.Marshal(stored)
	if err != nil {
		// Only Provider can fail to encode; it holds no secrets.
		return fmt.Errorf("save token cache %s: encode entry: %w", path, err)
	}
	data = append(data, '\n')
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return fmt.Errorf("save token cache %s: %w", path, err)
	}
	if err := c.checkDir(); err != nil {
		return fmt.Errorf("save token cache %s: %w", path, err)
	}
	f, err := os.CreateTemp(c.Dir, "."+id+".*.tmp")
	if err != nil {
		return fmt.Errorf("save token cache %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("save token cache %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("save token cache %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save token cache %s: %w", path, err)
	}
	if err := replace(tmp, path); err != nil {
		// rename(2) cannot replace a directory: remove an empty one where
		// the entry belongs and try once more. A non-empty one is left
		// alone and reported.
		fi, lerr := os.Lstat(path)
		if lerr != nil || !fi.IsDir() || os.Remove(path) != nil {
			return fmt.Errorf("save token cache %s: %w", path, err)
		}
		if err := replace(tmp, path); err != nil {
			return fmt.Errorf("save token cache %s: %w", path, err)
		}
	}
	c.syncDir()
	return nil
}

// syncDir flushes the cache directory, making a rename in it durable. It is
// best effort: some file systems and platforms (Windows) cannot do it, and the
// entry has been written either way.
func (c *Cache) syncDir() {
	if runtime.GOOS == "windows" {
		return
	}
	d, err := os.Open(c.Dir)
	if err != nil {
		c.logger().Debug("sync token cache directory", "dir", c.Dir, "err", err)
		return
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		c.logger().Debug("sync token cache directory", "dir", c.Dir, "err", err)
	}
}

// Delete removes id's entry and lock file. Missing files are not an error.
//
// Processes that lock id afterwards lock a new lock file, so a [Lock] held on
// id no longer excludes them: a caller holding the lock should Delete last
// and then Unlock.
func (c *Cache) Delete(id string) error {
	return c.remove(id, true)
}

// Forget removes id's entry (and its keyring items and leftover temporary
// files) but keeps its lock file, so a holder of the lock can forget an
// entry without letting another process take a new lock meanwhile.
func (c *Cache) Forget(id string) error {
	return c.remove(id, false)
}

func (c *Cache) remove(id string, lock bool) error {
	if err := checkID(id); err != nil {
		return fmt.Errorf("delete token cache: %w", err)
	}
	var errs []error
	if c.Keyring != nil {
		if err := c.Keyring.Delete(c.Path(id)); err != nil {
			errs = append(errs, err)
		}
	}
	paths := []string{c.Path(id)}
	if lock {
		paths = append(paths, c.LockPath(id))
	}
	// A Save killed between writing and renaming leaves its temporary
	// file, which holds tokens.
	if tmps, err := filepath.Glob(filepath.Join(c.Dir, "."+id+".*.tmp")); err == nil {
		paths = append(paths, tmps...)
	}
	for _, path := range paths {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delete token cache %s: %w", id, err)
	}
	return nil
}

// List returns the ids of the entries in the cache directory, sorted. Each
// file named <id>.json counts, whether or not Load can use it, so that
// `latchkey status` can report unusable entries too. A missing directory has
// no entries.
func (c *Cache) List() ([]string, error) {
	des, err := os.ReadDir(c.Dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list token cache %s: %w", c.Dir, err)
	}
	var ids []string
	for _, de := range des {
		id, ok := strings.CutSuffix(de.Name(), ".json")
		if ok && checkID(id) == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// checkID reports whether id is usable as a file name (see [ErrInvalidID]).
func checkID(id string) error {
	if len(id) == 0 || len(id) > maxIDLen {
		return fmt.Errorf("%w %q: length %d, want 1 to %d", ErrInvalidID, id, len(id), maxIDLen)
	}
	for i := range len(id) {
		switch ch := id[i]; {
		case 'a' <= ch && ch <= 'z', 'A' <= ch && ch <= 'Z', '0' <= ch && ch <= '9', ch == '-', ch == '_':
		default:
			return fmt.Errorf("%w %q: only ASCII letters, digits, '-' and '_' are allowed", ErrInvalidID, id)
		}
	}
	return nil
}

// logger returns c.Logger or, if it is nil, a logger that discards.
func (c *Cache) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// defaultCacheHome is the user's cache directory: $XDG_CACHE_HOME, else
// ~/.cache on Linux and the BSDs, ~/Library/Caches on macOS, and
// %LOCALAPPDATA% on Windows (where adrg/xdg would add a "cache" folder).
func defaultCacheHome() string {
	if runtime.GOOS == "windows" && os.Getenv("XDG_CACHE_HOME") == "" {
		if d, err := os.UserCacheDir(); err == nil {
			return d
		}
	}
	return xdg.CacheHome
}
