package plugin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"golang.org/x/oauth2"

	"github.com/latchkey/latchkey/cache"
)

// ErrNoEntry reports that the cache holds nothing for the options.
var ErrNoEntry = errors.New("not logged in")

// ErrNoRevocation reports a provider that advertises no revocation endpoint
// (Dex, for one): its tokens stay valid until they expire.
var ErrNoRevocation = errors.New("the provider has no revocation endpoint; its tokens stay valid until they expire")

// Logout describes what Client.Logout did.
type Logout struct {
	// Path is the cache entry removed.
	Path string
	// Revoked lists the token types revoked at the provider.
	Revoked []string
	// RevokeErr is why revocation failed or was skipped; the local entry
	// is removed regardless.
	RevokeErr error
}

// Logout revokes the cached refresh and access tokens at the provider's
// revocation endpoint (RFC 7009 §2) when it advertises one, then deletes the
// cache entry and its lock. A failed revocation does not keep the entry: the
// person asked to be logged out on this machine.
func (c *Client) Logout(ctx context.Context) (*Logout, error) {
	o := &c.Options
	store := c.cache()
	if store == nil {
		return nil, fmt.Errorf("%w: nothing is cached with --token-cache-storage=none", ErrNoEntry)
	}
	id := o.Key().ID()
	lock, err := c.lock(ctx, store, id)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	res := &Logout{Path: store.Path(id)}
	e, err := store.Load(id)
	switch {
	case errors.Is(err, cache.ErrNotFound):
		return nil, fmt.Errorf("%w: no cache entry for %s", ErrNoEntry, o.Describe())
	case err != nil:
		res.RevokeErr = err
	default:
		res.Revoked, res.RevokeErr = c.revokeAll(ctx, e)
	}
	if err := store.Delete(id); err != nil {
		return res, err
	}
	return res, nil
}

// revokeAll revokes e's refresh token, then its access token.
func (c *Client) revokeAll(ctx context.Context, e *cache.Entry) ([]string, error) {
	hc, err := c.httpClient()
	if err != nil {
		return nil, err
	}
	p := c.cachedProvider(e) // Flyte: see flyte.go
	if p == nil || p.RevocationEndpoint == "" {
		if p, err = c.provider(ctx, hc); err != nil {
			return nil, err
		}
	}
	c = c.with(p)
	if p.RevocationEndpoint == "" {
		return nil, ErrNoRevocation
	}
	var done []string
	for _, t := range []struct{ hint, token string }{{"refresh_token", e.RefreshToken}, {"access_token", e.AccessToken}} {
		if t.token == "" {
			continue
		}
		if err := c.revoke(ctx, hc, p.RevocationEndpoint, t.token, t.hint); err != nil {
			return done, err
		}
		done = append(done, t.hint)
	}
	return done, nil
}

// revoke sends one revocation request (RFC 7009 §2.1). The server answers
// 200 for tokens it does not know, too (§2.2).
func (c *Client) revoke(ctx context.Context, hc *http.Client, endpoint, token, hint string) error {
	cfg := &oauth2.Config{ClientID: c.Options.ClientID, ClientSecret: c.Options.ClientSecret}
	resp, _, err := postForm(ctx, hc, cfg, endpoint, url.Values{"token": {token}, "token_type_hint": {hint}})
	if err != nil {
		return fmt.Errorf("revoke %s: %w", hint, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("revoke %s: %s from %s", hint, resp.Status, endpoint)
	}
	return nil
}
