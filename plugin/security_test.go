package plugin

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
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
