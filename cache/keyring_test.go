package cache

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/zalando/go-keyring"
)

// memStore is an in-memory secretStore that refuses values longer than limit
// bytes, as the Windows Credential Manager refuses blobs over 2560 bytes.
type memStore struct {
	limit int
	fail  error         // if set, every operation fails with it
	block chan struct{} // if set, every operation waits for it to close

	mu    sync.Mutex
	items map[string]string // service + "\x00" + user -> secret
	gets  int
}

func newMemStore(limit int) *memStore { return &memStore{limit: limit, items: make(map[string]string)} }

func (m *memStore) wait() error {
	if m.block != nil {
		<-m.block
	}
	return m.fail
}

func (m *memStore) Get(service, user string) (string, error) {
	if err := m.wait(); err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gets++
	v, ok := m.items[service+"\x00"+user]
	if !ok {
		return "", keyring.ErrNotFound
	}
	return v, nil
}

func (m *memStore) Set(service, user, secret string) error {
	if err := m.wait(); err != nil {
		return err
	}
	if m.limit > 0 && len(secret) > m.limit {
		return keyring.ErrSetDataTooBig
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.items[service+"\x00"+user] = secret
	return nil
}

func (m *memStore) Delete(service, user string) error {
	if err := m.wait(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.items[service+"\x00"+user]; !ok {
		return keyring.ErrNotFound
	}
	delete(m.items, service+"\x00"+user)
	return nil
}

// names returns the stored items' account names, sorted.
func (m *memStore) names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for k := range m.items {
		_, user, _ := strings.Cut(k, "\x00")
		out = append(out, user)
	}
	slices.Sort(out)
	return out
}

func TestKeyringChunks(t *testing.T) {
	const limit = 2560                              // Windows Credential Manager
	long := strings.Repeat("0123456789abcdef", 700) // 11200 bytes
	for _, tc := range []struct {
		name  string
		data  string
		items []string
	}{
		{"small", `{"a":1}`, []string{"x"}},
		{"exactly one item", strings.Repeat("a", 2048), []string{"x"}},
		{"one byte more", strings.Repeat("a", 2049), []string{"x", "x#1"}},
		{"long", long, []string{"x", "x#1", "x#2", "x#3", "x#4", "x#5"}},
		{"multibyte", strings.Repeat("é€😀", 900), []string{"x", "x#1", "x#2", "x#3", "x#4"}},
		{"looks like a manifest", chunkMagic + "2 00\nabc", []string{"x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMemStore(limit)
			k := &Keyring{ChunkSize: 2048, store: m}
			if err := k.Set("x", []byte(tc.data)); err != nil {
				t.Fatalf("Set: %v", err)
			}
			if diff := cmp.Diff(tc.items, m.names()); diff != "" {
				t.Errorf("items (-want +got):\n%s", diff)
			}
			for _, v := range m.items {
				if len(v) > k.ChunkSize {
					t.Errorf("an item holds %d bytes, more than ChunkSize %d", len(v), k.ChunkSize)
				}
			}
			got, err := k.Get("x")
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if string(got) != tc.data {
				t.Errorf("Get returned %d bytes, want the %d set", len(got), len(tc.data))
			}
			if err := k.Delete("x"); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if n := m.names(); len(n) != 0 {
				t.Errorf("after Delete the store holds %q", n)
			}
			if _, err := k.Get("x"); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get after Delete: %v, want ErrNotFound", err)
			}
		})
	}
}

func TestKeyringShrinkRemovesParts(t *testing.T) {
	m := newMemStore(0)
	k := &Keyring{ChunkSize: 1024, store: m}
	if err := k.Set("x", bytes.Repeat([]byte("a"), 5000)); err != nil {
		t.Fatal(err)
	}
	if err := k.Set("x", []byte("short")); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"x"}, m.names()); diff != "" {
		t.Errorf("items after a shorter Set (-want +got):\n%s", diff)
	}
	if got, err := k.Get("x"); err != nil || string(got) != "short" {
		t.Errorf("Get = %q, %v; want short", got, err)
	}
}

