package plugin

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/latchkey/latchkey/plugin/idptest"
)

const testSecret = "s3cr3t-of-the-client"

// ccOptions are the options of a CI job: the client's own access token,
// its secret in a file.
func (h *harness) ccOptions(t *testing.T) Options {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := h.options()
	o.ExtraScopes = []string{"api"}
	o.GrantType = GrantClientCredentials
	o.ClientSecretFile = secret
	o.UseAccessToken = true
	o.AuthParams = map[string]string{"audience": "https://api.example", "resource": "urn:example:api"}
	return o
}

// TestClientCredentials: the client's own token for a CI job (RFC 6749
// §4.4): one token request with the scopes, the extra parameters and the
// secret from a file; served from the cache with no request while it is
// fresh; fetched again near its expiry; never a browser; a separate cache
// entry from a person's login with the same client.
func TestClientCredentials(t *testing.T) {
	h := newHarness(t, idptest.Config{ClientSecret: testSecret})
	o := h.ccOptions(t)
	tok := h.mustToken(o)
	cn := h.idp.Counts()
	if cn.ClientCredentials != 1 || h.browsers.Load() != 0 || cn.Authorize != 0 {
		t.Fatalf("client credentials: %d token requests, %d browsers, %d authorizations; want 1, 0, 0", cn.ClientCredentials, h.browsers.Load(), cn.Authorize)
	}
	form := h.idp.LastToken()
	want := map[string]string{"grant_type": "client_credentials", "scope": "api", "audience": "https://api.example", "resource": "urn:example:api"}
	for k, v := range want {
		if got := form.Get(k); got != v {
			t.Errorf("token request %s = %q, want %q", k, got, v)
		}
	}
	if form.Has("client_secret") || form.Has("refresh_token") {
		t.Errorf("token request form %v: the secret goes in the Authorization header", keys(form))
	}
	if e := h.entry(o); tok.Value != e.AccessToken || e.Key == nil || e.Key.Grant != GrantClientCredentials {
		t.Errorf("token is not the cached access token, or the entry's key %+v lacks the grant", e.Key)
	}
	if strings.Contains(strings.Join(h.files(), " "), testSecret) {
		t.Error("the client secret reached the cache")
	}

	// Cached: no request.
	if again := h.mustToken(o); again.Value != tok.Value || h.idp.Counts().ClientCredentials != 1 {
		t.Errorf("second call: new token %v, %d token requests", again.Value != tok.Value, h.idp.Counts().ClientCredentials)
	}
	// Near its expiry: one new request, no browser.
	h.clock.Advance(idptest.DefaultTokenLifetime - 5*time.Second)
	if again := h.mustToken(o); again.Value == tok.Value || h.idp.Counts().ClientCredentials != 2 || h.browsers.Load() != 0 {
		t.Errorf("near expiry: same token %v, %d token requests, %d browsers", again.Value == tok.Value, h.idp.Counts().ClientCredentials, h.browsers.Load())
	}

	// A person's login with the same client is another entry.
	person := h.options()
	person.ClientSecret = testSecret
	if person.Key().ID() == o.Key().ID() {
		t.Error("a person's login and the client's own token share a cache entry")
	}
}

// TestClientCredentialsParallel: N callers with a stale token cause one
// token request.
func TestClientCredentialsParallel(t *testing.T) {
	h := newHarness(t, idptest.Config{ClientSecret: testSecret})
	o := h.ccOptions(t)
	h.mustToken(o)
	h.clock.Advance(idptest.DefaultTokenLifetime)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := h.token(o)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := h.idp.Counts().ClientCredentials; got != 2 {
		t.Errorf("token requests = %d, want 2 (the first, and one for the 8 callers)", got)
	}
}

func TestClientCredentialsIDToken(t *testing.T) {
	t.Run("ID token asked for and given", func(t *testing.T) {
		h := newHarness(t, idptest.Config{ClientSecret: testSecret, ClientCredentialsIDToken: true})
		o := h.ccOptions(t)
		o.UseAccessToken = false
		tok := h.mustToken(o)
		if e := h.entry(o); tok.Value != e.IDToken || e.IDToken == "" {
			t.Error("the output is not the verified ID token")
		}
		if got := h.idp.LastToken().Get("scope"); got != "openid api" {
			t.Errorf("scope %q, want openid api", got)
		}
	})
	t.Run("no ID token", func(t *testing.T) {
		h := newHarness(t, idptest.Config{ClientSecret: testSecret})
		o := h.ccOptions(t)
		o.UseAccessToken = false
		_, err := h.token(o)
		if err == nil || !strings.Contains(err.Error(), "--oidc-use-access-token") {
			t.Errorf("Token = %v, want an error naming --oidc-use-access-token", err)
		}
	})
	t.Run("public client", func(t *testing.T) {
		h := newHarness(t, idptest.Config{ClientSecret: testSecret})
		o := h.ccOptions(t)
		o.ClientSecretFile = ""
		if _, err := h.token(o); !errors.Is(err, ErrUsage) || h.idp.Counts().ClientCredentials != 0 {
			t.Errorf("Token without a secret = %v, want ErrUsage and no request", err)
		}
	})
}

