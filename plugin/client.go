// Package plugin gets OpenID Connect tokens for kubectl and other tools that
// run a credential command: from a file cache when the token is fresh, with
// the refresh token when it is stale, and through a browser login (the
// authorization code grant with PKCE, RFC 7636, over a loopback redirect,
// RFC 8252) only when there is no usable refresh token.
//
// Parallel invocations for one configuration are serialized by a file lock
// taken only when the cached token cannot be used, so at most one browser
// opens and a rotating refresh token is never replayed.
//
// The layers, from the caller down: [Client] (the public calls and their
// dependencies); a call (one Token or Logout: the cache, the lock and the
// decision between cached token, refresh and login); the login resolved
// once per call from the options and the provider's metadata (login.go,
// flyte.go); the logins that need the person (grant.go, keyboard.go,
// device.go); one client for the token endpoint (endpoint.go); and package
// pkce for the authorization request and its loopback redirect.
package plugin

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/latchkey/latchkey/cache"
)

// freshMargin is how much life a cached token must have left to be used
// without refreshing.
const freshMargin = 10 * time.Second

// lockSlack is how much longer than a browser login a process waits for
// another process holding the lock.
const lockSlack = 30 * time.Second

// refreshGrace is how long a refresh already sent may still take after a
// signal or the caller's exit (see call.refresh).
const refreshGrace = 5 * time.Second

