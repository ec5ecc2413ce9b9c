package plugin

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/latchkey/latchkey/cache"
	"github.com/latchkey/latchkey/pkce"
	"github.com/latchkey/latchkey/plugin/idptest"
)

// clock is a settable time source shared by the IdP and the client.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// harness is one IdP and the clients of one cache directory.
type harness struct {
	t        *testing.T
	idp      *idptest.Server
	clock    *clock
	dir      string
	browsers atomic.Int32
	// atBrowser is what the IdP had served when the first browser opened.
	atBrowser idptest.Counts
	// denials makes browser errors expected (the IdP refuses logins).
	denials bool
	wg      sync.WaitGroup
	errs    chan error
}

func newHarness(t *testing.T, cfg idptest.Config) *harness {
	t.Helper()
	h := &harness{t: t, clock: newClock(), dir: t.TempDir(), errs: make(chan error, 16), denials: cfg.DenyAuthorization != ""}
	cfg.Now = h.clock.Now
	h.idp = idptest.NewServer(cfg)
	t.Cleanup(func() {
		h.wg.Wait()
		h.idp.Close()
		close(h.errs)
		for err := range h.errs {
			t.Errorf("browser: %v", err)
		}
	})
	return h
}

func (h *harness) options() Options {
	return Options{
		IssuerURL:   h.idp.URL,
		ClientID:    idptest.DefaultClientID,
		ExtraScopes: []string{"email", "groups", "offline_access"},
		CacheDir:    h.dir,
		AuthTimeout: 10 * time.Second,
	}
}

// client returns a client whose browser follows the login URL, as a person
// who is already signed in at the IdP would.
func (h *harness) client(o Options) *Client {
	return &Client{
		Options:    o,
		HTTPClient: h.idp.Client(),
		Now:        h.clock.Now,
		OpenBrowser: func(_ context.Context, url string) error {
			if h.browsers.Add(1) == 1 {
				h.atBrowser = h.idp.Counts()
			}
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				// Like a real browser, it outlives the login's context.
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				if err := idptest.Browse(ctx, h.idp.Client(), url); err != nil && !h.denials {
					h.errs <- err
				}
			}()
			return nil
		},
	}
}

func (h *harness) token(o Options) (*Token, error) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.t.Context(), 20*time.Second)
	defer cancel()
	return h.client(o).Token(ctx)
}

func (h *harness) mustToken(o Options) *Token {
	h.t.Helper()
	tok, err := h.token(o)
	if err != nil {
		h.t.Fatalf("Token: %v", err)
	}
	return tok
}

// snapshot returns the cache directory's files and contents.
func (h *harness) snapshot() map[string]string {
	h.t.Helper()
	m := map[string]string{}
	entries, err := os.ReadDir(h.dir)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(h.dir, e.Name()))
		m[e.Name()] = string(b)
	}
	return m
}

func (h *harness) entry(o Options) *cache.Entry {
	h.t.Helper()
	e, err := cache.Open(h.dir).Load(o.Key().ID())
	if err != nil {
		h.t.Fatalf("load entry: %v", err)
	}
	return e
}

// stored returns the provider metadata kept with e.
func stored(t *testing.T, e *cache.Entry) *Provider {
	t.Helper()
	var p Provider
	if err := json.Unmarshal(e.Provider, &p); err != nil {
		t.Fatalf("entry's provider metadata: %v", err)
	}
	return &p
}

// store sets the provider metadata kept with e to p.
func store(t *testing.T, e *cache.Entry, p *Provider) {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	e.Provider = b
}

