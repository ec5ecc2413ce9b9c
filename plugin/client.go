// Package plugin gets OpenID Connect tokens for kubectl and other tools that
// run a credential command: from a file cache when the token is fresh, with
// the refresh token when it is stale, and through a browser login (the
// authorization code grant with PKCE, RFC 7636, over a loopback redirect,
// RFC 8252) only when there is no usable refresh token.
//
// Parallel invocations for one configuration are serialized by a file lock
// taken only when the cached token cannot be used, so at most one browser
// opens and a rotating refresh token is never replayed.
package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/latchkey/latchkey/cache"
	"github.com/latchkey/latchkey/pkce"
)

// freshMargin is how much life a cached token must have left to be used
// without refreshing.
const freshMargin = 10 * time.Second

// lockSlack is how much longer than a browser login a process waits for
// another process holding the lock.
const lockSlack = 30 * time.Second

// Client gets tokens for one set of Options. Fields other than Options are
// dependencies; nil means the default.
type Client struct {
	Options Options
	// Cache stores the tokens; nil opens Options.CacheDir.
	Cache *cache.Cache
	// HTTPClient talks to the provider; nil builds one from the TLS options.
	HTTPClient *http.Client
	// OpenBrowser opens the authorization URL; nil uses Browser with
	// Options and the process environment.
	OpenBrowser func(ctx context.Context, url string) error
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Getenv reads the environment (BROWSER, DISPLAY); nil means os.Getenv.
	Getenv func(string) string
	// Stderr receives what the person must see (the login URL); nil means
	// os.Stderr.
	Stderr io.Writer
	// Interactive tells that a person is at a terminal (stderr is one):
	// such a caller may start a browser login during the cool-down after a
	// failed one; a background caller (an IDE, k9s, a script) may not.
	Interactive bool
	// Logger receives progress and debug logs; nil discards them.
	Logger *slog.Logger
	// Stdin is where the person's typed input comes from (the pasted code of
	// --grant-type authcode-keyboard); nil means no input is possible, and
	// nothing is ever read. Set it only when a person is at a terminal
	// (KUBERNETES_EXEC_INFO says interactive).
	Stdin io.Reader
	// After waits between the polls of a device login, like time.After; nil
	// means time.After. Tests pair it with Now to poll without sleeping.
	After func(time.Duration) <-chan time.Time
}

// Token is a token latchkey hands out, with what it came from.
type Token struct {
	// Value is the ID token, or the access token with UseAccessToken.
	Value string
	// Expiry is when Value expires; zero if unknown.
	Expiry time.Time
	// Entry is the cache entry holding Value. When Value came from the
	// cache without a refresh, Entry holds only the tokens and their
	// expiries (see [cache.Cache.Peek]).
	Entry *cache.Entry
}

// Token returns a token for c.Options. It reads the cache without a lock and
// without network access; only when the cached token expires within 10
// seconds (or ForceRefresh is set) does it take the key's lock, re-read the
// cache, refresh, and, when the provider refuses the refresh token or there
// is none, log in (in a browser, or with a headless grant). A provider that
// cannot be reached is an error: it never starts a login, and the cache
// keeps its tokens.
func (c *Client) Token(ctx context.Context) (*Token, error) {
	start := c.now()
	t, seen, err := c.cached()
	if t != nil || err != nil {
		return t, err
	}
	o := &c.Options
	store := c.cache()
	id := o.Key().ID()
	if store == nil {
		return c.renew(ctx, nil, nil, id)
	}

	lock, err := c.lock(ctx, store, id)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := lock.Unlock(); err != nil {
			c.logger().Debug("unlock token cache", "err", err)
		}
	}()
	// Another process may have refreshed or logged in meanwhile.
	e, err := c.load(store.Load, id, true)
	if err != nil {
		return nil, err
	}
	if e != nil {
		if t := c.fresh(e); t != nil && (!o.ForceRefresh || !sameTokens(e, seen)) {
			c.logger().Debug("using token another process obtained", "expiry", t.Expiry)
			return t, nil
		}
		if f := e.RefreshFailure; f != nil && f.At.After(start) {
			// The refresh this process waited for could not reach the
			// provider; trying again at once would wait it out again.
			return nil, fmt.Errorf("%w in another latchkey process: %s", ErrRefreshFailed, f.Reason)
		}
		if f := e.LoginFailure; f != nil && f.At.After(start) {
			// A login failed after this process started: it was the
			// login this one waited for. Retrying it at once would only
			// open another browser tab.
			return nil, fmt.Errorf("%w in another latchkey process: %s", ErrLoginFailed, f.Reason)
		}
	}
	return c.renew(ctx, store, e, id)
}