// Client gets tokens for one set of Options. Fields other than Options are
// dependencies; nil means the default.
type Client struct {
	Options Options
	// Cache stores the tokens; nil opens Options.CacheDir.
	Cache *cache.Cache
	// HTTPClient talks to the provider; nil builds one from the TLS options.
	HTTPClient *http.Client
	// OpenBrowser opens a login URL: the browser login's link on the
	// loopback server (see pkce.Login.OpenBrowser), or a device
	// verification URI; nil uses Browser with
	// Options and the process environment.
	OpenBrowser func(ctx context.Context, url string) error
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Getenv reads the environment (BROWSER, DISPLAY); nil means os.Getenv.
	Getenv func(string) string
	// Stderr receives what the person must see (the login URL); nil means
	// os.Stderr.
	Stderr io.Writer
	// StderrUnseen tells that what latchkey writes to Stderr reaches nobody:
	// the caller swallows it (flytectl does) and there is no terminal to
	// write to instead. A login that needs the person to read a URL or a
	// code then fails at once, instead of waiting
	// --authentication-timeout-sec for nobody.
	StderrUnseen bool
	// Attended tells that a person watches this call: its stderr is their
	// terminal, or the command is one only people run (setup). An attended
	// call may start a browser login during the cool-down after a failed
	// one; a background caller (an IDE, k9s, a script) may not.
	Attended bool
	// Stdin is where the person's typed input comes from (the pasted code of
	// --grant-type authcode-keyboard); nil means no input is possible, and
	// nothing is ever read. Set it only when stdin was handed over to the
	// person (KUBERNETES_EXEC_INFO says interactive). A call with Stdin is
	// attended too.
	Stdin io.Reader
	// Logger receives progress and debug logs; nil discards them.
	Logger *slog.Logger
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

// ErrLoginFailed reports a login that failed or was abandoned.
var ErrLoginFailed = errors.New("login failed")

// ErrRefreshFailed reports a refresh that failed for want of the provider
// (network, timeout, 5xx), seen by a process that waited behind it.
var ErrRefreshFailed = errors.New("refresh failed")

// ErrCallerGone is the cause of a Token context cancelled because the
// process that ran latchkey is gone (see context.WithCancelCause): a login
// it ends starts no cool-down, since nobody failed it.
var ErrCallerGone = errors.New("the caller of latchkey is gone")

// ErrLoginCooldown reports that a background caller was refused a browser
// login because one failed or was abandoned moments ago.
var ErrLoginCooldown = errors.New("not starting another login yet")

// Token returns a token for c.Options. It reads the cache without a lock and
// without network access; only when the cached token expires within 10
// seconds (or ForceRefresh is set) does it take the key's lock, re-read the
// cache, refresh, and, when the provider refuses the refresh token or there
// is none, log in (in a browser, or with a headless grant). A provider that
// cannot be reached is an error: it never starts a login, and the cache
// keeps its tokens.
func (c *Client) Token(ctx context.Context) (*Token, error) {
	k, err := c.call()
	if err != nil {
		return nil, err
	}
	return k.token(ctx)
}

// Cached returns the cached token if it has more than 10 seconds left and
// ForceRefresh is not set, reading the cache entry and nothing else (the
// caller may have read flytectl's configuration before, see
// ApplyFlyteConfig): no lock, no network. Callers on a hot path (kubectl runs get-token for every command)
// can answer from it before setting anything else up; Token starts with it.
func (c *Client) Cached() (*Token, bool) {
	k, err := c.call()
	if err != nil {
		return nil, false
	}
	t, _, _ := k.cached()
	return t, t != nil
}

// call is one Token or Logout call: the options with their source, the
// client's dependencies with their defaults filled in, and the cache entry
// the options name.
type call struct {
	c     *Client
	o     *Options
	src   source
	store *cache.Cache // nil with --token-cache-storage=none
	id    string
	now   func() time.Time
	log   *slog.Logger
}

// call validates the options and starts a call. It touches neither the
// disk nor the network.
func (c *Client) call() (*call, error) {
	o := &c.Options
	if err := o.Validate(); err != nil {
		return nil, err
	}
	k := &call{c: c, o: o, src: o.source(), now: c.Now, log: c.Logger}
	if k.now == nil {
		k.now = time.Now
	}
	if k.log == nil {
		k.log = slog.New(slog.DiscardHandler)
	}
	k.id = k.src.key().ID()
	switch {
	case o.Storage == "none":
	case c.Cache != nil:
		k.store = c.Cache
	default:
		k.store = cache.Open(o.CacheDir)
		k.store.Logger = k.log
		if o.Storage == "keyring" {
			k.store.Keyring = &cache.Keyring{}
		}
	}
	return k, nil
}

// token is Token's work.
func (k *call) token(ctx context.Context) (*Token, error) {
	start := k.now()
	t, seen, err := k.cached()
	if t != nil || err != nil || k.store == nil {
		if t == nil && err == nil {
			return k.renew(ctx, nil)
		}
		return t, err
	}
	lock, err := k.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := lock.Unlock(); err != nil {
			k.log.Debug("unlock token cache", "err", err)
		}
	}()
	// Another process may have refreshed or logged in meanwhile.
	e, err := k.load(k.store.Load, true)
	if err != nil || e == nil {
		if err != nil {
			return nil, err
		}
		return k.renew(ctx, nil)
	}
	if t := k.freshToken(e); t != nil && (!k.o.ForceRefresh || !sameTokens(e, seen)) {
		k.log.Debug("using token another process obtained", "expiry", t.Expiry)
		return t, nil
	}
	if f := e.RefreshFailure; f != nil && f.At.After(start) {
		// The refresh this process waited for could not reach the
		// provider; trying again at once would wait it out again.
		return nil, fmt.Errorf("%w in another latchkey process: %s", ErrRefreshFailed, f.Reason)
	}
	if f := e.LoginFailure; f != nil && f.At.After(start) {
		// A login failed after this process started: it was the login
		// this one waited for. Retrying it at once would only open another
		// browser tab.
		return nil, fmt.Errorf("%w in another latchkey process: %s", ErrLoginFailed, f.Reason)
	}
	return k.renew(ctx, e)
}

// cached returns the fresh cached token, or else the entry seen (if any)
// for token to compare with what it finds under the lock.
func (k *call) cached() (*Token, *cache.Entry, error) {
	if k.store == nil {
		return nil, nil, nil
	}
	e, err := k.load(k.store.Peek, false)
	if e == nil || err != nil {
		return nil, nil, err
	}
	if t := k.freshToken(e); t != nil && !k.o.ForceRefresh {
		k.log.Debug("using cached token", "expiry", t.Expiry)
		return t, nil, nil
	}
	return nil, e, nil
}