func TestFirstLoginThenCache(t *testing.T) {
	h := newHarness(t, idptest.Config{})
	o := h.options()
	tok := h.mustToken(o)
	if got := h.browsers.Load(); got != 1 {
		t.Errorf("browsers opened = %d, want 1", got)
	}
	a := h.idp.LastAuthorize()
	if a.Get("code_challenge_method") != "S256" || a.Get("code_challenge") == "" {
		t.Errorf("authorization request lacks PKCE S256: method %q", a.Get("code_challenge_method"))
	}
	if got, want := a.Get("scope"), "openid email groups offline_access"; got != want {
		t.Errorf("scope = %q, want %q", got, want)
	}
	if a.Get("nonce") == "" || a.Get("state") == "" {
		t.Error("authorization request lacks nonce or state")
	}
	// Issue 7: discovery once, and nothing that can wait (the keys) before
	// the browser opens.
	if a := h.atBrowser; a.Discovery != 1 || a.JWKS != 0 {
		t.Errorf("before the browser opened: %d discovery and %d JWKS requests, want 1 and 0", a.Discovery, a.JWKS)
	}
	e := h.entry(o)
	if tok.Value != e.IDToken || e.IDToken == "" || e.RefreshToken == "" {
		t.Errorf("output is not the cached ID token, or the entry lacks tokens")
	}
	if want := h.clock.Now().Add(idptest.DefaultTokenLifetime).Truncate(time.Second); !tok.Expiry.Equal(want) {
		t.Errorf("expiry = %v, want %v", tok.Expiry, want)
	}

	before := h.idp.Counts()
	h.clock.Advance(idptest.DefaultTokenLifetime - 11*time.Second)
	again := h.mustToken(o)
	if again.Value != tok.Value {
		t.Error("second call did not return the cached token")
	}
	if after := h.idp.Counts(); after != before {
		t.Errorf("cached call talked to the IdP: %+v -> %+v", before, after)
	}
	if got := h.browsers.Load(); got != 1 {
		t.Errorf("browsers opened = %d, want 1", got)
	}

	// With 5 s left, inside the 10 s margin, the token is refreshed: it
	// would expire on its way to the API server.
	h.clock.Advance(6 * time.Second)
	if again = h.mustToken(o); again.Value == tok.Value {
		t.Error("a token with 5 s left was served from the cache")
	}
	if c := h.idp.Counts(); c.Refresh != before.Refresh+1 {
		t.Errorf("refreshes = %d, want %d", c.Refresh, before.Refresh+1)
	}
}

func TestRefreshRotatesAndReusesDiscovery(t *testing.T) {
	h := newHarness(t, idptest.Config{ReuseErrorCode: "invalid_request"})
	o := h.options()
	first := h.mustToken(o)
	rt1 := h.entry(o).RefreshToken
	for i := range 3 {
		h.clock.Advance(idptest.DefaultTokenLifetime)
		tok := h.mustToken(o)
		if tok.Value == first.Value {
			t.Fatalf("refresh %d returned the old token", i)
		}
		rt := h.entry(o).RefreshToken
		if rt == rt1 {
			t.Fatalf("refresh %d: rotated refresh token not persisted", i)
		}
		rt1 = rt
		first = tok
	}
	c := h.idp.Counts()
	if c.Refresh != 3 || c.RefreshRejected != 0 {
		t.Errorf("refreshes = %d (rejected %d), want 3 (0)", c.Refresh, c.RefreshRejected)
	}
	if c.Discovery != 1 || c.JWKS != 1 {
		t.Errorf("discovery/JWKS requests = %d/%d, want 1/1 (cached with the entry)", c.Discovery, c.JWKS)
	}
	if got := h.browsers.Load(); got != 1 {
		t.Errorf("browsers opened = %d, want 1", got)
	}
	if got := h.idp.LastToken().Get("scope"); got != "openid email groups offline_access" {
		t.Errorf("refresh scope = %q, want the login's scopes", got)
	}
}

func TestRefreshRefusedFallsBackToLogin(t *testing.T) {
	for _, code := range []string{"invalid_grant", "invalid_request"} {
		t.Run(code, func(t *testing.T) {
			h := newHarness(t, idptest.Config{ReuseErrorCode: code})
			o := h.options()
			h.mustToken(o)
			h.idp.RevokeAll()
			h.clock.Advance(2 * idptest.DefaultTokenLifetime)
			h.mustToken(o)
			if got := h.browsers.Load(); got != 2 {
				t.Errorf("browsers opened = %d, want 2", got)
			}
			if c := h.idp.Counts(); c.RefreshRejected != 1 {
				t.Errorf("rejected refreshes = %d, want 1", c.RefreshRejected)
			}
		})
	}
}

func TestProviderDownKeepsCacheAndOpensNoBrowser(t *testing.T) {
	for _, fault := range []string{"503", "closed"} {
		t.Run(fault, func(t *testing.T) {
			var down atomic.Bool
			h := newHarness(t, idptest.Config{Intercept: func(w http.ResponseWriter, r *http.Request) bool {
				if !down.Load() {
					return false
				}
				if fault == "closed" {
					hj, _ := w.(http.Hijacker)
					conn, _, _ := hj.Hijack()
					conn.Close()
					return true
				}
				http.Error(w, "maintenance", http.StatusServiceUnavailable)
				return true
			}})
			o := h.options()
			h.mustToken(o)
			h.clock.Advance(2 * idptest.DefaultTokenLifetime)
			old := h.entry(o)
			down.Store(true)
			_, err := h.token(o)
			if err == nil {
				t.Fatal("Token succeeded with the provider down")
			}
			if errors.Is(err, errRefreshRefused) {
				t.Errorf("a provider fault was taken for a refused refresh token: %v", err)
			}
			if got := h.browsers.Load(); got != 1 {
				t.Errorf("browsers opened = %d, want 1 (no login after a network fault)", got)
			}
			// The tokens stay; only a note of the failed refresh is added.
			if e := h.entry(o); e.RefreshToken != old.RefreshToken || e.IDToken != old.IDToken || e.RefreshFailure == nil {
				t.Errorf("cache entry changed: tokens kept %t, failure recorded %t", e.RefreshToken == old.RefreshToken && e.IDToken == old.IDToken, e.RefreshFailure != nil)
			}
			down.Store(false)
			h.mustToken(o)
			if got := h.browsers.Load(); got != 1 {
				t.Errorf("browsers opened = %d after recovery, want 1", got)
			}
		})
	}
}

