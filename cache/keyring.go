package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/zalando/go-keyring"
)

// SecretsInKeyring is the [Entry.Secrets] value of an entry whose tokens
// [Cache.Save] stored in the OS keyring.
const SecretsInKeyring = "keyring"

// DefaultKeyringService is the service name of latchkey's keyring items when
// [Keyring.Service] is empty.
const DefaultKeyringService = "latchkey"

// DefaultKeyringTimeout bounds one keyring operation when [Keyring.Timeout] is
// zero. A locked keyring may ask the person for its password, so it is long.
const DefaultKeyringTimeout = 2 * time.Minute

// maxChunks bounds how many items one secret may span (and how far Set looks
// for parts left over from a longer secret): 64 parts of 2 KiB hold 128 KiB.
const maxChunks = 64

// chunkMagic starts the first item of a secret stored in several parts; a
// secret that fits in one item is stored as it is (an entry's secrets are
// JSON, so they start with '{').
const chunkMagic = "latchkey-chunks/1 "

// ErrKeyring wraps the failures of the OS keyring: none reachable (no Secret
// Service on the session bus), locked and not unlocked, access refused, or
// too slow to answer.
var ErrKeyring = errors.New("OS keyring")

// Keyring keeps secrets in the operating system's credential store: the macOS
// Keychain, the Windows Credential Manager, or a Secret Service (GNOME
// Keyring, KeePassXC, KWallet) on the D-Bus session bus on Linux and the BSDs,
// through github.com/zalando/go-keyring. Each secret is a generic password
// item of service [Keyring.Service] whose account is the secret's name.
//
// The stores limit an item's size: the macOS security tool takes about 4 KB
// per command (base64-encoded), the Windows Credential Manager 2560 bytes per
// credential blob. A secret longer than [Keyring.ChunkSize] is therefore split
// across several items: the first, named after the secret, holds a manifest
// (the number of parts and the SHA-256 of the whole) and the first part;
// parts 2 to n are named "<name>#1" to "<name>#<n-1>". Set writes the later
// parts before the first item and Get checks the digest, so a reader that
// runs during a Set sees the old secret or the new one, or retries.
//
// The zero value is ready to use. A Keyring is safe for concurrent use.
type Keyring struct {
	// Service is the service name of the items; "" means
	// DefaultKeyringService.
	Service string
	// ChunkSize is the largest item value, in bytes, written by Set; 0
	// means DefaultChunkSize for this platform.
	ChunkSize int
	// Timeout bounds each operation on the store; 0 means
	// DefaultKeyringTimeout. On Linux an operation on a locked keyring waits
	// for the person to type its password.
	Timeout time.Duration

	// store is the credential store; nil means the OS keyring. Tests of
	// the chunking set an in-memory store with the platforms' limits.
	store secretStore
}

// DefaultChunkSize returns the item size Keyring uses on goos when
// [Keyring.ChunkSize] is zero: 2048 bytes on macOS and Windows (whose stores
// refuse a few kilobytes, see [Keyring]) and 1 MiB elsewhere, where Secret
// Service has no practical limit.
func DefaultChunkSize(goos string) int {
	switch goos {
	case "darwin", "ios", "windows":
		return 2048
	}
	return 1 << 20
}

// secretStore is a flat store of small string secrets: the OS keyring's
// interface as go-keyring presents it.
type secretStore interface {
	Get(service, user string) (string, error)
	Set(service, user, secret string) error
	Delete(service, user string) error
}

// osKeyring is the OS keyring through go-keyring.
type osKeyring struct{}

func (osKeyring) Get(service, user string) (string, error) { return keyring.Get(service, user) }
func (osKeyring) Set(service, user, secret string) error   { return keyring.Set(service, user, secret) }
func (osKeyring) Delete(service, user string) error        { return keyring.Delete(service, user) }

// errStoreNotFound is what a secretStore returns for a missing item.
var errStoreNotFound = keyring.ErrNotFound

// Get returns the secret called name. A missing secret is an error wrapping
// [ErrNotFound]; a store that fails wraps [ErrKeyring].
func (k *Keyring) Get(name string) ([]byte, error) {
	var err error
	// A Set running meanwhile can change the parts between the reads;
	// the digest tells, and the next attempt sees the finished secret.
	for range 3 {
		var data []byte
		if data, err = k.get(name); !errors.Is(err, errTorn) {
			return data, err
		}
	}
	return nil, err
}

// errTorn reports parts that do not match their manifest.
var errTorn = errors.New("parts do not match the manifest")

