package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchkey/latchkey/hack/e2e/internal/harness"
)

// TestDexContract checks, without latchkey, the Dex behaviour the scenarios
// rely on: the generated configuration starts, the browser driver logs in
// through the counting proxy, the ID token carries email and groups, the
// access token is a JWT for the client, refresh tokens rotate on every use
// and a superseded one is refused, and a restart forgets refresh tokens.
func TestDexContract(t *testing.T) {
	dexBin, err := harness.LookBin("E2E_DEX", "dex")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	dir := t.TempDir()
	pki, err := harness.NewPKI(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	done := phase(t, "start Dex")
	dex := harness.StartDex(t, harness.DexOptions{Bin: dexBin, Dir: dir, PKI: pki, IDTokenTTL: time.Minute, User: e2eUser})
	done()
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/browser-http")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build driver: %v\n%s", err, out)
	}
	caPEM, err := os.ReadFile(pki.CACert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}

	var meta struct {
		TokenEndpoint string   `json:"token_endpoint"`
		AuthEndpoint  string   `json:"authorization_endpoint"`
		Methods       []string `json:"code_challenge_methods_supported"`
	}
	getJSON(t, hc, dex.Issuer+"/.well-known/openid-configuration", &meta)
	if !strings.HasPrefix(meta.TokenEndpoint, dex.Issuer) || !slices.Contains(meta.Methods, "S256") {
		t.Fatalf("discovery = %+v", meta)
	}

	codes := make(chan string, 1)
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		codes <- r.URL.Query().Get("code")
		fmt.Fprint(w, "ok")
	}))
	defer cb.Close()
	redirect := cb.URL + "/callback"
	authURL := meta.AuthEndpoint + "?" + url.Values{
		"client_id":     {harness.PublicClient},
		"redirect_uri":  {redirect},
		"response_type": {"code"},
		"scope":         {"openid email groups offline_access"},
		"state":         {"state-1"},
	}.Encode()
	login := exec.Command(filepath.Join(dir, "browser-http"), authURL)
	login.Env = append(os.Environ(), "E2E_LOGIN_USER="+e2eUser.Email, "E2E_LOGIN_PASSWORD="+e2eUser.Password, "E2E_LOGIN_CA="+pki.CACert)
	if out, err := login.CombinedOutput(); err != nil {
		t.Fatalf("login: %v\n%s", err, out)
	}
	code := <-codes

	type tokens struct {
		IDToken      string `json:"id_token"`
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		Error        string `json:"error"`
	}
	token := func(form url.Values) (int, tokens) {
		t.Helper()
		form.Set("client_id", harness.PublicClient)
		resp, err := hc.PostForm(meta.TokenEndpoint, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tk tokens
		if err := json.NewDecoder(resp.Body).Decode(&tk); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, tk
	}
	status, tk := token(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}})
	if status != 200 || tk.RefreshToken == "" {
		t.Fatalf("code exchange: %d %+v", status, tk.Error)
	}
	id := claims(t, tk.IDToken)
	if id["email"] != e2eUser.Email || id["aud"] != harness.PublicClient || id["iss"] != dex.Issuer {
		t.Errorf("ID token claims = %v", id)
	}
	groups, _ := id["groups"].([]any)
	if len(groups) != 2 || groups[0] != "e2e-team" {
		t.Errorf("groups = %v, want [e2e-team e2e-other]", id["groups"])
	}
	if at := claims(t, tk.AccessToken); at["aud"] != harness.PublicClient || at["email"] != e2eUser.Email {
		t.Errorf("access token claims = %v", at)
	}

	// Rotation: every refresh returns a new refresh token; the old one is refused.
	status, tk2 := token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tk.RefreshToken}})
	if status != 200 || tk2.RefreshToken == "" || tk2.RefreshToken == tk.RefreshToken {
		t.Fatalf("refresh: status %d, rotated %v", status, tk2.RefreshToken != tk.RefreshToken)
	}
	if status, bad := token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tk.RefreshToken}}); status == 200 {
		t.Errorf("superseded refresh token accepted")
	} else {
		t.Logf("superseded refresh token: %d %s", status, bad.Error)
	}
	if got := harness.CountGrant(dex.Proxy.Tokens(), "refresh_token"); got != 2 {
		t.Errorf("proxy counted %d refreshes, want 2", got)
	}

	done = phase(t, "restart Dex")
	dex.Restart()
	done()
	if status, bad := token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tk2.RefreshToken}}); status == 200 {
		t.Errorf("refresh token survived a restart of memory-storage Dex")
	} else {
		t.Logf("refresh after restart: %d %s", status, bad.Error)
	}
}

func getJSON(t *testing.T, hc *http.Client, u string, v any) {
	t.Helper()
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}