func TestRefreshWithoutIDToken(t *testing.T) {
	t.Run("access token output keeps working", func(t *testing.T) {
		h := newHarness(t, idptest.Config{OmitIDTokenOnRefresh: true})
		o := h.options()
		o.UseAccessToken = true
		first := h.mustToken(o)
		h.clock.Advance(2 * idptest.DefaultTokenLifetime)
		tok := h.mustToken(o)
		if tok.Value == first.Value || tok.Value != h.entry(o).AccessToken {
			t.Error("did not output the refreshed access token")
		}
		if got := h.browsers.Load(); got != 1 {
			t.Errorf("browsers opened = %d, want 1", got)
		}
	})
	t.Run("ID token output logs in again", func(t *testing.T) {
		h := newHarness(t, idptest.Config{OmitIDTokenOnRefresh: true})
		o := h.options()
		h.mustToken(o)
		h.clock.Advance(2 * idptest.DefaultTokenLifetime)
		h.mustToken(o)
		if got := h.browsers.Load(); got != 2 {
			t.Errorf("browsers opened = %d, want 2", got)
		}
	})
	// Glewlwyd's refresh responses carry no ID token: the person is told
	// why each expiry means a login and what helps, and the refreshed
	// access token is kept for `latchkey token` even when that login does
	// not happen.
	t.Run("said, and the access token kept", func(t *testing.T) {
		h := newHarness(t, idptest.Config{OmitIDTokenOnRefresh: true})
		o := h.options()
		o.LoginCooldown = time.Minute
		first := h.mustToken(o)
		h.clock.Advance(2 * idptest.DefaultTokenLifetime)
		var logs syncBuffer
		c := h.client(o)
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		c.OpenBrowser = func(context.Context, string) error { return errors.New("no browser today") }
		c.Options.AuthTimeout = time.Second
		if _, err := c.Token(t.Context()); err == nil {
			t.Fatal("the ID token came without a login")
		}
		if !strings.Contains(logs.String(), "no ID token") || !strings.Contains(logs.String(), "--oidc-use-access-token") {
			t.Errorf("logs %q: want the reason and --oidc-use-access-token", logs.String())
		}
		// A background caller wanting the ID token again is held by the
		// cool-down of that failed login: no browser per call.
		if _, err := h.token(o); !errors.Is(err, ErrLoginCooldown) || h.browsers.Load() != 1 {
			t.Errorf("background call after the failed login: %v, %d browsers; want the cool-down", err, h.browsers.Load())
		}
		o.UseAccessToken = true
		tok := h.mustToken(o)
		if tok.Value == first.Entry.AccessToken || h.idp.Counts().Refresh != 2 || h.browsers.Load() != 1 {
			t.Errorf("access token output: refreshed %v, %d refreshes, %d browsers; want the kept refreshed access token",
				tok.Value != first.Entry.AccessToken, h.idp.Counts().Refresh, h.browsers.Load())
		}
	})
}

func TestForceRefresh(t *testing.T) {
	h := newHarness(t, idptest.Config{})
	o := h.options()
	first := h.mustToken(o)
	o.ForceRefresh = true
	h.clock.Advance(time.Second)
	tok := h.mustToken(o)
	if tok.Value == first.Value {
		t.Error("--force-refresh returned the cached token")
	}
	if c := h.idp.Counts(); c.Refresh != 1 {
		t.Errorf("refreshes = %d, want 1", c.Refresh)
	}
}