// load reads id's entry with read (the cache's Load, or Peek where the
// tokens are enough): nil if there is none or it is damaged (a login will
// replace it), an error if the OS keyring holding its tokens cannot be
// read (a login would not help and would replace a good refresh token).
func (c *Client) load(read func(id string) (*cache.Entry, error), id string, warn bool) (*cache.Entry, error) {
	e, err := read(id)
	switch {
	case err == nil:
		return e, nil
	case errors.Is(err, cache.ErrNotFound):
	case errors.Is(err, cache.ErrKeyring):
		return nil, fmt.Errorf("read tokens: %w", err)
	default:
		// Said once per call: by the read under the lock.
		l := c.logger().Debug
		if warn {
			l = c.logger().Warn
		}
		l("ignoring unusable token cache entry", "err", err)
	}
	return nil, nil
}

// ErrLoginFailed reports a login that failed or was abandoned.
var ErrLoginFailed = errors.New("login failed")

// ErrRefreshFailed reports a refresh that failed for want of the provider
// (network, timeout, 5xx), seen by a process that waited behind it.
var ErrRefreshFailed = errors.New("refresh failed")

// ErrLoginCooldown reports that a background caller was refused a browser
// login because one failed or was abandoned moments ago.
var ErrLoginCooldown = errors.New("not starting another login yet")

// Cached returns the cached token if it has more than 10 seconds left and
// ForceRefresh is not set, reading one file and nothing else: no lock, no
// network. Callers on a hot path (kubectl runs get-token for every command)
// can answer from it before setting anything else up; Token starts with it.
func (c *Client) Cached() (*Token, bool) {
	t, _, _ := c.cached()
	return t, t != nil
}

// cached returns the fresh cached token, or else the entry seen (if any)
// for Token to compare with what it finds under the lock.
func (c *Client) cached() (*Token, *cache.Entry, error) {
	o := &c.Options
	if err := o.Validate(); err != nil {
		return nil, nil, err
	}
	store := c.cache()
	if store == nil {
		return nil, nil, nil
	}
	e, err := c.load(store.Peek, o.Key().ID(), false)
	if e == nil || err != nil {
		return nil, nil, err
	}
	if t := c.fresh(e); t != nil && !o.ForceRefresh {
		c.logger().Debug("using cached token", "expiry", t.Expiry)
		return t, nil, nil
	}
	return nil, e, nil
}

// lock takes the key's lock, telling the person when it has to wait.
func (c *Client) lock(ctx context.Context, store *cache.Cache, id string) (*cache.Lock, error) {
	l, ok, err := store.TryLock(id)
	if err != nil {
		return nil, err
	}
	if ok {
		return l, nil
	}
	c.logger().Info("waiting for another latchkey process to finish (lock " + store.LockPath(id) + ")")
	ctx, cancel := context.WithTimeout(ctx, c.authTimeout()+lockSlack)
	defer cancel()
	return store.Lock(ctx, id)
}

