package plugin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkey/latchkey/cache"
	"github.com/latchkey/latchkey/plugin/idptest"
)

// TestLogoutAllOldEntries: logout --all revokes and removes entries written
// before the token kind left the cache key (their id is not the one their
// key gives now), and does not send the secret or headers given on the
// command line to another login's provider.
func TestLogoutAllOldEntries(t *testing.T) {
	var basic atomic.Int32
	h := newHarness(t, idptest.Config{Intercept: func(w http.ResponseWriter, r *http.Request) bool {
		if _, _, ok := r.BasicAuth(); ok && r.URL.Path == idptest.RevocationPath {
			basic.Add(1)
		}
		return false
	}})
	o := h.options()
	h.mustToken(o)
	store := cache.Open(h.dir)
	e := h.entry(o)
	old := *e.Key
	old.UseAccessToken = true // as written before
	e.Key = &old
	if err := store.Save(old.ID(), e); err != nil {
		t.Fatal(err)
	}
	if err := store.Delete(o.Key().ID()); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(t.TempDir(), "s")
	os.WriteFile(secret, []byte("another-login's-secret"), 0o600)
	c := &Client{Options: Options{CacheDir: h.dir, IssuerURL: "https://other.example", ClientID: "x", ClientSecretFile: secret},
		HTTPClient: h.idp.Client(), Now: h.clock.Now}
	done, err := c.LogoutAll(t.Context())
	if err != nil || len(done) != 1 || done[0].RevokeErr != nil || len(done[0].Revoked) != 2 {
		t.Fatalf("LogoutAll = %+v, %v; want the old entry revoked", done, err)
	}
	if ids, _ := store.List(); len(ids) != 0 {
		t.Errorf("entries left: %v", ids)
	}
	if n := basic.Load(); n != 0 {
		t.Errorf("%d revocations carried the command line's client secret to another login", n)
	}
}

// TestMovedTokenEndpointConfidential: the retry at a moved token endpoint
// keeps the client's secret from its file.
func TestMovedTokenEndpointConfidential(t *testing.T) {
	h := newHarness(t, idptest.Config{ClientSecret: testSecret})
	secret := filepath.Join(t.TempDir(), "s")
	os.WriteFile(secret, []byte(testSecret), 0o600)
	o := h.options()
	o.ClientSecretFile = secret
	h.mustToken(o)
	e := h.entry(o)
	p := stored(t, e)
	p.TokenEndpoint = h.idp.URL + "/old-token"
	store(t, e, p)
	if err := cache.Open(h.dir).Save(o.Key().ID(), e); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(2 * idptest.DefaultTokenLifetime)
	h.mustToken(o)
	if cn := h.idp.Counts(); cn.Refresh != 1 || cn.RefreshRejected != 0 || h.browsers.Load() != 1 {
		t.Errorf("refresh %d (%d rejected), browsers %d; want one refresh at the moved endpoint", cn.Refresh, cn.RefreshRejected, h.browsers.Load())
	}
}

// TestRequestCheckLetsProxiesPass: a firewall or SSO proxy that turns away
// latchkey's check (401 with a challenge, 403 with a page) does not stop a
// login the browser can do.
func TestRequestCheckLetsProxiesPass(t *testing.T) {
	for name, answer := range map[string]func(w http.ResponseWriter){
		"401 Negotiate": func(w http.ResponseWriter) {
			w.Header().Set("WWW-Authenticate", "Negotiate")
			w.WriteHeader(http.StatusUnauthorized)
		},
		"403 page": func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte("<html>Attention required</html>"))
		},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, idptest.Config{Intercept: func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path == idptest.AuthorizePath && r.UserAgent() == checkUserAgent {
					answer(w)
					return true
				}
				return false
			}})
			if _, err := h.token(h.options()); err != nil || h.browsers.Load() != 1 {
				t.Errorf("Token = %v, browsers %d; want the login to go on", err, h.browsers.Load())
			}
		})
	}
}

// TestServerErrorRefusalKeepsRefreshToken: a 500 OAuth error on refresh
// starts a login (flyteadmin), but if that login is abandoned the refresh
// token stays: the 500 may have been another provider's hiccup.
func TestServerErrorRefusalKeepsRefreshToken(t *testing.T) {
	var fail atomic.Bool
	h := newHarness(t, idptest.Config{Intercept: func(w http.ResponseWriter, r *http.Request) bool {
		if fail.Load() && r.URL.Path == idptest.TokenPath {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"error":"server_error"}`))
			return true
		}
		return false
	}})
	o := h.options()
	h.mustToken(o)
	rt := h.entry(o).RefreshToken
	fail.Store(true)
	h.clock.Advance(2 * idptest.DefaultTokenLifetime)
	c := h.client(o)
	c.OpenBrowser = func(ctx context.Context, _ string) error { return nil } // the person never comes
	c.Options.AuthTimeout = time.Second
	if _, err := c.Token(t.Context()); err == nil {
		t.Fatal("no error")
	}
	if got := h.entry(o).RefreshToken; got != rt {
		t.Error("the abandoned login after a 500 dropped the refresh token")
	}
}

// TestRefusedRefreshTokenDropped: after the provider refused the refresh
// token (invalid_grant) and the login that followed failed, the entry no
// longer holds that refresh token: the next call does not send it again.
func TestRefusedRefreshTokenDropped(t *testing.T) {
	h := newHarness(t, idptest.Config{})
	o := h.options()
	h.mustToken(o)
	h.idp.RevokeAll()
	h.clock.Advance(2 * idptest.DefaultTokenLifetime)
	c := h.client(o)
	c.OpenBrowser = func(ctx context.Context, _ string) error { return nil } // the person never comes
	c.Options.AuthTimeout = time.Second
	if _, err := c.Token(t.Context()); err == nil {
		t.Fatal("no error")
	}
	if c := h.idp.Counts(); c.RefreshRejected != 1 {
		t.Fatalf("rejected refreshes = %d, want 1", c.RefreshRejected)
	}
	if e := h.entry(o); e.RefreshToken != "" {
		t.Error("the refused refresh token was kept after the failed login")
	}
}

// TestHeadersNotOnRedirectsElsewhere: --oidc-request-header goes to the
// provider, not to a host a redirect points to.
func TestHeadersNotOnRedirectsElsewhere(t *testing.T) {
	var got atomic.Value
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Header.Get("X-Secret"))
		w.Write([]byte(`{}`))
	}))
	defer other.Close()
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/keys", http.StatusFound)
	}))
	defer provider.Close()
	hc := &http.Client{Transport: headers{set: map[string]string{"X-Secret": "s"}}}
	var v map[string]any
	if err := getJSON(t.Context(), hc, provider.URL+"/keys", &v); err != nil {
		t.Fatal(err)
	}
	if s, _ := got.Load().(string); s != "" {
		t.Errorf("the redirect to another host carried the header: %q", s)
	}
}