// TestForceRefreshUsesWaitedForToken: a --force-refresh that waited
// for the lock behind another process's refresh uses the token that
// process got: it is already new, and refreshing again would only spend
// another refresh token.
func TestForceRefreshUsesWaitedForToken(t *testing.T) {
	var gate atomic.Bool
	inRefresh, release := make(chan struct{}), make(chan struct{})
	h := newHarness(t, idptest.Config{Intercept: func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == idptest.TokenPath && gate.CompareAndSwap(true, false) {
			close(inRefresh)
			<-release
		}
		return false
	}})
	o := h.options()
	h.mustToken(o)
	o.ForceRefresh = true
	gate.Store(true)
	aTok := make(chan *Token, 1)
	go func() { tok, _ := h.client(o).Token(t.Context()); aTok <- tok }()
	<-inRefresh

	var logs syncBuffer
	b := h.client(o)
	b.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	bTok := make(chan *Token, 1)
	go func() { tok, _ := b.Token(t.Context()); bTok <- tok }()
	for !strings.Contains(logs.String(), "waiting for another latchkey process") {
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	ta, tb := <-aTok, <-bTok
	if ta == nil || tb == nil || ta.Value != tb.Value {
		t.Errorf("the waiting --force-refresh did not return the other process's token")
	}
	if c := h.idp.Counts(); c.Refresh != 1 {
		t.Errorf("refreshes = %d, want 1", c.Refresh)
	}
}

func TestLoginDenied(t *testing.T) {
	h := newHarness(t, idptest.Config{DenyAuthorization: "access_denied"})
	o := h.options()
	_, err := h.token(o)
	var ae *pkce.AuthError
	if !errors.As(err, &ae) || ae.Code != "access_denied" {
		t.Fatalf("err = %v, want *pkce.AuthError access_denied", err)
	}
	e := h.entry(o)
	if e.IDToken != "" || e.RefreshToken != "" || e.LoginFailure == nil || !strings.Contains(e.LoginFailure.Reason, "access_denied") {
		t.Errorf("entry after a denied login = %v, want only a failure record naming access_denied", e)
	}
}