// load reads the entry with read (the cache's Load, or Peek where the
// tokens are enough): nil if there is none or it is damaged (a login will
// replace it), an error if the OS keyring holding its tokens cannot be
// read (a login would not help and would replace a good refresh token).
func (k *call) load(read func(id string) (*cache.Entry, error), warn bool) (*cache.Entry, error) {
	e, err := read(k.id)
	switch {
	case err == nil:
		return e, nil
	case errors.Is(err, cache.ErrNotFound):
	case errors.Is(err, cache.ErrKeyring):
		return nil, fmt.Errorf("read tokens: %w", err)
	default:
		// Said once per call: by the read under the lock.
		l := k.log.Debug
		if warn {
			l = k.log.Warn
		}
		l("ignoring unusable token cache entry", "err", err)
	}
	return nil, nil
}

// lock takes the entry's lock, telling the person when it has to wait.
func (k *call) lock(ctx context.Context) (*cache.Lock, error) {
	l, ok, err := k.store.TryLock(k.id)
	if err != nil || ok {
		return l, err
	}
	k.log.Info("waiting for another latchkey process to finish (lock " + k.store.LockPath(k.id) + ")")
	ctx, cancel := context.WithTimeout(ctx, k.authTimeout()+lockSlack)
	defer cancel()
	return k.store.Lock(ctx, k.id)
}

// renew refreshes e's token or, failing that, logs in; it saves the result
// (if there is a store) before returning it. e is nil without an entry.
func (k *call) renew(ctx context.Context, e *cache.Entry) (*Token, error) {
	hc, err := k.httpClient()
	if err != nil {
		return nil, err
	}
	p := k.storedProvider(e, false)
	keepRefresh := false // the refresh token stays good if the login fails
	if k.o.GrantType == GrantClientCredentials {
		return k.clientCredentials(ctx, hc, e, p)
	}
	if e != nil && e.RefreshToken != "" {
		l, err := k.resolve(ctx, hc, p)
		if err != nil {
			return nil, err
		}
		if expiredJWT(e.RefreshToken, k.now()) {
			// flyteadmin's refresh tokens are JWTs: one past its exp is
			// refused anyway; not sent at all.
			k.log.Info("the refresh token has expired, logging in again")
		} else if minted := mintedBy(e); minted != "" && minted != l.provider.Issuer {
			// RFC 9700 §4.4: the tokens go only to the issuer that
			// minted them.
			k.log.Warn("the provider's metadata now names another issuer; its tokens are not sent there, logging in again",
				"minted_by", minted, "issuer", l.provider.Issuer)
		} else {
			tok, kept, err := k.refresh(ctx, hc, e, l)
			switch {
			case err == nil || classify(err) != refused:
				return tok, err
			case errors.Is(err, errNoRefreshIDToken):
				// Only the ID token was missing: the refresh token is good.
				e, keepRefresh = kept, true
			default:
				// A 5xx refusal (flyteadmin's) may also be a provider's
				// hiccup: an abandoned login keeps the refresh token.
				keepRefresh = serverError(err)
				k.log.Info("refresh token no longer accepted, logging in again", "reason", err)
			}
		}
		p = l.provider
	}
	// Before any request: a caller refused in the cool-down costs the
	// provider nothing and gets the cool-down message even when it is down.
	if e != nil && e.LoginFailure != nil {
		if err := k.coolingDown(e.LoginFailure); err != nil {
			return nil, err
		}
	}
	if p != nil && k.now().Sub(p.FetchedAt) > time.Minute {
		p = nil // a login follows; use fresh metadata for it
	}
	l, err := k.resolve(ctx, hc, p)
	if err != nil {
		return nil, err
	}
	l.promptConsent = e != nil && e.OfflineNeedsConsent
	next, err := k.login(ctx, hc, l)
	if err != nil && errors.Is(context.Cause(ctx), ErrCallerGone) {
		err = &setupError{fmt.Errorf("%w: %w", ErrCallerGone, err)}
	}
	if err != nil {
		o := loginFailed
		if keepRefresh {
			o = loginFailedRefreshGood
		}
		k.record(e, err, o)
		return nil, err
	}
	return k.save(next, l)
}

