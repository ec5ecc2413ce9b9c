package cache

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// osKeyringOrSkip returns a Keyring on the real OS keyring with a service
// name of its own, or skips the test unless LATCHKEY_KEYRING_TEST=1 says
// that one is reachable (hack/keyring-test.sh starts one on Linux).
func osKeyringOrSkip(t *testing.T) *Keyring {
	t.Helper()
	if os.Getenv("LATCHKEY_KEYRING_TEST") != "1" {
		t.Skip("set LATCHKEY_KEYRING_TEST=1 with a reachable OS keyring (hack/keyring-test.sh)")
	}
	return &Keyring{Service: "latchkey-test-" + rand.Text()}
}

func TestKeyringOS(t *testing.T) {
	k := osKeyringOrSkip(t)
	for _, size := range []int{0, 2048} { // the platform default, and the macOS/Windows one
		k.ChunkSize = size
		long := bytes.Repeat([]byte(`{"id_token":"eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9"}`), 200) // 10 KB
		for _, data := range [][]byte{long, []byte(`{"a":"short"}`), long} {
			if err := k.Set("entry", data); err != nil {
				t.Fatalf("ChunkSize %d: Set %d bytes: %v", size, len(data), err)
			}
			got, err := k.Get("entry")
			if err != nil {
				t.Fatalf("ChunkSize %d: Get: %v", size, err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("ChunkSize %d: Get returned %d bytes, want the %d set", size, len(got), len(data))
			}
		}
		if err := k.Delete("entry"); err != nil {
			t.Fatalf("ChunkSize %d: Delete: %v", size, err)
		}
		if _, err := k.Get("entry"); !errors.Is(err, ErrNotFound) {
			t.Errorf("ChunkSize %d: Get after Delete: %v, want ErrNotFound", size, err)
		}
		if _, err := k.Get("entry#1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("ChunkSize %d: a part survived Delete: %v", size, err)
		}
	}
}

func TestKeyringOSCache(t *testing.T) {
	k := osKeyringOrSkip(t)
	k.ChunkSize = 2048
	c := Open(t.TempDir())
	c.Keyring = k
	want := testEntry()
	want.IDToken = fakeJWT(4000)
	if err := c.Save(testID, want); err != nil {
		t.Fatalf("Save: %v", err)
	}
	t.Cleanup(func() { k.Delete(c.Path(testID)) })
	raw, err := os.ReadFile(c.Path(testID))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(secret)) {
		t.Fatalf("the entry file holds tokens; the keyring was not used:\n%s", raw)
	}
	got, err := c.Load(testID)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want.Secrets = SecretsInKeyring
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Load (-want +got):\n%s", diff)
	}
	if err := c.Delete(testID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := k.Get(c.Path(testID)); !errors.Is(err, ErrNotFound) {
		t.Errorf("keyring item after Delete: %v, want ErrNotFound", err)
	}
}