func (k *Keyring) get(name string) ([]byte, error) {
	head, err := k.call("read", name, func(s secretStore) (string, error) { return s.Get(k.service(), name) })
	if err != nil {
		return nil, err
	}
	rest, ok := strings.CutPrefix(head, chunkMagic)
	if !ok {
		return []byte(head), nil
	}
	// Manifest: "<n> <sha256 hex>\n" then the first part.
	line, first, ok := strings.Cut(rest, "\n")
	ns, sum, ok2 := strings.Cut(line, " ")
	n, err := strconv.Atoi(ns)
	if !ok || !ok2 || err != nil || n < 1 || n > maxChunks {
		return nil, fmt.Errorf("%w: read %s: malformed manifest", ErrKeyring, name)
	}
	var b bytes.Buffer
	b.WriteString(first)
	for i := 1; i < n; i++ {
		part, err := k.call("read", partName(name, i), func(s secretStore) (string, error) { return s.Get(k.service(), partName(name, i)) })
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w: read %s: part %d of %d: %w", ErrKeyring, name, i+1, n, errTorn)
		}
		if err != nil {
			return nil, err
		}
		b.WriteString(part)
	}
	if got := sha256.Sum256(b.Bytes()); hex.EncodeToString(got[:]) != sum {
		return nil, fmt.Errorf("%w: read %s: %w", ErrKeyring, name, errTorn)
	}
	return b.Bytes(), nil
}

// Set stores data as the secret called name, replacing any previous one, in
// as many items as [Keyring.ChunkSize] requires. data must be valid UTF-8.
func (k *Keyring) Set(name string, data []byte) error {
	size := k.ChunkSize
	if size <= 0 {
		size = DefaultChunkSize(runtime.GOOS)
	}
	var parts []string
	if len(data) <= size && !bytes.HasPrefix(data, []byte(chunkMagic)) {
		parts = []string{string(data)}
	} else {
		sum := sha256.Sum256(data)
		// The first item also holds the manifest: at most 64 bytes.
		header := fmt.Sprintf("%s%d %s\n", chunkMagic, 0, hex.EncodeToString(sum[:]))
		partSize := size - len(header) - 2
		if partSize < 256 {
			return fmt.Errorf("%w: write %s: ChunkSize %d is too small", ErrKeyring, name, size)
		}
		parts = splitUTF8(string(data), partSize)
		if len(parts) > maxChunks {
			return fmt.Errorf("%w: write %s: %d bytes need more than %d items", ErrKeyring, name, len(data), maxChunks)
		}
		parts[0] = fmt.Sprintf("%s%d %s\n", chunkMagic, len(parts), hex.EncodeToString(sum[:])) + parts[0]
	}
	for i := len(parts) - 1; i >= 0; i-- {
		item := name
		if i > 0 {
			item = partName(name, i)
		}
		if _, err := k.call("write", item, func(s secretStore) (string, error) { return "", s.Set(k.service(), item, parts[i]) }); err != nil {
			return err
		}
	}
	// Parts left over from a longer secret.
	k.deleteParts(name, len(parts))
	return nil
}

// Delete removes the secret called name and its parts. A missing secret is
// not an error.
func (k *Keyring) Delete(name string) error {
	_, err := k.call("delete", name, func(s secretStore) (string, error) { return "", s.Delete(k.service(), name) })
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	k.deleteParts(name, 1)
	return nil
}

// deleteParts removes the parts "<name>#<from>" onwards, up to the first one
// missing.
func (k *Keyring) deleteParts(name string, from int) {
	for i := max(from, 1); i < maxChunks; i++ {
		item := partName(name, i)
		if _, err := k.call("delete", item, func(s secretStore) (string, error) { return "", s.Delete(k.service(), item) }); err != nil {
			return
		}
	}
}