// renew refreshes e's token or, failing that, logs in; it saves the result
// in store (if any) before returning it.
func (c *Client) renew(ctx context.Context, store *cache.Cache, e *cache.Entry, id string) (*Token, error) {
	hc, err := c.httpClient()
	if err != nil {
		return nil, err
	}
	p := c.cachedProvider(e) // Flyte: see flyte.go
	if e != nil && e.RefreshToken != "" {
		if p == nil {
			if p, err = c.provider(ctx, hc); err != nil {
				return nil, err
			}
		}
		r, err := c.with(p).redeem(ctx, hc, p, e.RefreshToken)
		if errors.Is(err, errNotDelivered) && p == e.Provider {
			// The request never reached a token endpoint, so the
			// refresh token is unspent; the cached metadata may be stale
			// (the endpoint moved): check once against fresh metadata.
			if fresh, derr := c.provider(ctx, hc); derr == nil && fresh.TokenEndpoint != p.TokenEndpoint {
				c.logger().Debug("token endpoint changed, refreshing again", "token_endpoint", fresh.TokenEndpoint)
				p = fresh
				r, err = c.with(p).redeem(ctx, hc, p, e.RefreshToken)
			}
		}
		if err == nil {
			// The old refresh token is spent: keep the new one before
			// anything else can fail.
			e = c.keepRotated(store, id, e, r.RefreshToken)
			var next *cache.Entry
			if next, err = c.with(p).entry(ctx, hc, p, r, "", e); err == nil {
				return c.save(store, id, next)
			}
		}
		if !errors.Is(err, errRefreshRefused) {
			c.recordRefreshFailure(store, id, e, err)
			return nil, err
		}
		c.logger().Info("refresh token no longer accepted, logging in again", "reason", err)
	}
	// Before any request: a caller refused in the cool-down costs the
	// provider nothing and gets the cool-down message even when it is down.
	if e != nil && e.LoginFailure != nil {
		if err := c.coolingDown(e.LoginFailure); err != nil {
			return nil, err
		}
	}
	if p == nil || c.now().Sub(p.FetchedAt) > time.Minute {
		// A login follows; use fresh metadata for it.
		if p, err = c.provider(ctx, hc); err != nil {
			return nil, err
		}
	}
	next, err := c.with(p).login(ctx, hc, p)
	if err != nil {
		c.recordFailure(store, id, e, err)
		return nil, err
	}
	return c.save(store, id, next)
}

// coolingDown refuses a background caller a login within the cool-down
// after a failed one, so that tools polling in the background cannot open a
// browser tab per call.
func (c *Client) coolingDown(f *cache.Failure) error {
	o := &c.Options
	left := f.At.Add(o.LoginCooldown).Sub(c.now())
	// A person is there when stderr is a terminal or the exec info hands
	// over stdin (Client.Stdin).
	if c.Interactive || c.Stdin != nil || o.ForceRefresh || o.LoginCooldown <= 0 || left <= 0 {
		return nil
	}
	return fmt.Errorf("%w: a login failed %s ago (%s); a background caller waits %s more before starting another. "+
		"To log in now, run the command in a terminal or add --force-refresh",
		ErrLoginCooldown, c.now().Sub(f.At).Round(time.Second), f.Reason, left.Round(time.Second))
}

// recordFailure notes a failed login in the cache entry for the processes
// waiting behind it and for the cool-down. The refresh token, if any, is
// dropped: the login was needed because it no longer works.
func (c *Client) recordFailure(store *cache.Cache, id string, e *cache.Entry, err error) {
	if store == nil || errors.Is(err, ErrUsage) || errors.Is(err, pkce.ErrConfig) || errors.Is(err, pkce.ErrListen) || errors.Is(err, ErrNoTerminal) {
		// Not a login the person failed or abandoned: nothing for
		// others to wait out.
		return
	}
	var next cache.Entry
	if e != nil {
		next = *e
	}
	next.RefreshToken = ""
	next.LoginFailure = &cache.Failure{At: c.now(), Reason: strings.Join(strings.Fields(err.Error()), " ")}
	if err := store.Save(id, &next); err != nil {
		c.logger().Debug("record failed login", "err", err)
	}
}