// resolve returns the call's login, resolved with metadata p, or, if p is
// nil, with metadata discovered now.
func (k *call) resolve(ctx context.Context, hc *http.Client, p *Provider) (*login, error) {
	if p == nil {
		var err error
		if p, err = k.src.discover(ctx, hc, k.now()); err != nil {
			return nil, err
		}
	}
	l := k.src.resolve(p)
	if l.clientSecret == "" {
		var err error
		if l.clientSecret, err = k.o.secret(getenvOr(k.c.Getenv)); err != nil {
			return nil, err
		}
	}
	k.log.Debug("resolved login", "issuer", p.Issuer, "client_id", l.clientID, "scopes", strings.Join(l.scopes, " "),
		"redirect_uri", l.redirectURL)
	return l, nil
}

// storedProvider returns the metadata kept with e if they were discovered
// for these options and, unless anyAge, are younger than providerLifetime;
// else nil.
func (k *call) storedProvider(e *cache.Entry, anyAge bool) *Provider {
	p := providerOf(e)
	if p == nil || !k.src.fits(p) || (!anyAge && k.now().Sub(p.FetchedAt) >= providerLifetime) {
		return nil
	}
	return p
}

// providerOf decodes the metadata stored with e; nil if there are none or
// they are unusable.
func providerOf(e *cache.Entry) *Provider {
	if e == nil || len(e.Provider) == 0 {
		return nil
	}
	var p Provider
	if json.Unmarshal(e.Provider, &p) != nil {
		return nil
	}
	return &p
}

// expiredJWT tells whether token is a JWT whose exp has passed.
func expiredJWT(token string, now time.Time) bool {
	c, err := ParseClaims(token)
	return err == nil && !c.Expiry.IsZero() && !now.Before(c.Expiry)
}

// mintedBy returns the issuer that minted e's tokens: as stored, or, in an
// entry written before latchkey stored it, the issuer of its metadata.
func mintedBy(e *cache.Entry) string {
	if e.Issuer != "" || len(e.Provider) == 0 {
		return e.Issuer
	}
	var p struct {
		Issuer string `json:"issuer"`
	}
	_ = json.Unmarshal(e.Provider, &p)
	return p.Issuer
}

// refresh redeems e's refresh token (RFC 6749 §6) and saves the result. It
// asks again for the scope the provider granted (no more, §6; resending it
// keeps the groups claim at providers that narrow a refresh to what is
// asked, as Okta does), or, if the provider calls that invalid_scope, once
// more for no scope at all (the original grant). A request that reached no
// token endpoint leaves the refresh token unspent: if fresh metadata name
// another token endpoint (it moved), the refresh is sent there once. A
// failure other than a refusal is noted in the entry for the processes
// waiting behind this one.
//
// It returns the entry as it stands after the refresh, for the caller to
// go on with.
func (k *call) refresh(ctx context.Context, hc *http.Client, e *cache.Entry, l *login) (*Token, *cache.Entry, error) {
	// The provider spends the refresh token as it handles the request: one
	// under way when a signal comes or the caller goes (ctx ends) gets
	// refreshGrace more to bring back the rotated token, which would
	// otherwise be lost with the spent one kept (and replaying that may
	// revoke the grant). No request starts once ctx has ended.
	sent, done := lingering(ctx, refreshGrace)
	defer done()
	form := l.tokenForm(url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {e.RefreshToken},
		"scope":         {cmp.Or(e.Scope, strings.Join(l.scopes, " "))},
	})
	post := func(l *login, endpoint string) (*tokenResponse, error) {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("refresh not sent: %w", context.Cause(ctx))
		}
		return l.client(hc, k.now).token(sent, endpoint, form)
	}
	r, err := post(l, l.provider.TokenEndpoint)
	if errorCode(err) == "invalid_scope" {
		k.log.Debug("the provider refused the scope on refresh; refreshing for the original grant", "err", err)
		form.Del("scope")
		r, err = post(l, l.provider.TokenEndpoint)
		if errorCode(err) == "invalid_scope" {
			err = fmt.Errorf("%w: %w", errRefreshRefused, err)
		}
	}
	if errors.Is(err, errNotDelivered) && ctx.Err() == nil {
		if p, derr := k.src.discover(ctx, hc, k.now()); derr == nil && p.Issuer == l.provider.Issuer && p.TokenEndpoint != l.provider.TokenEndpoint {
			k.log.Debug("token endpoint changed, refreshing again", "token_endpoint", p.TokenEndpoint)
			if moved, rerr := k.resolve(ctx, hc, p); rerr == nil {
				l = moved
				r, err = post(l, p.TokenEndpoint)
			}
		}
	}
	if err == nil {
		k.log.Debug("refreshed token", "rotated", r.RefreshToken != "" && r.RefreshToken != e.RefreshToken)
		// The old refresh token is spent: keep the new one before
		// anything else can fail.
		e = k.keepRotated(e, r.RefreshToken)
		var next *cache.Entry
		next, err = newEntry(sent, hc, k.now, l, r, "", e)
		switch {
		case err == nil:
			tok, err := k.save(next, l)
			return tok, next, err
		case errors.Is(err, errNoRefreshIDToken):
			// Keep what the refresh gave; a login follows for the ID token,
			// under the cool-down of the last failed one.
			k.log.Warn(err.Error())
			next.LoginFailure, next.LastFailure = e.LoginFailure, e.LastFailure
			k.keep(next, l)
			return nil, next, err
		}
	}
	if classify(err) != refused {
		k.record(e, err, refreshFailed)
	}
	return nil, e, err
}