func TestLoginCooldown(t *testing.T) {
	h := newHarness(t, idptest.Config{DenyAuthorization: "access_denied"})
	o := h.options()
	o.LoginCooldown = time.Minute
	if _, err := h.token(o); err == nil {
		t.Fatal("denied login succeeded")
	}
	h.idp.SetDeny("")
	h.clock.Advance(30 * time.Second)

	_, err := h.token(o)
	if !errors.Is(err, ErrLoginCooldown) {
		t.Fatalf("background call in the cool-down: err = %v, want ErrLoginCooldown", err)
	}
	if !strings.Contains(err.Error(), "--force-refresh") || !strings.Contains(err.Error(), "access_denied") {
		t.Errorf("message does not say what happened and how to log in: %v", err)
	}
	if got := h.browsers.Load(); got != 1 {
		t.Fatalf("browsers opened = %d, want 1", got)
	}

	c := h.client(o)
	c.Attended = true
	if _, err := c.Token(t.Context()); err != nil {
		t.Fatalf("a caller at a terminal was refused: %v", err)
	}
	if e := h.entry(o); e.LoginFailure != nil {
		t.Error("a successful login kept the failure record")
	}

	// --force-refresh and the end of the cool-down also allow a login.
	for _, tt := range []struct {
		name    string
		advance time.Duration
		force   bool
	}{{"force", time.Second, true}, {"expired", 61 * time.Second, false}} {
		h.idp.SetDeny("access_denied")
		h.idp.RevokeAll()
		h.clock.Advance(2 * idptest.DefaultTokenLifetime)
		if _, err := h.token(o); err == nil || errors.Is(err, ErrLoginCooldown) {
			t.Fatalf("%s: want the denied login's error, got %v", tt.name, err)
		}
		h.idp.SetDeny("")
		h.clock.Advance(tt.advance)
		o2 := o
		o2.ForceRefresh = tt.force
		if _, err := h.token(o2); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

// TestWaitersShareAFailedLogin: a process waiting for the lock behind a
// login that fails gives up at once with its reason, without a browser.
func TestWaitersShareAFailedLogin(t *testing.T) {
	h := newHarness(t, idptest.Config{DenyAuthorization: "access_denied"})
	o := h.options()
	o.LoginCooldown = -1 // only the waiting rule is under test

	release := make(chan struct{})
	inBrowser := make(chan struct{})
	a := h.client(o)
	follow := a.OpenBrowser
	a.OpenBrowser = func(ctx context.Context, url string) error {
		close(inBrowser)
		<-release
		return follow(ctx, url)
	}
	aErr := make(chan error, 1)
	go func() { _, err := a.Token(t.Context()); aErr <- err }()
	<-inBrowser

	var logs syncBuffer
	b := h.client(o)
	b.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	bErr := make(chan error, 1)
	go func() { _, err := b.Token(t.Context()); bErr <- err }()
	for !strings.Contains(logs.String(), "waiting for another latchkey process") {
		time.Sleep(5 * time.Millisecond)
	}
	h.clock.Advance(time.Second) // the login fails after b started
	close(release)
	if err := <-aErr; err == nil {
		t.Fatal("denied login succeeded")
	}
	err := <-bErr
	if !errors.Is(err, ErrLoginFailed) || !strings.Contains(err.Error(), "access_denied") {
		t.Errorf("waiter: err = %v, want ErrLoginFailed with the reason", err)
	}
	if got := h.browsers.Load(); got != 1 {
		t.Errorf("browsers opened = %d, want 1", got)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestStorageNone(t *testing.T) {
	h := newHarness(t, idptest.Config{})
	o := h.options()
	o.Storage = "none"
	h.mustToken(o)
	h.mustToken(o)
	if got := h.browsers.Load(); got != 2 {
		t.Errorf("browsers opened = %d, want 2 (nothing cached)", got)
	}
	if s := h.snapshot(); len(s) != 0 {
		t.Errorf("--token-cache-storage=none wrote files: %v", s)
	}
}

func TestMissingExpiresIn(t *testing.T) {
	h := newHarness(t, idptest.Config{OmitExpiresIn: true})
	o := h.options()
	o.UseAccessToken = true
	tok := h.mustToken(o)
	if want := h.clock.Now().Add(defaultAccessTokenLifetime); !tok.Expiry.Equal(want) {
		t.Errorf("expiry = %v, want the default lifetime %v", tok.Expiry, want)
	}
}

func TestBadProvider(t *testing.T) {
	tests := []struct {
		name      string
		intercept func(w http.ResponseWriter, r *http.Request) bool
	}{
		{"garbage discovery", func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path != idptest.DiscoveryPath {
				return false
			}
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"issuer":`))
			return true
		}},
		{"html discovery", func(w http.ResponseWriter, r *http.Request) bool {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte(`<html>login</html>`))
			return true
		}},
		{"other issuer", func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path != idptest.DiscoveryPath {
				return false
			}
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"issuer":"https://evil.example","authorization_endpoint":"https://evil.example/a","token_endpoint":"https://evil.example/t","jwks_uri":"https://evil.example/k"}`))
			return true
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, idptest.Config{Intercept: tt.intercept})
			_, err := h.token(h.options())
			if !errors.Is(err, ErrDiscovery) {
				t.Errorf("err = %v, want ErrDiscovery", err)
			}
			if h.browsers.Load() != 0 {
				t.Error("a browser opened for a broken provider")
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{
		{ClientID: "x"},
		{IssuerURL: "https://issuer"},
		{IssuerURL: "issuer.example.com", ClientID: "x"},
		{IssuerURL: "https://issuer", ClientID: "x", RedirectURL: "http://localhost:8000", ListenAddresses: []string{"127.0.0.1:8000"}},
	} {
		if err := o.Validate(); !errors.Is(err, ErrUsage) {
			t.Errorf("Validate(%+v) = %v, want ErrUsage", o, err)
		}
	}
}

func TestKeyIgnoresScopeOrderAndDuplicates(t *testing.T) {
	a := Options{IssuerURL: "https://i", ClientID: "c", ExtraScopes: []string{"groups", "email", "openid"}}
	b := Options{IssuerURL: "https://i", ClientID: "c", ExtraScopes: []string{"email", "groups", "email"}}
	if a.Key().ID() != b.Key().ID() {
		t.Error("the same scopes in another order give another cache entry")
	}
	// One login serves the ID token and the access token: Dex keeps one
	// refresh token per user and client, so two logins would spend each
	// other's (every expiry of either was a browser login).
	b.UseAccessToken = true
	if a.Key().ID() != b.Key().ID() {
		t.Error("the ID and the access token outputs have two cache entries")
	}
}

func TestRefreshFollowsAMovedTokenEndpoint(t *testing.T) {
	h := newHarness(t, idptest.Config{})
	o := h.options()
	h.mustToken(o)
	// The cached metadata names a token endpoint that has gone away.
	c := cache.Open(h.dir)
	e := h.entry(o)
	p := stored(t, e)
	p.TokenEndpoint = h.idp.URL + "/old-token"
	store(t, e, p)
	if err := c.Save(o.Key().ID(), e); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(2 * idptest.DefaultTokenLifetime)
	h.mustToken(o)
	if got := h.browsers.Load(); got != 1 {
		t.Errorf("browsers opened = %d, want 1", got)
	}
	cn := h.idp.Counts()
	if cn.Discovery != 2 || cn.Refresh != 1 {
		t.Errorf("discovery/refresh = %d/%d, want 2/1", cn.Discovery, cn.Refresh)
	}
	if got := stored(t, h.entry(o)).TokenEndpoint; got == p.TokenEndpoint {
		t.Error("the stale token endpoint is still cached")
	}
}

func TestCacheDirExpandsHome(t *testing.T) {
	var o Options
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	o.RegisterFlags(fs)
	if err := fs.Parse([]string{"--token-cache-dir=~/.kube/cache/oidc-login"}); err != nil {
		t.Fatal(err)
	}
	home, _ := os.UserHomeDir()
	if want := filepath.Join(home, ".kube/cache/oidc-login"); o.CacheDir != want {
		t.Errorf("CacheDir = %q, want %q", o.CacheDir, want)
	}
}

// TestRotatedRefreshTokenSurvivesABadResponse: once the provider has
// answered a refresh, the old refresh token is spent; the new one must be
// kept even if the rest of the response is unusable, or the next call would
// replay the spent token (and reuse detection revoke the family).
func TestRotatedRefreshTokenSurvivesABadResponse(t *testing.T) {
	h := newHarness(t, idptest.Config{ReuseRevokesFamily: true})
	o := h.options()
	h.mustToken(o)
	old := h.entry(o).RefreshToken
	h.idp.SetIDTokenLifetime(-time.Minute) // refreshes return expired ID tokens
	h.clock.Advance(2 * idptest.DefaultTokenLifetime)
	if _, err := h.token(o); err == nil {
		t.Fatal("an expired ID token was accepted")
	}
	if rt := h.entry(o).RefreshToken; rt == old || rt == "" {
		t.Fatal("the rotated refresh token was not kept")
	}
	h.idp.SetIDTokenLifetime(time.Hour)
	h.mustToken(o)
	if c := h.idp.Counts(); c.RefreshRejected != 0 || c.Refresh != 2 {
		t.Errorf("refreshes = %d, rejected %d; want 2, 0 (no replay)", c.Refresh, c.RefreshRejected)
	}
	if got := h.browsers.Load(); got != 1 {
		t.Errorf("browsers opened = %d, want 1", got)
	}
}

// TestBadLoopbackOptionsTouchNothing: options that can only fail at login
// fail before anything is read or written.
func TestBadLoopbackOptionsTouchNothing(t *testing.T) {
	h := newHarness(t, idptest.Config{})
	for _, mod := range []func(*Options){
		func(o *Options) { o.ListenAddresses = []string{"0.0.0.0:0"} },
		func(o *Options) { o.RedirectURL = "https://example.com/callback" },
		func(o *Options) { o.AuthParams = map[string]string{"state": "x"} },
	} {
		o := h.options()
		mod(&o)
		if _, err := h.token(o); !errors.Is(err, ErrUsage) {
			t.Errorf("err = %v, want ErrUsage", err)
		}
	}
	if s := h.snapshot(); len(s) != 0 {
		t.Errorf("cache written: %v", s)
	}
	if h.idp.Counts() != (idptest.Counts{}) {
		t.Errorf("the IdP was contacted: %+v", h.idp.Counts())
	}
}

// TestServerErrorIsNoRefusal: invalid_grant in a 5xx is the provider
// failing, not a refused refresh token: no login.
// TestServerErrors: what a 5xx from the token endpoint on refresh means.
// flyteadmin answers an expired or unusable refresh token (after an hour
// idle, or a restart with new keys) with 500 and {"error":"server_error"}:
// latchkey counted that as the provider being down and failed every call
// until logout; now it is a refusal, and the person logs in once. A
// provider that is really down (502, 503, 504, or a 5xx page that is no
// OAuth error document) still never opens a browser.
func TestServerErrors(t *testing.T) {
	for _, tt := range []struct {
		name   string
		status int
		body   string
		login  bool
	}{
		{"flyteadmin: 500 server_error", 500, `{"error":"server_error"}`, true},
		{"500 invalid_grant", 500, `{"error":"invalid_grant"}`, true},
		{"500 page", 500, `<html>oops</html>`, false},
		{"502 OAuth document", 502, `{"error":"server_error"}`, false},
		{"503 temporarily_unavailable", 503, `{"error":"temporarily_unavailable"}`, false},
		{"504 page", 504, `<html>timeout</html>`, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var fail atomic.Bool
			h := newHarness(t, idptest.Config{Intercept: func(w http.ResponseWriter, r *http.Request) bool {
				if !fail.Load() || r.URL.Path != idptest.TokenPath || r.FormValue("grant_type") != "refresh_token" {
					return false
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
				return true
			}})
			o := h.options()
			h.mustToken(o)
			fail.Store(true)
			h.clock.Advance(2 * idptest.DefaultTokenLifetime)
			_, err := h.token(o)
			if got := h.browsers.Load(); (got == 2) != tt.login || (err == nil) != tt.login {
				t.Errorf("err %v, browsers %d; want a login: %v", err, got, tt.login)
			}
			if !tt.login && h.entry(o).RefreshToken == "" {
				t.Error("an outage dropped the refresh token")
			}
		})
	}
}

// TestExpiredJWTRefreshToken: a refresh token that is a JWT whose exp has
// passed (flyteadmin's live 60 minutes) is not sent at all: a login follows.
func TestExpiredJWTRefreshToken(t *testing.T) {
	h := newHarness(t, idptest.Config{})
	o := h.options()
	h.mustToken(o)
	e := h.entry(o)
	e.RefreshToken = jwtWithExp(h.clock.Now().Add(time.Hour))
	if err := cache.Open(h.dir).Save(o.Key().ID(), e); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(2 * idptest.DefaultTokenLifetime)
	h.mustToken(o)
	if cn := h.idp.Counts(); cn.Refresh != 0 || h.browsers.Load() != 2 {
		t.Errorf("%d refresh requests, %d browsers; want 0 and a login", cn.Refresh, h.browsers.Load())
	}
}

// jwtWithExp is an unsigned JWT whose exp is at.
func jwtWithExp(at time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(fmt.Sprintf(`{"exp":%d}`, at.Unix()))) + ".c2ln"
}

// TestLogoutAllUsesStoredMetadata: logout --all revokes each login with the
// client and metadata stored with it, whatever their age, even when the
// provider's discovery document has gone away (LemonLDAP::NG: an entry
// whose provider moved made logout --all exit 1).
func TestLogoutAllUsesStoredMetadata(t *testing.T) {
	var gone atomic.Bool
	h := newHarness(t, idptest.Config{
		Intercept: func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path == idptest.DiscoveryPath && gone.Load() {
				http.NotFound(w, r)
				return true
			}
			return false
		},
	})
	h.mustToken(h.options())
	gone.Store(true)
	h.clock.Advance(providerLifetime + time.Hour)
	done, err := (&Client{Options: Options{CacheDir: h.dir}, HTTPClient: h.idp.Client(), Now: h.clock.Now}).LogoutAll(t.Context())
	if err != nil || len(done) != 1 || done[0].RevokeErr != nil {
		t.Fatalf("LogoutAll = %+v, %v", done, err)
	}
	if got := h.idp.Counts().Revocation; got != 2 {
		t.Errorf("revocation requests = %d, want 2", got)
	}
	if ids, _ := cache.Open(h.dir).List(); len(ids) != 0 {
		t.Errorf("entries left: %v", ids)
	}
}

// TestRefreshAsksForGrantedScope: a refresh asks for the scope the provider
// granted, not for every configured one (RFC 6749 §6). oidc-provider drops
// offline_access without prompt=consent, and Dex its cross-client scope
// audience:server:client_id:ID; asked again on refresh, both answer
// invalid_scope, and every later call failed until logout.
func TestRefreshAsksForGrantedScope(t *testing.T) {
	h := newHarness(t, idptest.Config{Ungranted: []string{"groups"}})
	o := h.options()
	h.mustToken(o)
	if got := h.entry(o).Scope; got != "openid email offline_access" {
		t.Errorf("entry's granted scope %q, want the token response's", got)
	}
	h.clock.Advance(idptest.DefaultTokenLifetime)
	h.mustToken(o)
	cn := h.idp.Counts()
	if cn.Refresh != 1 || cn.RefreshRejected != 0 || h.browsers.Load() != 1 {
		t.Errorf("refresh %d (%d rejected), browsers %d; want 1 (0), 1", cn.Refresh, cn.RefreshRejected, h.browsers.Load())
	}
	if got := h.idp.LastToken().Get("scope"); got != "openid email offline_access" {
		t.Errorf("refresh asked for %q, want the granted scope", got)
	}
}

// TestRefreshRetriesWithoutScope: a provider that answers invalid_scope to
// a refresh gets one more try without a scope parameter (the original
// grant), and the refresh works.
func TestRefreshRetriesWithoutScope(t *testing.T) {
	h := newHarness(t, idptest.Config{RefuseRefreshScope: true})
	o := h.options()
	h.mustToken(o)
	h.clock.Advance(idptest.DefaultTokenLifetime)
	h.mustToken(o)
	cn := h.idp.Counts()
	if cn.Refresh != 2 || h.browsers.Load() != 1 || h.idp.LastToken().Has("scope") {
		t.Errorf("refresh requests %d, browsers %d, last scope %q; want 2 (the second without scope), 1", cn.Refresh, h.browsers.Load(), h.idp.LastToken().Get("scope"))
	}
}

// TestResourceOnEveryTokenRequest: with a resource indicator (RFC 8707),
// the code exchange and every refresh name it too (§2.2): without it
// oidc-provider hands out an opaque access token, after a refresh as well.
func TestResourceOnEveryTokenRequest(t *testing.T) {
	h := newHarness(t, idptest.Config{})
	o := h.options()
	o.AuthParams = map[string]string{"resource": "urn:example:api"}
	h.mustToken(o)
	if got := h.idp.LastToken(); got.Get("grant_type") != "authorization_code" || got.Get("resource") != "urn:example:api" {
		t.Errorf("code exchange %v, want resource", got)
	}
	h.clock.Advance(idptest.DefaultTokenLifetime)
	h.mustToken(o)
	if got := h.idp.LastToken(); got.Get("grant_type") != "refresh_token" || got.Get("resource") != "urn:example:api" {
		t.Errorf("refresh %v, want resource", got)
	}
}

// TestLogoutUnrevocableAccessToken: oidc-provider revokes the refresh token
// (and the grant with it), then answers the JWT access token's revocation
// with 400 unsupported_token_type (RFC 7009 §2.2.1): that is no failure,
// and the logout says what stays valid.
func TestLogoutUnrevocableAccessToken(t *testing.T) {
	h := newHarness(t, idptest.Config{JWTAccessTokensUnrevocable: true})
	h.mustToken(h.options())
	res, err := h.client(h.options()).Logout(t.Context())
	if err != nil || res.RevokeErr != nil {
		t.Fatalf("Logout = %+v, %v; want no error", res, err)
	}
	if !cmp.Equal(res.Revoked, []string{"refresh_token"}) || !cmp.Equal(res.Unrevocable, []string{"access_token"}) {
		t.Errorf("revoked %v, unrevocable %v", res.Revoked, res.Unrevocable)
	}
}

// TestRefreshOutlivesCancel: the red team's gap (issue 15.9), a latchkey
// stopped (a signal, its caller gone) after the provider had rotated the
// refresh token but before the new one was saved, kept only the spent one.
// The refresh in flight now has refreshGrace to bring the new one back.
func TestRefreshOutlivesCancel(t *testing.T) {
	h := newHarness(t, idptest.Config{ReuseRevokesFamily: true})
	o := h.options()
	h.mustToken(o)
	spent := h.entry(o).RefreshToken
	h.clock.Advance(idptest.DefaultTokenLifetime)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	h.idp.Update(func(c *idptest.Config) {
		c.Intercept = func(_ http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path == idptest.TokenPath {
				cancel()                          // the signal arrives while the request is at the provider,
				time.Sleep(50 * time.Millisecond) // which then rotates the token and answers
			}
			return false
		}
	})
	_, err := h.client(o).Token(ctx)
	h.idp.Update(func(c *idptest.Config) { c.Intercept = nil })
	if got := h.entry(o).RefreshToken; got == "" || got == spent {
		t.Fatalf("refresh token after the cancelled refresh (Token: %v): spent one kept %v; want the rotated one", err, got == spent)
	}
	if c := h.idp.Counts(); c.Refresh != 1 {
		t.Errorf("refreshes = %d, want 1", c.Refresh)
	}
	h.mustToken(o)
	if c := h.idp.Counts(); c.RefreshRejected != 0 || h.browsers.Load() != 1 {
		t.Errorf("after it: %d refreshes refused, %d browsers; want 0 and 1 (the rotated token works)", c.RefreshRejected, h.browsers.Load())
	}
}

func TestLingering(t *testing.T) {
	ctx, cancel := context.WithCancelCause(t.Context())
	lctx, done := lingering(ctx, 100*time.Millisecond)
	defer done()
	cause := errors.New("caller gone")
	cancel(cause)
	select {
	case <-lctx.Done():
		t.Fatal("ended with its parent, not after the grace")
	case <-time.After(20 * time.Millisecond):
	}
	select {
	case <-lctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("did not end after the grace")
	}
	if got := context.Cause(lctx); !errors.Is(got, cause) {
		t.Errorf("cause %v, want the parent's", got)
	}
}

// TestNoRefreshAfterCancel: the grace is for a refresh already sent; none
// starts once the caller has gone.
func TestNoRefreshAfterCancel(t *testing.T) {
	h := newHarness(t, idptest.Config{})
	o := h.options()
	h.mustToken(o)
	before := h.entry(o).RefreshToken
	h.clock.Advance(idptest.DefaultTokenLifetime)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := h.client(o).Token(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Token with a cancelled context: %v, want context.Canceled", err)
	}
	if c := h.idp.Counts(); c.Refresh != 0 || c.RefreshRejected != 0 {
		t.Errorf("refresh requests = %d (+%d refused), want none", c.Refresh, c.RefreshRejected)
	}
	if got := h.entry(o).RefreshToken; got != before {
		t.Error("the refresh token changed")
	}
}