// recordRefreshFailure notes, for the processes waiting behind this one, a
// refresh that failed while the refresh token stays good.
func (c *Client) recordRefreshFailure(store *cache.Cache, id string, e *cache.Entry, err error) {
	if store == nil {
		return
	}
	next := *e
	next.RefreshFailure = &cache.Failure{At: c.now(), Reason: strings.Join(strings.Fields(err.Error()), " ")}
	if err := store.Save(id, &next); err != nil {
		c.logger().Debug("record failed refresh", "err", err)
	}
}

// save stores e and returns the token it holds. A failed save is reported
// but the token is still returned: the person logged in successfully.
func (c *Client) save(store *cache.Cache, id string, e *cache.Entry) (*Token, error) {
	t := c.fresh(e)
	if t == nil {
		return nil, fmt.Errorf("provider returned a token that is already expired")
	}
	if store != nil {
		k := c.Options.Key()
		e.Key = &k
		if err := store.Save(id, e); err != nil {
			c.logger().Warn("could not save the token; the next call will have to log in again", "err", err)
		}
	}
	return t, nil
}

// fresh returns e's output token if it has more than freshMargin left.
func (c *Client) fresh(e *cache.Entry) *Token {
	v, exp := e.IDToken, e.IDTokenExpiry
	if c.Options.UseAccessToken {
		v, exp = e.AccessToken, e.Expiry
	}
	if v == "" || exp.IsZero() || exp.Sub(c.now()) <= freshMargin {
		return nil
	}
	return &Token{Value: v, Expiry: exp, Entry: e}
}

func sameTokens(a, b *cache.Entry) bool {
	return a != nil && b != nil && a.IDToken == b.IDToken && a.AccessToken == b.AccessToken && a.RefreshToken == b.RefreshToken
}

// oauth2Config returns the OAuth client configuration for provider p.
func (c *Client) oauth2Config(p *cache.Provider) *oauth2.Config {
	o := &c.Options
	style := oauth2.AuthStyleInHeader
	if o.ClientSecret == "" {
		style = oauth2.AuthStyleInParams
	}
	return &oauth2.Config{
		ClientID:     o.ClientID,
		ClientSecret: o.ClientSecret,
		Endpoint: oauth2.Endpoint{
			AuthURL:   p.AuthorizationEndpoint,
			TokenURL:  p.TokenEndpoint,
			AuthStyle: style,
		},
		Scopes: o.Scopes(),
	}
}

// authCodeLogin runs the browser login (authorization code grant with PKCE
// over a loopback redirect) and returns the new entry.
func (c *Client) authCodeLogin(ctx context.Context, hc *http.Client, p *cache.Provider) (*cache.Entry, error) {
	o := &c.Options
	ctx, cancel := context.WithTimeout(ctx, c.authTimeout())
	defer cancel()
	l := &pkce.Login{
		Config:          *c.oauth2Config(p),
		Issuer:          p.Issuer,
		RequireIss:      p.IssParameterSupported,
		RedirectURL:     o.RedirectURL,
		ListenAddresses: o.ListenAddresses,
		AuthParams:      o.AuthParams,
		// Flyte's authorization server wants them (flyte.go).
		ResendAuthParams: o.resendAuthParams(),
		OpenBrowser:      c.openBrowser,
		HTTPClient:       hc,
		Logger:           c.logger(),
	}
	res, err := l.Run(ctx)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("log in: no answer from the browser within %s: %w", c.authTimeout(), err)
		}
		return nil, fmt.Errorf("log in: %w", err)
	}
	resp := tokenResponse{
		AccessToken:  res.Token.AccessToken,
		TokenType:    res.Token.TokenType,
		RefreshToken: res.Token.RefreshToken,
	}
	// x/oauth2 computes Expiry with the real clock; use ours.
	if d, ok := lifetime(res.Token.ExpiresIn); ok {
		resp.Expiry = c.now().Add(d)
	}
	if s, ok := res.Token.Extra("id_token").(string); ok {
		resp.IDToken = s
	}
	return c.entry(ctx, hc, p, &resp, res.Nonce, nil)
}