// lingering returns a context that ends grace after ctx does (or when its
// cancel function is called), with ctx's cause.
func lingering(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	lctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(grace, func() { cancel(context.Cause(ctx)) })
		context.AfterFunc(lctx, func() { t.Stop() })
	})
	return lctx, func() { stop(); cancel(nil) }
}

// keepRotated saves a rotated refresh token at once (RFC 9700 §4.14.2: the
// old one is spent, and replaying it may revoke the whole family). If that
// save fails the entry is forgotten, so that the spent token is never sent
// again; the call goes on with the new token in memory.
func (k *call) keepRotated(e *cache.Entry, refreshToken string) *cache.Entry {
	if refreshToken == "" || refreshToken == e.RefreshToken {
		return e
	}
	next := *e
	next.RefreshToken = refreshToken
	if k.store != nil {
		if err := k.store.Save(k.id, &next); err != nil {
			k.log.Warn("could not save the rotated refresh token; forgetting the spent one", "err", err)
			if err := k.store.Forget(k.id); err != nil {
				k.log.Warn("could not delete the token cache entry", "err", err)
			}
		}
	}
	return &next
}

// coolingDown refuses an unattended caller a login within the cool-down
// after a failed one, so that tools polling in the background cannot open a
// browser tab per call.
func (k *call) coolingDown(f *cache.Failure) error {
	o := k.o
	left := f.At.Add(o.LoginCooldown).Sub(k.now())
	if k.c.Attended || k.c.Stdin != nil || o.ForceRefresh || o.LoginCooldown <= 0 || left <= 0 {
		return nil
	}
	return fmt.Errorf("%w: a login failed %s ago (%s); a background caller waits %s more before starting another. "+
		"To log in now, run the command in a terminal or add --force-refresh",
		ErrLoginCooldown, k.now().Sub(f.At).Round(time.Second), f.Reason, left.Round(time.Second))
}

// outcome is what record notes.
type outcome int

const (
	// loginFailed: a login failed; the refresh token is dropped (the login
	// was needed because it no longer works).
	loginFailed outcome = iota
	// loginFailedRefreshGood: a login failed, but the refresh token works
	// (a login was needed only for an ID token the refresh did not give).
	loginFailedRefreshGood
	// refreshFailed: a refresh failed for want of the provider.
	refreshFailed
)

