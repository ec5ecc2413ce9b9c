package plugin

import (
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/latchkey/latchkey/cache"
	"github.com/latchkey/latchkey/plugin/idptest"
)

// fakeFlyte is a Flyte admin service reduced to its two unauthenticated
// metadata endpoints and, as flyteadmin's built-in authorization server is,
// its token endpoint, in front of an idptest provider that does the OAuth.
// It behaves as the real flyteadmin was seen to: metadata in snake_case
// only with Accept: application/json (camelCase otherwise); an unusable
// refresh token answered with 500 {"error":"server_error"}; no gRPC on its
// HTTP port (GRPCAddr is a port that speaks no HTTP, as a sandbox's).
type fakeFlyte struct {
	URL      string
	GRPCAddr string

	mu       sync.Mutex
	metadata map[string]any // RFC 8414 metadata
	client   map[string]any // /config/v1/flyte_client
	hits     int
}

func newFakeFlyte(t *testing.T, idp *idptest.Server, redirectURI string) *fakeFlyte {
	t.Helper()
	f := &fakeFlyte{
		metadata: map[string]any{
			"issuer":                           idp.URL,
			"authorization_endpoint":           idp.URL + idptest.AuthorizePath,
			"token_endpoint":                   "", // set below: the admin's own
			"jwks_uri":                         idp.URL + idptest.JWKSPath,
			"revocation_endpoint":              idp.URL + idptest.RevocationPath,
			"device_authorization_endpoint":    idp.URL + idptest.DeviceCodePath,
			"response_types_supported":         []string{"code"},
			"grant_types_supported":            []string{"authorization_code", "refresh_token"},
			"code_challenge_methods_supported": []string{"S256"},
			"scopes_supported":                 []string{"all", "offline"},
		},
		client: map[string]any{
			"client_id":                  idptest.DefaultClientID,
			"redirect_uri":               redirectURI,
			"scopes":                     []string{"openid", "offline"}, // idptest insists on openid
			"authorization_metadata_key": "flyte-authorization",
			"service_http_endpoint":      "",
			"audience":                   "https://flyte.example.com/api",
		},
	}
	mux := http.NewServeMux()
	serve := func(doc func() map[string]any) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			f.mu.Lock()
			f.hits++
			d := doc()
			f.mu.Unlock()
			if d == nil {
				http.NotFound(w, r)
				return
			}
			if r.Header.Get("Accept") != "application/json" {
				d = camelCase(d)
			}
			writeTestJSON(w, d)
		}
	}
	mux.Handle("GET "+FlyteMetadataPath, serve(func() map[string]any { return f.metadata }))
	mux.Handle("GET "+FlyteClientConfigPath, serve(func() map[string]any { return f.client }))
	mux.HandleFunc("POST /oauth2/token", func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, idp.URL+idptest.TokenPath, r.Body)
		req.Header = r.Header.Clone()
		resp, err := idp.Client().Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusBadRequest && strings.Contains(string(body), `"invalid_grant"`) {
			// flyteadmin (fosite) answers a refresh token it cannot use so.
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"error":"server_error"}`))
			return
		}
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		w.Write(body)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	f.metadata["token_endpoint"] = srv.URL + "/oauth2/token"
	grpc, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { grpc.Close() })
	go func() {
		for {
			c, err := grpc.Accept()
			if err != nil {
				return
			}
			c.Close() // no HTTP here
		}
	}()
	f.GRPCAddr = grpc.Addr().String()
	return f
}

// camelCase returns d with its keys in camelCase, as flyteadmin's gRPC
// gateway writes them without Accept: application/json.
func camelCase(d map[string]any) map[string]any {
	out := make(map[string]any, len(d))
	for k, v := range d {
		parts := strings.Split(k, "_")
		for i := 1; i < len(parts); i++ {
			if parts[i] != "" {
				parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
			}
		}
		out[strings.Join(parts, "")] = v
	}
	return out
}

func writeTestJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Write(b)
}

func (f *fakeFlyte) Hits() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits
}

func (f *fakeFlyte) set(doc, k string, v any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.metadata
	if doc == "client" {
		m = f.client
	}
	if v == nil {
		delete(m, k)
	} else {
		m[k] = v
	}
}

// localhostRedirect returns http://localhost:<free port>/callback, the form
// of Flyte's fixed redirect URI.
func localhostRedirect(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return "http://localhost:" + strconv.Itoa(port) + "/callback"
}

func (h *harness) flyteOptions(f *fakeFlyte) Options {
	return Options{
		FlyteEndpoint:  f.URL,
		UseAccessToken: true,
		CacheDir:       h.dir,
		AuthTimeout:    h.options().AuthTimeout,
	}
}

func TestFlyteLoginDiscoversEverything(t *testing.T) {
	h := newHarness(t, idptest.Config{})
	redirect := localhostRedirect(t)
	f := newFakeFlyte(t, h.idp, redirect)
	o := h.flyteOptions(f)
	// The access token's expiry after a browser login comes from
	// x/oauth2, which reads the real clock.
	h.clock.ns.Store(time.Now().UnixNano())

	tok := h.mustToken(o)
	e := h.entry(o)
	if tok.Value != e.AccessToken || tok.Value == "" {
		t.Error("a Flyte login does not output the access token")
	}
	a := h.idp.LastAuthorize()
	want := map[string]string{
		"client_id":    idptest.DefaultClientID,
		"redirect_uri": redirect, // verbatim: localhost, Flyte's port
		"scope":        "openid offline",
		"audience":     "https://flyte.example.com/api",
	}
	got := map[string]string{}
	for k := range want {
		got[k] = a.Get(k)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("authorization request (-want +got):\n%s", diff)
	}
	// flytekit's add_request_auth_code_params_to_request_access_token_params.
	tr := h.idp.LastToken()
	for _, k := range []string{"client_id", "redirect_uri", "scope", "state", "audience", "code_challenge", "code_challenge_method"} {
		if tr.Get(k) == "" || tr.Get(k) != a.Get(k) {
			t.Errorf("token request %s = %q, want the authorization request's %q", k, tr.Get(k), a.Get(k))
		}
	}
	if p := stored(t, e); e.Key == nil || e.Key.Issuer != "flyte:"+f.URL || p.Issuer != h.idp.URL || e.Issuer != h.idp.URL ||
		p.Flyte == nil || p.Flyte.Endpoint != f.URL || p.Flyte.AuthorizationMetadataKey != "flyte-authorization" {
		t.Errorf("entry key %+v, issuer %q, provider issuer %q, client config %+v; want the Flyte key, the minting issuer and the cached client config",
			e.Key, e.Issuer, p.Issuer, p.Flyte)
	}

	// The cached path: no network at all, not even the Flyte metadata.
	before, hits := h.idp.Counts(), f.Hits()
	if again := h.mustToken(o); again.Value != tok.Value {
		t.Error("second call did not return the cached token")
	}
	if after := h.idp.Counts(); after != before || f.Hits() != hits {
		t.Errorf("cached call talked to the network: IdP %+v -> %+v, Flyte %d -> %d requests", before, after, hits, f.Hits())
	}

	// A refresh uses the cached metadata and client configuration.
	h.clock.Advance(idptest.DefaultTokenLifetime + time.Minute)
	if next := h.mustToken(o); next.Value == tok.Value {
		t.Error("expired token was not refreshed")
	}
	if got := h.idp.Counts(); got.Refresh != before.Refresh+1 || got.Discovery != 0 || f.Hits() != hits {
		t.Errorf("refresh: IdP %+v, Flyte %d -> %d requests; want one refresh and no discovery", got, hits, f.Hits())
	}
	if got := h.browsers.Load(); got != 1 {
		t.Errorf("browsers opened = %d, want 1", got)
	}
}

func TestFlyteFlagsOverrideDiscovery(t *testing.T) {
	h := newHarness(t, idptest.Config{ClientID: "my-cli"})
	f := newFakeFlyte(t, h.idp, localhostRedirect(t))
	o := h.flyteOptions(f)
	o.ClientID = "my-cli"
	o.ExtraScopes = []string{"openid", "email"}
	o.RedirectURL = strings.Replace(localhostRedirect(t), "localhost", "127.0.0.1", 1)
	o.AuthParams = map[string]string{"audience": "mine"}
	o.IssuerURL = h.idp.URL // pinned, and right

	h.mustToken(o)
	a := h.idp.LastAuthorize()
	want := map[string]string{"client_id": "my-cli", "scope": "openid email", "redirect_uri": o.RedirectURL, "audience": "mine"}
	got := map[string]string{}
	for k := range want {
		got[k] = a.Get(k)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("authorization request (-want +got):\n%s", diff)
	}
	plain := h.flyteOptions(f)
	if o.Key().ID() == plain.Key().ID() {
		t.Error("explicit client id and scopes do not change the cache key")
	}

	// A pinned issuer that the metadata does not name is refused before
	// any browser opens.
	o.IssuerURL = "https://issuer.example.com"
	o.ForceRefresh = true
	_, err := h.token(o)
	if !errors.Is(err, ErrDiscovery) || !strings.Contains(err.Error(), "--oidc-issuer-url") {
		t.Errorf("pinned wrong issuer: %v, want ErrDiscovery naming --oidc-issuer-url", err)
	}
	if got := h.browsers.Load(); got != 1 {
		t.Errorf("browsers opened = %d, want 1", got)
	}
}

func TestFlyteResendAuthParamsOff(t *testing.T) {
	h := newHarness(t, idptest.Config{})
	f := newFakeFlyte(t, h.idp, localhostRedirect(t))
	o := h.flyteOptions(f)
	off := false
	o.ResendAuthParams = &off
	h.mustToken(o)
	if tr := h.idp.LastToken(); tr.Has("state") || tr.Has("scope") || tr.Has("code_challenge") {
		t.Errorf("with ResendAuthParams false the token request resent the authorization parameters: %q", keys(tr))
	}
}

func keys[M ~map[string]V, V any](m M) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestFlyteBadMetadata(t *testing.T) {
	for _, tc := range []struct {
		name     string
		doc, key string
		value    any
	}{
		{"no issuer", "metadata", "issuer", nil},
		{"no token endpoint", "metadata", "token_endpoint", nil},
		{"plain PKCE only", "metadata", "code_challenge_methods_supported", []string{"plain"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, idptest.Config{})
			f := newFakeFlyte(t, h.idp, localhostRedirect(t))
			f.set(tc.doc, tc.key, tc.value)
			_, err := h.token(h.flyteOptions(f))
			if !errors.Is(err, ErrDiscovery) {
				t.Errorf("Token: %v, want ErrDiscovery", err)
			}
			if got := h.browsers.Load(); got != 0 {
				t.Errorf("browsers opened = %d, want 0", got)
			}
		})
	}
	t.Run("no client config", func(t *testing.T) {
		h := newHarness(t, idptest.Config{})
		f := newFakeFlyte(t, h.idp, localhostRedirect(t))
		f.mu.Lock()
		f.client = nil
		f.mu.Unlock()
		_, err := h.token(h.flyteOptions(f))
		if !errors.Is(err, ErrDiscovery) || !strings.Contains(err.Error(), FlyteClientConfigPath) {
			t.Errorf("Token: %v, want ErrDiscovery naming %s", err, FlyteClientConfigPath)
		}
	})
}

// TestFlyteMetadataDowngrade: an https Flyte endpoint whose metadata sends
// tokens or the browser over plain http (off loopback) is refused before
// anything is sent there, as an https issuer's discovery is.
func TestFlyteMetadataDowngrade(t *testing.T) {
	for _, name := range []string{"token_endpoint", "authorization_endpoint", "revocation_endpoint"} {
		t.Run(name, func(t *testing.T) {
			admin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				base := "https://" + r.Host
				doc := map[string]string{
					"issuer": base, "authorization_endpoint": base + "/authorize", "token_endpoint": base + "/token",
					"revocation_endpoint": base + "/revoke",
				}
				doc[name] = "http://idp.example.com/x"
				w.Header().Set("Content-Type", "application/json")
				json.NewEncoder(w).Encode(doc)
			}))
			defer admin.Close()
			_, err := discoverFlyte(t.Context(), admin.Client(), admin.URL, "", time.Now())
			if !errors.Is(err, ErrDiscovery) || !strings.Contains(err.Error(), name) {
				t.Errorf("err = %v, want ErrDiscovery naming %s", err, name)
			}
		})
	}
}

func TestFlyteLogoutRevokesWithDiscoveredClient(t *testing.T) {
	h := newHarness(t, idptest.Config{})
	f := newFakeFlyte(t, h.idp, localhostRedirect(t))
	o := h.flyteOptions(f)
	h.mustToken(o)
	res, err := h.client(o).Logout(t.Context())
	if err != nil || res.RevokeErr != nil {
		t.Fatalf("Logout: %v, %+v", err, res)
	}
	if diff := cmp.Diff([]string{"refresh_token", "access_token"}, res.Revoked); diff != "" {
		t.Errorf("revoked (-want +got):\n%s", diff)
	}
	if got := h.idp.Counts().Revocation; got != 2 {
		t.Errorf("revocation requests = %d, want 2", got)
	}
}

func TestFlyteFlagsAndKey(t *testing.T) {
	var o Options
	fs := flag.NewFlagSet("get-token", flag.ContinueOnError)
	o.RegisterFlags(fs)
	if err := fs.Parse([]string{"--flyte-endpoint=dns:///flyte.example.com/", "--resend-auth-params=false", "--token-cache-storage=keyring"}); err != nil {
		t.Fatal(err)
	}
	if (flyteSource{&o}).endpoint() != "https://flyte.example.com" || !o.UseAccessToken || o.ResendAuthParams == nil || *o.ResendAuthParams || o.Storage != "keyring" {
		t.Errorf("parsed %+v", o)
	}
	if err := o.Validate(); err != nil {
		t.Errorf("Validate with only --flyte-endpoint: %v", err)
	}
	k := o.Key()
	want := cache.Key{Issuer: "flyte:https://flyte.example.com"}
	if diff := cmp.Diff(want, k); diff != "" {
		t.Errorf("Key (-want +got):\n%s", diff)
	}

	// FromKey is the inverse of Key, for Flyte and plain logins alike.
	for _, o := range []Options{
		{FlyteEndpoint: "https://flyte.example.com", ClientID: "c", ExtraScopes: []string{"all", "openid"}, UseAccessToken: true},
		{IssuerURL: "https://issuer.example.com", ClientID: "k", ExtraScopes: []string{"email"}, AuthParams: map[string]string{"a": "b"}},
	} {
		var back Options
		back.FromKey(o.Key())
		if back.Key().ID() != o.Key().ID() {
			t.Errorf("FromKey(%+v) gives key %+v", o.Key(), back.Key())
		}
	}

	for _, bad := range []Options{{FlyteEndpoint: "https://"}, {FlyteEndpoint: "ftp://x"}, {FlyteEndpoint: "https://f", IssuerURL: "x"}} {
		if err := bad.Validate(); !errors.Is(err, ErrUsage) {
			t.Errorf("Validate(%+v) = %v, want ErrUsage", bad, err)
		}
	}
}

func TestKeyringClient(t *testing.T) {
	if os.Getenv("LATCHKEY_KEYRING_TEST") != "1" {
		t.Skip("set LATCHKEY_KEYRING_TEST=1 with a reachable OS keyring (hack/keyring-test.sh)")
	}
	h := newHarness(t, idptest.Config{})
	o := h.options()
	o.Storage = "keyring"
	tok := h.mustToken(o)
	t.Cleanup(func() { h.client(o).Logout(t.Context()) })
	for name, content := range h.snapshot() {
		if strings.Contains(content, tok.Value) {
			t.Errorf("%s holds the token with --token-cache-storage=keyring", name)
		}
	}
	before := h.idp.Counts()
	if again := h.mustToken(o); again.Value != tok.Value {
		t.Error("second call did not return the token from the keyring")
	}
	if after := h.idp.Counts(); after != before {
		t.Errorf("cached call talked to the IdP: %+v -> %+v", before, after)
	}
	h.clock.Advance(idptest.DefaultTokenLifetime + time.Minute)
	if next := h.mustToken(o); next.Value == tok.Value {
		t.Error("refresh through the keyring did not return a new token")
	}
	if got := h.browsers.Load(); got != 1 {
		t.Errorf("browsers opened = %d, want 1", got)
	}
}

// TestFlyteIssuerSwitch: when a Flyte admin's metadata later names another
// issuer (an IdP switched, or a compromised endpoint), the tokens of the
// first are never sent to the second: no refresh there (the tokens are
// dropped and the person logs in there), and logout revokes at the issuer
// that minted them, with the metadata stored with them.
func TestFlyteIssuerSwitch(t *testing.T) {
	for _, what := range []string{"refresh", "logout"} {
		t.Run(what, func(t *testing.T) {
			h := newHarness(t, idptest.Config{})
			f := newFakeFlyte(t, h.idp, localhostRedirect(t))
			o := h.flyteOptions(f)
			h.mustToken(o)
			first := h.idp.Counts()

			other := idptest.NewServer(idptest.Config{Now: h.clock.Now})
			t.Cleanup(other.Close)
			for k, path := range map[string]string{"authorization_endpoint": idptest.AuthorizePath, "token_endpoint": idptest.TokenPath,
				"jwks_uri": idptest.JWKSPath, "revocation_endpoint": idptest.RevocationPath, "device_authorization_endpoint": idptest.DeviceCodePath} {
				f.set("metadata", k, other.URL+path)
			}
			f.set("metadata", "issuer", other.URL)
			// The stored metadata are a day old: the next renewal fetches
			// them again and finds the other issuer.
			h.clock.Advance(providerLifetime + time.Hour)

			switch what {
			case "refresh":
				tok := h.mustToken(o)
				if got := other.Counts().Refresh; got != 0 {
					t.Errorf("%d refresh requests reached the new issuer with the old issuer's refresh token", got)
				}
				if got := h.idp.Counts().Refresh; got != first.Refresh {
					t.Errorf("refresh requests at the old issuer: %d, want %d", got, first.Refresh)
				}
				if got := h.browsers.Load(); got != 2 {
					t.Errorf("browsers opened = %d, want 2 (a login at the new issuer)", got)
				}
				if e := h.entry(o); e.Issuer != other.URL || tok.Value != e.AccessToken {
					t.Errorf("entry minted by %q, want %q", e.Issuer, other.URL)
				}
			case "logout":
				res, err := h.client(o).Logout(t.Context())
				if err != nil || res.RevokeErr != nil {
					t.Fatalf("Logout: %v, %+v", err, res)
				}
				if got := other.Counts().Revocation; got != 0 {
					t.Errorf("%d revocation requests sent the tokens to the new issuer", got)
				}
				if got := h.idp.Counts().Revocation; got != 2 {
					t.Errorf("revocations at the issuer that minted the tokens = %d, want 2", got)
				}
			}
		})
	}
}

// TestFlyteStatus: status shows the client, scopes and issuer a Flyte login
// used, as resolved from the deployment (the cache key holds only the
// flags: an empty client id and no scopes).
func TestFlyteStatus(t *testing.T) {
	h := newHarness(t, idptest.Config{})
	f := newFakeFlyte(t, h.idp, localhostRedirect(t))
	h.mustToken(h.flyteOptions(f))
	st, err := (&Client{Options: Options{CacheDir: h.dir}}).Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Issuer != h.idp.URL || st[0].ClientID != idptest.DefaultClientID ||
		!cmp.Equal(st[0].Scopes, []string{"openid", "offline"}) {
		t.Errorf("Status = %+v, want issuer %s, client %s, scopes [openid offline]", st, h.idp.URL, idptest.DefaultClientID)
	}
}

// TestFlyteAfterAnHourIdle: flyteadmin answers a refresh token it cannot
// use (expired after its 60 minutes, or signed with keys from before a
// restart) with 500 server_error. latchkey took that for an outage: every
// call failed, even with --force-refresh, until logout. Now the person gets
// one new login.
func TestFlyteAfterAnHourIdle(t *testing.T) {
	h := newHarness(t, idptest.Config{})
	f := newFakeFlyte(t, h.idp, localhostRedirect(t))
	o := h.flyteOptions(f)
	h.mustToken(o)
	h.idp.RevokeAll() // what an hour idle or a restart does to the refresh token
	h.clock.Advance(2 * idptest.DefaultTokenLifetime)
	tok, err := h.token(o)
	if err != nil || h.browsers.Load() != 2 || tok.Value != h.entry(o).AccessToken {
		t.Errorf("after the 500: %v, %d browsers; want one new login", err, h.browsers.Load())
	}
	if rr := h.idp.Counts().RefreshRejected; rr != 1 {
		t.Errorf("refused refreshes = %d, want 1", rr)
	}
}

// TestFakeFlyteCase: the fake admin serves camelCase metadata unless asked
// for JSON, as flyteadmin does; latchkey asks (every Flyte test logs in).
func TestFakeFlyteCase(t *testing.T) {
	h := newHarness(t, idptest.Config{})
	f := newFakeFlyte(t, h.idp, localhostRedirect(t))
	for accept, key := range map[string]string{"": "authorizationEndpoint", "application/json": "authorization_endpoint"} {
		req, _ := http.NewRequest(http.MethodGet, f.URL+FlyteMetadataPath, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		resp.Body.Close()
		if _, ok := m[key]; !ok {
			t.Errorf("Accept %q: no %s in %v", accept, key, keys(m))
		}
	}
	if _, err := h.token(h.flyteOptions(f)); err != nil {
		t.Errorf("login through the admin's metadata: %v", err)
	}
}

// TestFlyteAudienceRefused: a deployment that advertises an audience its
// own authorization server does not allow for the client gets invalid_request
// "Requested audience ... has not been whitelisted" (flytekit sends the
// audience; flytectl never does): the message names the audience and how to
// send another or none.
func TestFlyteAudienceRefused(t *testing.T) {
	h := newHarness(t, idptest.Config{AllowedAudiences: []string{"https://other.example"}})
	h.denials = true
	f := newFakeFlyte(t, h.idp, localhostRedirect(t))
	_, err := h.token(h.flyteOptions(f))
	if err == nil || !strings.Contains(err.Error(), `"https://flyte.example.com/api"`) || !strings.Contains(err.Error(), "audience=") {
		t.Errorf("Token = %v, want the audience named and the flag to override it", err)
	}
	// With the override (another audience, or none), the login works.
	for _, aud := range []string{"https://other.example", ""} {
		o := h.flyteOptions(f)
		o.AuthParams = map[string]string{"audience": aud}
		if _, err := h.token(o); err != nil {
			t.Errorf("with --oidc-auth-request-extra-params=audience=%s: %v", aud, err)
		}
		if got, sent := h.idp.LastAuthorize()["audience"]; aud == "" && sent {
			t.Errorf("audience= sent audience %q", got)
		}
	}
}

// TestFlyteGRPCPort: a sandbox serves gRPC (flytectl's admin.endpoint) and
// the HTTP API on two ports; pointed at the gRPC one, latchkey says to give
// the HTTP one, and with it logs in.
func TestFlyteGRPCPort(t *testing.T) {
	h := newHarness(t, idptest.Config{})
	f := newFakeFlyte(t, h.idp, localhostRedirect(t))
	o := h.flyteOptions(f)
	o.FlyteEndpoint, o.Insecure = "dns:///"+f.GRPCAddr, true
	if _, err := h.token(o); !errors.Is(err, ErrDiscovery) || !strings.Contains(err.Error(), "--flyte-endpoint") {
		t.Errorf("Token at the gRPC port = %v, want ErrDiscovery naming --flyte-endpoint", err)
	}
	o.FlyteEndpoint = f.URL
	if _, err := h.token(o); err != nil {
		t.Errorf("at the HTTP port: %v", err)
	}
}

// TestFlytePinInKey: --flyte-endpoint=X --oidc-issuer-url=P is another login
// than --flyte-endpoint=X: it was served the token cached for X without a
// pin, minted by whatever issuer that was.
func TestFlytePinInKey(t *testing.T) {
	h := newHarness(t, idptest.Config{})
	f := newFakeFlyte(t, h.idp, localhostRedirect(t))
	plain := h.flyteOptions(f)
	h.mustToken(plain)
	pinned := h.flyteOptions(f)
	pinned.IssuerURL = "https://pinned.example"
	if pinned.Key().ID() == plain.Key().ID() {
		t.Fatal("the pinned and the unpinned login share a cache entry")
	}
	if tok, err := h.token(pinned); !errors.Is(err, ErrDiscovery) {
		t.Errorf("pinned Token = %v, %v; want the pin refused at discovery, not the cached token", tok, err)
	}
	var back Options
	back.FromKey(pinned.Key())
	if back.Key().ID() != pinned.Key().ID() || back.IssuerURL != pinned.IssuerURL {
		t.Errorf("FromKey(%+v) = %+v", pinned.Key(), back)
	}
}