// entry checks a token response and turns it into a cache entry. nonce is
// the nonce sent with the login ("" after a refresh); prev is the entry
// refreshed (nil after a login).
func (c *Client) entry(ctx context.Context, hc *http.Client, p *cache.Provider, r *tokenResponse, nonce string, prev *cache.Entry) (*cache.Entry, error) {
	o := &c.Options
	e := &cache.Entry{
		AccessToken:  r.AccessToken,
		TokenType:    r.TokenType,
		Expiry:       r.Expiry,
		RefreshToken: r.RefreshToken,
		Provider:     p,
	}
	if e.RefreshToken == "" && prev != nil {
		// RFC 6749 §6: without a new refresh token the old one stays valid.
		e.RefreshToken = prev.RefreshToken
	}
	if e.Expiry.IsZero() {
		e.Expiry = c.now().Add(defaultAccessTokenLifetime)
	}
	switch {
	case r.IDToken != "":
		idt, err := c.verify(ctx, hc, p, r.IDToken, nonce)
		if err != nil {
			return nil, err
		}
		if prev != nil && prev.IDToken != "" {
			// OIDC Core §12.2: a refreshed ID token is about the same
			// person.
			if old, err := ParseClaims(prev.IDToken); err == nil && old.Subject != idt.Subject {
				return nil, fmt.Errorf("verify ID token: the refreshed token is for subject %q, not %q", idt.Subject, old.Subject)
			}
		}
		e.IDToken, e.IDTokenExpiry = r.IDToken, idt.Expiry
	case prev != nil && o.UseAccessToken:
		// OIDC Core §12.2: a refresh need not return an ID token.
		e.IDToken, e.IDTokenExpiry = prev.IDToken, prev.IDTokenExpiry
	case prev != nil:
		return nil, fmt.Errorf("%w: the refresh response has no ID token", errRefreshRefused)
	case !o.UseAccessToken:
		return nil, errors.New("the token response has no ID token (is the openid scope allowed for this client?)")
	}
	if o.UseAccessToken && e.AccessToken == "" {
		return nil, errors.New("the token response has no access token")
	}
	return e, nil
}

// defaultAccessTokenLifetime is assumed when a token response has no
// usable expires_in (RFC 6749 §5.1 makes it optional).
const defaultAccessTokenLifetime = 5 * time.Minute

// verify checks an ID token's signature, issuer, audience, expiry and, after
// a login, its nonce (OpenID Connect Core §3.1.3.7).
func (c *Client) verify(ctx context.Context, hc *http.Client, p *cache.Provider, raw, nonce string) (*oidc.IDToken, error) {
	ks := &keySet{hc: hc, p: p, now: c.now()}
	algs := make([]string, len(signingAlgs))
	for i, a := range signingAlgs {
		algs[i] = string(a)
	}
	v := oidc.NewVerifier(p.Issuer, ks, &oidc.Config{
		ClientID:             c.Options.ClientID,
		SupportedSigningAlgs: algs,
		Now:                  c.now,
	})
	idt, err := v.Verify(oidc.ClientContext(ctx, hc), raw)
	if err != nil {
		return nil, fmt.Errorf("verify ID token: %w", err)
	}
	if nonce != "" && idt.Nonce != nonce {
		return nil, errors.New("verify ID token: nonce does not match the login's (possible replay)")
	}
	var claims struct {
		AZP string `json:"azp"`
	}
	if err := idt.Claims(&claims); err != nil {
		return nil, fmt.Errorf("verify ID token: %w", err)
	}
	// §3.1.3.7 items 4-5: with several audiences azp is required, and
	// when present it must be this client.
	if (len(idt.Audience) > 1 || claims.AZP != "") && claims.AZP != c.Options.ClientID {
		return nil, fmt.Errorf("verify ID token: azp %q is not the client id", claims.AZP)
	}
	return idt, nil
}