// record notes a failed login or refresh in the cache entry, for the
// processes waiting behind this one and, after a login, for the
// cool-down; and, as LastFailure, for status. A login that never reached
// the person (a usage error, a busy port, nobody to show the URL to: a
// setupError) is noted for status only: there is nothing to wait out.
func (k *call) record(e *cache.Entry, err error, o outcome) {
	if k.store == nil {
		return
	}
	var next cache.Entry
	if e != nil {
		next = *e
	}
	f := &cache.Failure{At: k.now(), Reason: strings.Join(strings.Fields(err.Error()), " ")}
	next.LastFailure = f
	switch {
	case errors.As(err, new(*setupError)):
		// Only for status: nothing for others to wait out.
	case o == refreshFailed:
		next.RefreshFailure = f
	case o == loginFailedRefreshGood:
		next.LoginFailure = f
	default:
		next.RefreshToken, next.LoginFailure = "", f
	}
	if err := k.store.Save(k.id, &next); err != nil {
		k.log.Debug("record failure", "err", err)
	}
}

// save stores e, minted for login l, and returns the token it holds. A
// failed save is reported but the token is still returned: the person
// logged in successfully.
func (k *call) save(e *cache.Entry, l *login) (*Token, error) {
	t := k.freshToken(e)
	if t == nil {
		return nil, fmt.Errorf("provider returned a token that is already expired")
	}
	k.keep(e, l)
	return t, nil
}

// keep stores e, minted for login l, with its key and the provider's
// metadata, if there is a store.
func (k *call) keep(e *cache.Entry, l *login) {
	if k.store == nil {
		return
	}
	key := k.src.key()
	e.Key, e.Issuer = &key, l.provider.Issuer
	if p, err := json.Marshal(l.provider); err == nil {
		e.Provider = p
	}
	if err := k.store.Save(k.id, e); err != nil {
		k.log.Warn("could not save the token; the next call will have to log in again", "err", err)
	}
}

// freshToken returns the token of e that the options hand out if it has
// more than freshMargin left, else nil.
func (k *call) freshToken(e *cache.Entry) *Token {
	v, exp := e.IDToken, e.IDTokenExpiry
	if k.o.UseAccessToken {
		v, exp = e.AccessToken, e.Expiry
	}
	if v == "" || exp.IsZero() || exp.Sub(k.now()) <= freshMargin {
		return nil
	}
	return &Token{Value: v, Expiry: exp, Entry: e}
}

func sameTokens(a, b *cache.Entry) bool {
	return a != nil && b != nil && a.IDToken == b.IDToken && a.AccessToken == b.AccessToken && a.RefreshToken == b.RefreshToken
}

// httpClient returns the client for talking to the provider, sending
// Options.RequestHeaders with every request.
func (k *call) httpClient() (*http.Client, error) {
	hc := k.c.HTTPClient
	if hc == nil {
		var err error
		if hc, err = newHTTPClient(k.o); err != nil {
			return nil, err
		}
	}
	if len(k.o.RequestHeaders) > 0 {
		with := *hc
		with.Transport = headers{base: hc.Transport, set: k.o.RequestHeaders}
		hc = &with
	}
	return hc, nil
}

// headers is an http.RoundTripper that sets headers on every request.
type headers struct {
	base http.RoundTripper // nil means http.DefaultTransport
	set  map[string]string
}

func (h headers) RoundTrip(r *http.Request) (*http.Response, error) {
	// Not on a redirect to another host: the headers are for the provider
	// (Go drops sensitive headers on such redirects; they are not set anew).
	if r.Response == nil || r.Response.Request.URL.Host == r.URL.Host {
		r = r.Clone(r.Context())
		for k, v := range h.set {
			r.Header.Set(k, v)
		}
	}
	base := h.base
	if base == nil {
		base = http.DefaultTransport
	}
	return base.RoundTrip(r)
}

func getenvOr(getenv func(string) string) func(string) string {
	if getenv != nil {
		return getenv
	}
	return os.Getenv
}

func (k *call) authTimeout() time.Duration {
	if k.o.AuthTimeout > 0 {
		return k.o.AuthTimeout
	}
	return DefaultAuthTimeout
}

// setupError marks a login that failed before it reached the person: a
// usage error, a redirect port in use, no terminal to paste a code into.
// Such a failure starts no cool-down and is not shared with waiting
// processes.
type setupError struct{ err error }

func (e *setupError) Error() string { return e.err.Error() }
func (e *setupError) Unwrap() error { return e.err }
