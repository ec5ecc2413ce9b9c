package plugin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/latchkey/latchkey/cache"
)

// ErrNoEntry reports that the cache holds nothing for the options.
var ErrNoEntry = errors.New("not logged in")

// ErrNoRevocation reports a provider that advertises no revocation endpoint
// (Dex, for one): its tokens stay valid until they expire.
var ErrNoRevocation = errors.New("the provider has no revocation endpoint; its tokens stay valid until they expire")

// Logout describes what a logout did.
type Logout struct {
	// Login names the login, for messages (Options.Describe).
	Login string
	// Path is the cache entry removed.
	Path string
	// Revoked lists the token types revoked at the provider.
	Revoked []string
	// Unrevocable lists the token types the provider does not revoke
	// (unsupported_token_type, RFC 7009 §2.2.1: JWT access tokens, say).
	// They stay valid until they expire; it is no failure.
	Unrevocable []string
	// RevokeErr is why revocation failed or was skipped; the local entry
	// is removed regardless.
	RevokeErr error
}

// Logout revokes the cached refresh and access tokens at the provider's
// revocation endpoint (RFC 7009 §2) when it advertises one, then deletes the
// cache entry and its lock. A failed revocation does not keep the entry: the
// person asked to be logged out on this machine. Revocation uses the
// metadata stored with the entry, whatever its age, and goes only to the
// issuer that minted the tokens.
func (c *Client) Logout(ctx context.Context) (*Logout, error) {
	k, err := c.call()
	if err != nil {
		return nil, err
	}
	return k.logout(ctx)
}

// logout is Logout's work, for the entry k.id.
func (k *call) logout(ctx context.Context) (*Logout, error) {
	if k.store == nil {
		return nil, fmt.Errorf("%w: nothing is cached with --token-cache-storage=none", ErrNoEntry)
	}
	lock, err := k.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	res := &Logout{Login: k.src.describe(), Path: k.store.Path(k.id)}
	e, err := k.store.Load(k.id)
	switch {
	case errors.Is(err, cache.ErrNotFound):
		return nil, fmt.Errorf("%w: no cache entry for %s", ErrNoEntry, res.Login)
	case err != nil:
		res.RevokeErr = err
	default:
		res.RevokeErr = k.revoke(ctx, e, res)
	}
	if err := k.store.Delete(k.id); err != nil {
		return res, err
	}
	return res, nil
}

// LogoutAll logs out of every login in the cache directory of c.Options
// (see Logout), each with the client and metadata stored with it; an entry
// that cannot be read is removed without revocation. It stops at the first
// entry it cannot remove.
func (c *Client) LogoutAll(ctx context.Context) ([]Logout, error) {
	store := cache.Open(c.Options.CacheDir)
	ids, err := store.List()
	if err != nil {
		return nil, err
	}
	var out []Logout
	for _, id := range ids {
		e, err := store.Load(id)
		if err != nil || e.Key == nil {
			if err == nil {
				err = errors.New("the entry does not say which login it is")
			}
			if err := store.Delete(id); err != nil {
				return out, err
			}
			out = append(out, Logout{Path: store.Path(id), RevokeErr: fmt.Errorf("unreadable entry, nothing revoked: %w", err)})
			continue
		}
		one := *c
		one.Options.FromKey(*e.Key)
		one.Options.Storage = ""
		if e.Secrets == cache.SecretsInKeyring {
			one.Options.Storage = "keyring"
		}
		if c.Options.Validate() != nil || c.Options.Key().ID() != id {
			// The secret and headers given are another login's: not sent
			// to this one's provider.
			one.Options.ClientSecret, one.Options.ClientSecretFile, one.Options.ClientSecretEnv = "", "", ""
			one.Options.RequestHeaders = nil
		}
		k, err := one.call()
		if err != nil {
			return out, err
		}
		// The entry's own id: entries written before the token kind left
		// the key have another id than their key gives now.
		k.id = id
		res, err := k.logout(ctx)
		switch {
		case errors.Is(err, ErrNoEntry):
			continue
		case err != nil:
			return out, err
		}
		out = append(out, *res)
	}
	return out, nil
}

// revoke revokes e's refresh token, then its access token, with the
// metadata stored with e (discovered again only if there are none), noting
// in res what it revoked.
func (k *call) revoke(ctx context.Context, e *cache.Entry, res *Logout) error {
	hc, err := k.httpClient()
	if err != nil {
		return err
	}
	l, err := k.resolve(ctx, hc, k.storedProvider(e, true))
	if err != nil {
		return err
	}
	p := l.provider
	if minted := mintedBy(e); minted != "" && minted != p.Issuer {
		return fmt.Errorf("the provider's metadata now names issuer %q, not %q which minted the tokens; they were not sent there", p.Issuer, minted)
	}
	if p.RevocationEndpoint == "" {
		return ErrNoRevocation
	}
	tc := l.client(hc, k.now)
	for _, t := range []struct{ hint, token string }{{"refresh_token", e.RefreshToken}, {"access_token", e.AccessToken}} {
		if t.token == "" {
			continue
		}
		resp, body, err := tc.post(ctx, p.RevocationEndpoint, url.Values{"token": {t.token}, "token_type_hint": {t.hint}})
		if err != nil {
			return fmt.Errorf("revoke %s: %w", t.hint, err)
		}
		// RFC 7009 §2.2: 200, also for tokens the server does not know.
		if resp.StatusCode == http.StatusOK {
			res.Revoked = append(res.Revoked, t.hint)
			continue
		}
		re := errorResponse(resp, body)
		switch {
		case re == nil:
			return fmt.Errorf("revoke %s: %s from %s", t.hint, resp.Status, p.RevocationEndpoint)
		case re.ErrorCode == "unsupported_token_type":
			res.Unrevocable = append(res.Unrevocable, t.hint)
		default:
			return fmt.Errorf("revoke %s: %s from %s: %s", t.hint, resp.Status, p.RevocationEndpoint, re.ErrorCode)
		}
	}
	return nil
}

// Clean removes every cached login in the cache directory of c.Options,
// without revoking anything (LogoutAll revokes): the entries, their lock
// files, leftover temporary files and, for entries kept in the OS keyring,
// their keyring items. Other files in the directory are left alone, and so
// is a login that a latchkey process holds the lock of. It returns the
// paths of the entries removed.
func (c *Client) Clean() ([]string, error) {
	store := cache.Open(c.Options.CacheDir)
	ids, err := store.List()
	if err != nil {
		return nil, err
	}
	// Lock files whose entry is gone are cleaned too.
	locks, _ := filepath.Glob(filepath.Join(store.Dir, "*.lock"))
	for _, l := range locks {
		if id := strings.TrimSuffix(filepath.Base(l), ".lock"); !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	var removed []string
	for _, id := range ids {
		lock, ok, err := store.TryLock(id)
		switch {
		case errors.Is(err, cache.ErrInvalidID):
			continue
		case err != nil:
			return removed, err
		case !ok:
			// A latchkey process renews this login now: its lock stays.
			continue
		}
		s := store
		if e, err := store.Load(id); err == nil && e.Secrets == cache.SecretsInKeyring {
			withKeyring := *store
			withKeyring.Keyring = &cache.Keyring{}
			s = &withKeyring
		}
		if _, err := os.Lstat(store.Path(id)); err == nil {
			removed = append(removed, store.Path(id))
		}
		err = s.Delete(id)
		lock.Unlock()
		if err != nil {
			return removed, err
		}
	}
	return removed, nil
}
