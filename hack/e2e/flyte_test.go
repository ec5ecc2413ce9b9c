package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkey/latchkey/hack/e2e/internal/harness"
)

// flyteAdmin is a stand-in for flyteadmin's unauthenticated metadata and its
// token endpoint, in front of Dex, behaving as the real flyteadmin was seen
// to: metadata in snake_case only with Accept: application/json (camelCase
// otherwise), and a refresh token it cannot use answered with 500
// {"error":"server_error"} (fosite), not invalid_grant.
type flyteAdmin struct {
	srv     *httptest.Server
	refused atomic.Int32 // refresh refusals rewritten to 500 server_error
}

func startFlyteAdmin(t *testing.T, dex *harness.Dex, caFile, clientID, redirect string) *flyteAdmin {
	t.Helper()
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	var meta map[string]any
	getJSON(t, hc, dex.Issuer+"/.well-known/openid-configuration", &meta)
	dexToken, _ := meta["token_endpoint"].(string)

	a := &flyteAdmin{}
	mux := http.NewServeMux()
	doc := func(w http.ResponseWriter, r *http.Request, d map[string]any) {
		if r.Header.Get("Accept") != "application/json" {
			out := map[string]any{}
			for k, v := range d {
				parts := strings.Split(k, "_")
				for i := 1; i < len(parts); i++ {
					parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
				}
				out[strings.Join(parts, "")] = v
			}
			d = out
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(d)
	}
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		doc(w, r, map[string]any{
			"issuer":                           dex.Issuer,
			"authorization_endpoint":           meta["authorization_endpoint"],
			"token_endpoint":                   a.srv.URL + "/oauth2/token",
			"jwks_uri":                         meta["jwks_uri"],
			"response_types_supported":         []string{"code"},
			"grant_types_supported":            []string{"client_credentials", "refresh_token", "authorization_code"},
			"code_challenge_methods_supported": []string{"S256"},
		})
	})
	mux.HandleFunc("GET /config/v1/flyte_client", func(w http.ResponseWriter, r *http.Request) {
		doc(w, r, map[string]any{
			"client_id": clientID, "redirect_uri": redirect, "scopes": []string{"openid", "offline_access", "email"},
			"authorization_metadata_key": "flyte-authorization", "audience": "",
		})
	})
	mux.HandleFunc("POST /oauth2/token", func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, dexToken, r.Body)
		req.Header = r.Header.Clone()
		resp, err := hc.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusBadRequest && (bytes.Contains(body, []byte(`"invalid_grant"`)) || bytes.Contains(body, []byte(`"invalid_request"`))) {
			a.refused.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"error":"server_error"}`))
			return
		}
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		w.Write(body)
	})
	a.srv = httptest.NewServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

// TestFlyteAdminWithDex runs `latchkey token` as flytectl's ExternalCommand
// would, against a Flyte admin stand-in in front of Dex, with Chromium: the
// login from the admin's two documents (Flyte's fixed localhost redirect),
// the cache, and after the refresh token became unusable (Dex restarted, as
// flyteadmin's after an hour idle) the admin's 500 server_error: one new
// login, not an error on every call until logout. status then names the
// client, scopes and issuer the login used.
func TestFlyteAdminWithDex(t *testing.T) {
	dexBin := need(t, "E2E_DEX", "dex")
	latchkey := need(t, "LATCHKEY_BIN")
	chromium := need(t, "E2E_CHROMIUM", "chromium", "chromium-browser", "google-chrome")
	dir := t.TempDir()
	pki, err := harness.NewPKI(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	ttl := 20 * time.Second
	dex := harness.StartDex(t, harness.DexOptions{Bin: dexBin, Dir: dir, PKI: pki, IDTokenTTL: ttl, User: e2eUser})
	driver := buildDriver(t, dir, "./cmd/browser-chromedp")
	redirect := "http://localhost:" + strconv.Itoa(harness.FreePort(t)) + "/callback"
	admin := startFlyteAdmin(t, dex, pki.CACert, harness.PublicClient, redirect)

	blog := filepath.Join(dir, "browser.log")
	cacheDir := filepath.Join(dir, "cache")
	args := []string{"token", "--flyte-endpoint=" + admin.srv.URL, "--certificate-authority=" + pki.CACert,
		"--token-cache-dir=" + cacheDir, "--browser-command=" + driver, "--authentication-timeout-sec=90"}
	env := []string{"E2E_BROWSER_LOG=" + blog, "E2E_LOGIN_USER=" + e2eUser.Email, "E2E_LOGIN_PASSWORD=" + e2eUser.Password,
		"E2E_LOGIN_CA=" + pki.CACert, "E2E_CHROMIUM=" + chromium}
	runs := func() int {
		b, _ := os.ReadFile(blog)
		return strings.Count(string(b), "\n")
	}
	token := func() string {
		t.Helper()
		return strings.TrimSpace(string(runLatchkey(t, latchkey, args, "", env...)))
	}

	first := token()
	if c := claims(t, first); c["iss"] != dex.Issuer || c["aud"] != harness.PublicClient || runs() != 1 {
		t.Fatalf("first token: iss=%v aud=%v, %d browser runs; want Dex's access token for %s after one login", c["iss"], c["aud"], runs(), harness.PublicClient)
	}
	mark := dex.Proxy.Mark()
	if again := token(); again != first || len(dex.Proxy.Since(mark)) != 0 {
		t.Error("the second call was not served from the cache")
	}

	// The refresh token becomes unusable; the access token expires.
	dex.Restart()
	waitTTL(t, time.Now(), ttl)
	second := token()
	if second == first || runs() != 2 || admin.refused.Load() != 1 {
		t.Errorf("after the 500: new token %v, %d browser runs, %d refusals at the admin; want one new login", second != first, runs(), admin.refused.Load())
	}

	var st []struct {
		Issuer   string   `json:"issuer"`
		ClientID string   `json:"client_id"`
		Scopes   []string `json:"scopes"`
	}
	if err := json.Unmarshal(runLatchkey(t, latchkey, []string{"status", "--json", "--token-cache-dir=" + cacheDir}, ""), &st); err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Issuer != dex.Issuer || st[0].ClientID != harness.PublicClient || strings.Join(st[0].Scopes, " ") != "openid offline_access email" {
		t.Errorf("status = %+v, want Dex's issuer, the advertised client and scopes", st)
	}
}
