package plugin

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkey/latchkey/plugin/idptest"
)

// TestDiscoveryRefusesDowngradedEndpoints: an https issuer whose metadata
// sends tokens over plain http (to anywhere but loopback) is refused.
func TestDiscoveryRefusesDowngradedEndpoints(t *testing.T) {
	idp := idptest.NewServer(idptest.Config{TLS: true, Intercept: func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != idptest.DiscoveryPath {
			return false
		}
		host := "http://idp.example.com"
		iss := "https://" + r.Host
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{
			"issuer": iss, "authorization_endpoint": iss + "/authorize", "token_endpoint": host + "/token", "jwks_uri": iss + "/keys",
		})
		return true
	}})
	defer idp.Close()
	_, err := discover(t.Context(), idp.Client(), idp.URL, time.Now())
	if !errors.Is(err, ErrDiscovery) || !strings.Contains(err.Error(), "token_endpoint") {
		t.Errorf("err = %v, want ErrDiscovery naming token_endpoint", err)
	}
}

// TestProviderClientRedirects: a token request is never redirected (a 307
// would resend the refresh token elsewhere), and no redirect leaves https.
func TestProviderClientRedirects(t *testing.T) {
	var elsewhere atomic.Int32
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) }))
	defer sink.Close()
	redirector := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, sink.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()
	hc, err := newHTTPClient(&Options{})
	if err != nil {
		t.Fatal(err)
	}
	hc.Transport.(*http.Transport).TLSClientConfig = redirector.Client().Transport.(*http.Transport).TLSClientConfig
	for _, method := range []string{http.MethodPost, http.MethodGet} {
		req, _ := http.NewRequestWithContext(t.Context(), method, redirector.URL+"/token", strings.NewReader("refresh_token=x"))
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			t.Errorf("%s: the redirect was followed", method)
		}
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("%d requests reached the redirect target", n)
	}

	// A POST is not redirected within https either: the method rule, not
	// the downgrade rule, keeps the refresh token home.
	tlsSink := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) }))
	defer tlsSink.Close()
	to := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, tlsSink.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer to.Close()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, to.URL+"/token", strings.NewReader("refresh_token=x"))
	if resp, err := hc.Do(req); err == nil {
		resp.Body.Close()
		t.Error("POST: an https -> https 307 was followed")
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("%d requests reached the https redirect target", n)
	}
}

// TestResponseSizeLimits: what the provider sends is read up to 1 MiB;
// larger metadata or token responses fail instead of filling memory.
func TestResponseSizeLimits(t *testing.T) {
	pad := strings.Repeat("a", maxTokenResponseBytes)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPost {
			w.Write([]byte(`{"access_token":"at","token_type":"Bearer","expires_in":60,"pad":"` + pad + `"}`))
			return
		}
		w.Write([]byte(`{"issuer":"x","pad":"` + pad + `"}`))
	}))
	defer srv.Close()
	var v map[string]any
	if err := getJSON(t.Context(), srv.Client(), srv.URL+"/.well-known/openid-configuration", &v); err == nil {
		t.Error("metadata over 1 MiB was read")
	}
	tc := &tokenClient{hc: srv.Client(), clientID: "c", now: time.Now}
	if _, err := tc.token(t.Context(), srv.URL+"/token", url.Values{"grant_type": {"refresh_token"}}); err == nil {
		t.Error("a token response over 1 MiB was read")
	}
}

// TestRefreshForAnotherSubject: OpenID Connect Core §12.2, a refreshed ID
// token must be about the same person.
func TestRefreshForAnotherSubject(t *testing.T) {
	h := newHarness(t, idptest.Config{})
	o := h.options()
	h.mustToken(o)
	h.idp.Update(func(c *idptest.Config) { c.Subject = "someone-else" })
	h.clock.Advance(2 * idptest.DefaultTokenLifetime)
	_, err := h.token(o)
	if err == nil || !strings.Contains(err.Error(), "someone-else") {
		t.Errorf("err = %v, want a subject mismatch", err)
	}
	if got := h.browsers.Load(); got != 1 {
		t.Errorf("browsers opened = %d, want 1", got)
	}
}

// TestUnsignedIDToken: an unsecured ID token (alg none) is refused with
// words a person understands; LemonLDAP::NG's, told not to sign, was
// reported as "compact JWS format must have three parts".
func TestUnsignedIDToken(t *testing.T) {
	payload := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"https://i","sub":"s","aud":"c","exp":4102444800}`))
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	l := &login{provider: &Provider{Issuer: "https://i"}, clientID: "c"}
	for _, raw := range []string{header + "." + payload, header + "." + payload + "."} {
		_, err := verifyIDToken(t.Context(), http.DefaultClient, time.Now, l, raw, "")
		if err == nil || !strings.Contains(err.Error(), "not signed") {
			t.Errorf("verify %q: %v, want an error saying the token is not signed", raw, err)
		}
	}
}

// TestIDTokenForAnotherLogin: an ID token signed by the provider's real key
// is still refused when it was not minted for this login: another login's
// nonce, another client's audience, or an azp that is not this client
// (OpenID Connect Core §3.1.3.7 items 3-5, 11). Nothing is cached.
func TestIDTokenForAnotherLogin(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(map[string]any)
		ok     bool
	}{
		{"unchanged", func(c map[string]any) { c["extra"] = "x" }, true},
		{"another login's nonce", func(c map[string]any) { c["nonce"] = "n-other" }, false},
		{"another client's audience", func(c map[string]any) { c["aud"] = "other"; delete(c, "azp") }, false},
		{"two audiences, no azp", func(c map[string]any) { c["aud"] = []string{idptest.DefaultClientID, "other"}; delete(c, "azp") }, false},
		{"azp of another client", func(c map[string]any) { c["azp"] = "other" }, false},
		{"two audiences, azp this client", func(c map[string]any) { c["aud"] = []string{idptest.DefaultClientID, "other"} }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, idptest.Config{IDTokenClaims: tc.change})
			h.denials = true // the browser may see the failed login
			o := h.options()
			_, err := h.token(o)
			if tc.ok {
				if err != nil {
					t.Fatalf("Token: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "verify ID token") {
				t.Fatalf("err = %v, want an ID token verification error", err)
			}
			if e := h.entry(o); e != nil && e.IDToken != "" {
				t.Error("the refused ID token was cached")
			}
		})
	}
}

// TestIssuerTrailingSlash: an issuer that differs from the configured one
// only by a trailing slash (LemonLDAP::NG's has one) is still refused, and
// the error names the flag that fixes it.
func TestIssuerTrailingSlash(t *testing.T) {
	h := newHarness(t, idptest.Config{})
	o := h.options()
	o.IssuerURL += "/"
	_, err := h.token(o)
	if !errors.Is(err, ErrDiscovery) || !strings.Contains(err.Error(), "--oidc-issuer-url="+h.idp.URL) || h.browsers.Load() != 0 {
		t.Errorf("Token = %v, want ErrDiscovery naming --oidc-issuer-url=%s", err, h.idp.URL)
	}
}