func TestClientSecretSources(t *testing.T) {
	file := filepath.Join(t.TempDir(), "s")
	if err := os.WriteFile(file, []byte("from-file\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string { return map[string]string{"CI_SECRET": "from-env"}[k] }
	for _, tt := range []struct {
		o       Options
		want    string
		wantErr bool
	}{
		{o: Options{ClientSecret: "flag"}, want: "flag"},
		{o: Options{ClientSecretFile: file}, want: "from-file"},
		{o: Options{ClientSecretEnv: "CI_SECRET"}, want: "from-env"},
		{o: Options{ClientSecretEnv: "UNSET"}, wantErr: true},
		{o: Options{ClientSecretFile: file + ".missing"}, wantErr: true},
		{o: Options{}, want: ""},
	} {
		got, err := tt.o.secret(getenv)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("secret(%+v) = %q, %v; want %q, error %v", tt.o, got, err, tt.want, tt.wantErr)
		}
	}
	o := Options{IssuerURL: "https://idp.example", ClientID: "c", ClientSecret: "a", ClientSecretEnv: "B"}
	if err := o.Validate(); !errors.Is(err, ErrUsage) {
		t.Errorf("two secret sources: Validate = %v, want ErrUsage", err)
	}
}

// TestRequestHeaders: --oidc-request-header goes with every request to
// the provider: discovery, keys, code exchange, refresh and revocation.
func TestRequestHeaders(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]string{}
	h := newHarness(t, idptest.Config{Intercept: func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path != idptest.AuthorizePath { // the browser's, not latchkey's
			seen[r.URL.Path+" "+r.FormValue("grant_type")] = r.Header.Get("Origin") + "|" + r.Header.Get("X-Tenant")
		}
		return false
	}})
	o := h.options()
	o.RequestHeaders = map[string]string{"Origin": "https://app.example", "X-Tenant": "t1"}
	h.mustToken(o)
	h.clock.Advance(idptest.DefaultTokenLifetime)
	h.mustToken(o)
	if _, err := h.client(o).Logout(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := map[string]string{}
	for _, k := range []string{idptest.DiscoveryPath + " ", idptest.JWKSPath + " ", idptest.TokenPath + " authorization_code",
		idptest.TokenPath + " refresh_token", idptest.RevocationPath + " "} {
		want[k] = "https://app.example|t1"
	}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("headers per request (-want +got):\n%s", diff)
	}
}

func TestKubeloginPairFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want map[string]string
	}{
		{[]string{"audience=a"}, map[string]string{"audience": "a"}},
		{[]string{"audience=a,b"}, map[string]string{"audience": "a,b"}}, // one '=': one pair
		{[]string{"audience=a,prompt=consent"}, map[string]string{"audience": "a", "prompt": "consent"}},
		{[]string{"a=1", `b="2"`}, map[string]string{"a": "1", "b": "2"}},
	} {
		var m map[string]string
		for _, a := range tt.args {
			if err := addPairs(&m, a); err != nil {
				t.Fatal(err)
			}
		}
		if diff := cmp.Diff(tt.want, m); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tt.args, diff)
		}
	}
	for _, bad := range []string{"novalue", "=v", "a=1,=2", `a=1,"b=2`} {
		var m map[string]string
		if err := addPairs(&m, bad); err == nil {
			t.Errorf("addPairs(%q) accepted", bad)
		}
	}
}

// files returns the contents of the cache directory's files.
func (h *harness) files() []string {
	var out []string
	for _, v := range h.snapshot() {
		out = append(out, v)
	}
	return out
}

// TestFlyteClientCredentials: flytectl's ClientSecret auth type through
// latchkey token: the client credentials grant at the token endpoint the
// Flyte deployment advertises, the secret from an environment variable.
func TestFlyteClientCredentials(t *testing.T) {
	h := newHarness(t, idptest.Config{ClientSecret: testSecret})
	f := newFakeFlyte(t, h.idp, localhostRedirect(t))
	o := h.flyteOptions(f)
	o.GrantType = GrantClientCredentials
	o.ClientSecretEnv = "FLYTE_SECRET"
	o.ExtraScopes = []string{"all"}
	c := h.client(o)
	c.Getenv = func(k string) string { return map[string]string{"FLYTE_SECRET": testSecret}[k] }
	tok, err := c.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	form := h.idp.LastToken()
	if form.Get("grant_type") != "client_credentials" || form.Get("scope") != "all" || form.Get("audience") != "https://flyte.example.com/api" {
		t.Errorf("token request %v", form)
	}
	if e := h.entry(o); tok.Value != e.AccessToken || h.browsers.Load() != 0 {
		t.Errorf("token is not the access token, or a browser opened")
	}
}