func TestKeyringTornRead(t *testing.T) {
	m := newMemStore(0)
	k := &Keyring{ChunkSize: 1024, store: m}
	if err := k.Set("x", bytes.Repeat([]byte("a"), 3000)); err != nil {
		t.Fatal(err)
	}
	// A part from another Set: the manifest's digest no longer matches.
	m.items[DefaultKeyringService+"\x00x#1"] = strings.Repeat("b", len(m.items[DefaultKeyringService+"\x00x#1"]))
	if got, err := k.Get("x"); !errors.Is(err, ErrKeyring) || got != nil {
		t.Errorf("Get of mismatched parts = %d bytes, %v; want ErrKeyring and nothing", len(got), err)
	}
	// A missing part is the same.
	delete(m.items, DefaultKeyringService+"\x00x#1")
	if _, err := k.Get("x"); !errors.Is(err, ErrKeyring) || errors.Is(err, ErrNotFound) {
		t.Errorf("Get with a part missing: %v, want ErrKeyring, not ErrNotFound", err)
	}
}

func TestKeyringErrors(t *testing.T) {
	down := errors.New("org.freedesktop.DBus.Error.ServiceUnknown")
	m := newMemStore(0)
	m.fail = down
	k := &Keyring{store: m}
	if _, err := k.Get("x"); !errors.Is(err, ErrKeyring) || !errors.Is(err, down) {
		t.Errorf("Get: %v, want ErrKeyring wrapping the store's error", err)
	}
	if err := k.Set("x", []byte("{}")); !errors.Is(err, ErrKeyring) {
		t.Errorf("Set: %v, want ErrKeyring", err)
	}

	// A store that does not answer (a locked keyring's prompt nobody
	// answers) is given up on after Timeout.
	m = newMemStore(0)
	m.block = make(chan struct{})
	defer close(m.block)
	k = &Keyring{store: m, Timeout: 10 * time.Millisecond}
	if _, err := k.Get("x"); !errors.Is(err, ErrKeyring) {
		t.Errorf("Get from a store that does not answer: %v, want ErrKeyring", err)
	}

	// Too small a chunk size cannot hold the manifest and data.
	k = &Keyring{store: newMemStore(0), ChunkSize: 100}
	if err := k.Set("x", bytes.Repeat([]byte("a"), 1000)); err == nil {
		t.Error("Set with ChunkSize 100 succeeded, want an error")
	}
}

func TestCacheKeyring(t *testing.T) {
	m := newMemStore(2560)
	c := Open(t.TempDir())
	c.Keyring = &Keyring{ChunkSize: 2048, store: m}
	want := testEntry()
	want.IDToken = fakeJWT(4000) // an Entra ID token with many groups
	want.Key = &Key{Issuer: "https://issuer.example.com", ClientID: "kubectl"}
	if err := c.Save(testID, want); err != nil {
		t.Fatalf("Save: %v", err)
	}
	// The file holds no token, but what status shows.
	raw, err := os.ReadFile(c.Path(testID))
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{want.IDToken, want.AccessToken, want.RefreshToken, secret} {
		if bytes.Contains(raw, []byte(tok)) {
			t.Fatalf("the entry file holds a token:\n%s", raw)
		}
	}
	stub, err := Open(c.Dir).Load(testID) // a cache without the keyring
	if err != nil {
		t.Fatalf("Load without Keyring: %v", err)
	}
	if stub.Secrets != SecretsInKeyring || stub.IDToken != "" || stub.RefreshToken != "" ||
		!stub.Expiry.Equal(want.Expiry) || !stub.IDTokenExpiry.Equal(want.IDTokenExpiry) || stub.Key == nil {
		t.Errorf("Load without Keyring = %v, key %v; want the entry without tokens, with expiries and key", stub, stub.Key)
	}
	if len(m.names()) < 2 {
		t.Errorf("keyring items %q; want the tokens split in parts of at most 2048 bytes", m.names())
	}

	got, err := c.Load(testID)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want.Secrets = SecretsInKeyring
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Load (-want +got):\n%s", diff)
	}
	if ids, err := c.List(); err != nil || !slices.Equal(ids, []string{testID}) {
		t.Errorf("List = %q, %v; want [%s]", ids, err, testID)
	}

	if err := c.Delete(testID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if n := m.names(); len(n) != 0 {
		t.Errorf("after Delete the keyring holds %q", n)
	}
	if _, err := c.Load(testID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load after Delete: %v, want ErrNotFound", err)
	}
}