// call runs op on the store within the timeout, mapping the store's
// not-found error to ErrNotFound and its other errors to ErrKeyring. An
// operation that times out is left running: the store's client cannot be
// interrupted.
func (k *Keyring) call(what, item string, op func(secretStore) (string, error)) (string, error) {
	s := k.store
	if s == nil {
		s = osKeyring{}
	}
	timeout := k.Timeout
	if timeout <= 0 {
		timeout = DefaultKeyringTimeout
	}
	type result struct {
		v   string
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := op(s)
		done <- result{v, err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-done:
		switch {
		case r.err == nil:
			return r.v, nil
		case errors.Is(r.err, errStoreNotFound):
			return "", fmt.Errorf("%w: %s %s: %w", ErrKeyring, what, item, ErrNotFound)
		case errors.Is(r.err, keyring.ErrSetDataTooBig):
			return "", fmt.Errorf("%w: %s %s: the item is larger than the store accepts (set a smaller chunk size)", ErrKeyring, what, item)
		}
		return "", fmt.Errorf("%w: %s %s: %w", ErrKeyring, what, item, r.err)
	case <-t.C:
		return "", fmt.Errorf("%w: %s %s: no answer within %s (is the keyring locked?)", ErrKeyring, what, item, timeout)
	}
}

func (k *Keyring) service() string {
	if k.Service != "" {
		return k.Service
	}
	return DefaultKeyringService
}

// partName is the item name of part i (from 1) of the secret name.
func partName(name string, i int) string {
	return name + "#" + strconv.Itoa(i)
}

// splitUTF8 splits s into pieces of at most n bytes without cutting a UTF-8
// sequence (n must be at least 4).
func splitUTF8(s string, n int) []string {
	var out []string
	for len(s) > n {
		i := n
		for i > 0 && !utf8Start(s[i]) {
			i--
		}
		out = append(out, s[:i])
		s = s[i:]
	}
	return append(out, s)
}

// utf8Start reports whether b can start a UTF-8 sequence.
func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// secrets is the part of an [Entry] that a Keyring holds. The expiries are
// kept with their tokens, so that a reader that races a writer never pairs a
// new token with an old expiry or the reverse.
type secrets struct {
	IDToken       string    `json:"id_token,omitempty"`
	IDTokenExpiry time.Time `json:"id_token_expiry,omitzero"`
	AccessToken   string    `json:"access_token,omitempty"`
	TokenType     string    `json:"token_type,omitempty"`
	Expiry        time.Time `json:"expiry,omitzero"`
	RefreshToken  string    `json:"refresh_token,omitempty"`
}

// secretsOf returns e's tokens and their expiries.
func secretsOf(e *Entry) secrets {
	return secrets{e.IDToken, e.IDTokenExpiry, e.AccessToken, e.TokenType, e.Expiry, e.RefreshToken}
}

// fill sets e's tokens and their expiries to s's.
func (s *secrets) fill(e *Entry) {
	e.IDToken, e.IDTokenExpiry, e.AccessToken, e.TokenType, e.Expiry, e.RefreshToken =
		s.IDToken, s.IDTokenExpiry, s.AccessToken, s.TokenType, s.Expiry, s.RefreshToken
}

// saveSecrets stores e's tokens in c.Keyring under the name path and returns
// the entry to write to the file: e without its tokens, marked
// [SecretsInKeyring]. When the keyring cannot take them it logs a warning
// and returns e itself, so that the tokens are written to the file and the
// login that obtained them is not lost.
func (c *Cache) saveSecrets(path string, e *Entry) *Entry {
	data, err := json.Marshal(secretsOf(e))
	if err == nil {
		err = c.Keyring.Set(path, data)
	}
	if err != nil {
		// A Load of the file written now does not read the keyring, so
		// whatever an earlier Save left there is not used; the next Save
		// that reaches the keyring replaces it.
		c.logger().Warn("could not store the tokens in the OS keyring; storing them in the token cache file instead", "path", path, "err", err)
		out := *e
		out.Secrets = ""
		return &out
	}
	out := *e
	out.IDToken, out.AccessToken, out.TokenType, out.RefreshToken = "", "", "", ""
	out.Secrets = SecretsInKeyring
	return &out
}

// loadSecrets fills e, read from the file at path, with its tokens from the
// keyring. Without c.Keyring, or when the keyring has lost them, e is
// returned without tokens: the caller logs in again.
func (c *Cache) loadSecrets(path string, e *Entry) (*Entry, error) {
	if e.Secrets != SecretsInKeyring {
		return nil, invalid(path, fmt.Sprintf("unknown secrets storage %q", e.Secrets))
	}
	if c.Keyring == nil {
		c.logger().Debug("the tokens of this entry are in the OS keyring, which this cache does not use", "path", path)
		return e, nil
	}
	data, err := c.Keyring.Get(path)
	switch {
	case errors.Is(err, ErrNotFound):
		c.logger().Warn("the OS keyring has lost the tokens of this entry", "path", path)
		return e, nil
	case err != nil:
		return nil, fmt.Errorf("load token cache %s: %w", path, err)
	}
	var s secrets
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("load token cache %s: %w: keyring item: %s", path, ErrInvalid, jsonReason(err))
	}
	s.fill(e)
	return e, nil
}