// errRefreshRefused marks a refresh the provider answered with a refusal of
// the refresh token itself, which only a new login can cure.
var errRefreshRefused = errors.New("refresh token refused")

// tokenResponse is a successful token endpoint response (RFC 6749 §5.1,
// OpenID Connect Core §3.1.3.3).
type tokenResponse struct {
	AccessToken  string          `json:"access_token"`
	TokenType    string          `json:"token_type"`
	RefreshToken string          `json:"refresh_token"`
	ExpiresIn    json.RawMessage `json:"expires_in"`
	IDToken      string          `json:"id_token"`
	Expiry       time.Time       `json:"-"`
}

// redeem sends a refresh request (RFC 6749 §6), resending the scopes so
// providers that narrow them on refresh (Okta) keep the groups claim. A
// refusal of the refresh token itself (400 or 401 with invalid_grant, or
// Dex's invalid_request for a reused one) wraps errRefreshRefused; any other
// failure (network, 5xx) is returned as is, since a new login would not
// cure it.
func (c *Client) redeem(ctx context.Context, hc *http.Client, p *cache.Provider, refreshToken string) (*tokenResponse, error) {
	cfg := c.oauth2Config(p)
	form := url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {refreshToken},
		"scope":         {strings.Join(cfg.Scopes, " ")},
	}
	r, err := postToken(ctx, hc, cfg, form, c.now())
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && (re.Response.StatusCode == http.StatusBadRequest || re.Response.StatusCode == http.StatusUnauthorized) &&
			slices.Contains([]string{"invalid_grant", "invalid_request"}, re.ErrorCode) {
			return nil, fmt.Errorf("%w: %w", errRefreshRefused, err)
		}
		return nil, fmt.Errorf("refresh token: %w", err)
	}
	c.logger().Debug("refreshed token", "rotated", r.RefreshToken != "" && r.RefreshToken != refreshToken)
	return r, nil
}

// keepRotated saves a rotated refresh token at once (RFC 9700 §4.14.2: the
// old one is spent, and replaying it may revoke the whole family). If that
// save fails the entry is deleted, so that the spent token is never sent
// again; the caller goes on with the new token in memory.
func (c *Client) keepRotated(store *cache.Cache, id string, e *cache.Entry, refreshToken string) *cache.Entry {
	if refreshToken == "" || refreshToken == e.RefreshToken {
		return e
	}
	next := *e
	next.RefreshToken = refreshToken
	if store != nil {
		if err := store.Save(id, &next); err != nil {
			c.logger().Warn("could not save the rotated refresh token; forgetting the spent one", "err", err)
			if err := store.Forget(id); err != nil {
				c.logger().Warn("could not delete the token cache entry", "err", err)
			}
		}
	}
	return &next
}

func (c *Client) cache() *cache.Cache {
	if c.Options.Storage == "none" {
		return nil
	}
	if c.Cache != nil {
		return c.Cache
	}
	ch := cache.Open(c.Options.CacheDir)
	ch.Logger = c.logger()
	if c.Options.Storage == "keyring" {
		ch.Keyring = &cache.Keyring{}
	}
	return ch
}

func (c *Client) httpClient() (*http.Client, error) {
	if c.HTTPClient != nil {
		return c.HTTPClient, nil
	}
	return newHTTPClient(&c.Options)
}

func (c *Client) openBrowser(ctx context.Context, url string) error {
	if c.OpenBrowser != nil {
		return c.OpenBrowser(ctx, url)
	}
	b := &Browser{
		Command: c.Options.BrowserCommand,
		Skip:    c.Options.SkipOpenBrowser,
		Stderr:  c.Stderr,
		Getenv:  c.Getenv,
		Logger:  c.logger(),
	}
	return b.Open(ctx, url)
}

func (c *Client) authTimeout() time.Duration {
	if c.Options.AuthTimeout > 0 {
		return c.Options.AuthTimeout
	}
	return DefaultAuthTimeout
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Client) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}