func TestCacheKeyringFallsBackToFile(t *testing.T) {
	var logs bytes.Buffer
	m := newMemStore(0)
	m.fail = errors.New("no Secret Service on the session bus")
	c := Open(t.TempDir())
	c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	c.Keyring = &Keyring{store: m}
	want := testEntry()
	if err := c.Save(testID, want); err != nil {
		t.Fatalf("Save: %v, want the tokens in the file instead", err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || strings.Contains(logs.String(), secret) {
		t.Errorf("logs = %q; want a warning without tokens", logs.String())
	}
	m.fail = nil
	got, err := c.Load(testID)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Load (-want +got):\n%s", diff)
	}
	if m.gets != 0 {
		t.Errorf("Load of a file that holds the tokens read the keyring %d times", m.gets)
	}

	// Once the keyring works again, the next Save moves the tokens there.
	if err := c.Save(testID, want); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(c.Path(testID))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(want.RefreshToken)) {
		t.Error("the file still holds the refresh token after a Save that reached the keyring")
	}
}

func TestCacheKeyringLoadErrors(t *testing.T) {
	m := newMemStore(0)
	c := Open(t.TempDir())
	c.Keyring = &Keyring{store: m}
	if err := c.Save(testID, testEntry()); err != nil {
		t.Fatal(err)
	}

	// The keyring lost the tokens (deleted by hand): the entry is still
	// there, without them, so the caller logs in again.
	for _, n := range m.names() {
		delete(m.items, DefaultKeyringService+"\x00"+n)
	}
	e, err := c.Load(testID)
	if err != nil || e.RefreshToken != "" || e.IDToken != "" || e.Key == nil && e.Provider == nil {
		t.Errorf("Load with the tokens gone from the keyring = %v, %v; want the entry without tokens", e, err)
	}

	// An unreachable keyring is an error, and says so without tokens.
	m.fail = errors.New("dbus: connection refused")
	_, err = c.Load(testID)
	if !errors.Is(err, ErrKeyring) || strings.Contains(fmt.Sprint(err), secret) {
		t.Errorf("Load with the keyring down: %v, want ErrKeyring", err)
	}

	// An unknown storage is an unusable entry.
	m.fail = nil
	if err := os.WriteFile(c.Path(testID), []byte(`{"version":1,"secrets":"tpm"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Load(testID); !errors.Is(err, ErrInvalid) {
		t.Errorf("Load of secrets %q: %v, want ErrInvalid", "tpm", err)
	}
}

func TestKeyringDefaultChunkSize(t *testing.T) {
	// The item limits: macOS's security tool takes 4096 bytes per command
	// with the value base64-encoded; Windows blobs take 2560 bytes.
	for goos, max := range map[string]int{"darwin": 4096 * 3 / 4, "windows": 2560} {
		// Manifest, service and account overhead for macOS; none counted
		// for Windows, whose limit is on the value alone.
		if got := DefaultChunkSize(goos); got > max-300 && goos == "darwin" || got > max {
			t.Errorf("DefaultChunkSize(%s) = %d, too close to the store's limit %d", goos, got, max)
		}
	}
}
