package harness

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPKI(t *testing.T) {
	p, err := NewPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(p.CACert)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(caPEM)
	serving, err := tls.LoadX509KeyPair(p.ServingCert, p.ServingKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(serving.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"127.0.0.1", "::1", "localhost"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("serving cert for %s: %v", host, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "example.com"}); err == nil {
		t.Errorf("serving cert verifies for example.com")
	}
	admin, err := tls.LoadX509KeyPair(p.AdminCert, p.AdminKey)
	if err != nil {
		t.Fatal(err)
	}
	al, _ := x509.ParseCertificate(admin.Certificate[0])
	if _, err := al.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("admin cert: %v", err)
	}
	if got, want := al.Subject.Organization, []string{"system:masters"}; !cmp.Equal(got, want) {
		t.Errorf("admin organization = %q, want %q", got, want)
	}
}

func TestProxyCountsAndStops(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/dex/token" {
			w.Header().Set("Cache-Control", "max-age=20000, must-revalidate")
			w.WriteHeader(http.StatusOK)
			return
		}
		_ = r.ParseForm()
		if r.PostForm.Get("grant_type") == "refresh_token" && r.PostForm.Get("refresh_token") == "stale" {
			http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"id_token": "i", "access_token": "a", "refresh_token": "r"})
	}))
	defer backend.Close()
	p, err := NewPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	bu, _ := url.Parse(backend.URL)
	px, err := NewProxy(Addr(FreePort(t)), bu, p.ServingCert, p.ServingKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := px.Start(); err != nil {
		t.Fatal(err)
	}
	defer px.Stop()
	caPEM, _ := os.ReadFile(p.CACert)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	base := "https://" + px.Addr + "/dex"

	post := func(form url.Values, basicUser string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+"/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if basicUser != "" {
			req.SetBasicAuth(basicUser, "secret")
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	post(url.Values{"grant_type": {"authorization_code"}, "client_id": {"pub"}}, "")
	post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}}, "conf")
	if got := post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"stale"}}, ""); got != http.StatusBadRequest {
		t.Errorf("stale refresh status = %d", got)
	}
	resp, err := hc.Get(base + "/auth?client_id=pub")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	want := []TokenRequest{
		{GrantType: "authorization_code", ClientID: "pub", Status: 200, IDTokenHash: Hash("i"), AccessTokenHash: Hash("a"), RefreshTokenHash: Hash("r")},
		{GrantType: "refresh_token", ClientID: "conf", Status: 200, IDTokenHash: Hash("i"), AccessTokenHash: Hash("a"), RefreshTokenHash: Hash("r")},
		{GrantType: "refresh_token", Status: 400, Error: "invalid_request"},
	}
	if diff := cmp.Diff(want, px.Tokens()); diff != "" {
		t.Errorf("token requests (-want +got):\n%s", diff)
	}
	if got := CountGrant(px.Since(1), "refresh_token"); got != 2 {
		t.Errorf("refreshes since mark 1 = %d, want 2", got)
	}
	if got := px.AuthRequests(); got != 1 {
		t.Errorf("auth requests = %d, want 1", got)
	}
	for _, path := range []string{"/device/code", "/device"} {
		resp, err := hc.PostForm(base+path, url.Values{"client_id": {"pub"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if got := px.DeviceRequests(); got != 1 {
		t.Errorf("device authorization requests = %d, want 1 (POST /device/code only)", got)
	}

	px.Stop()
	hc.CloseIdleConnections()
	if _, err := hc.Get(base + "/keys"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("GET with the proxy stopped: err = %v, want connection refused", err)
	}
	if err := px.Start(); err != nil {
		t.Fatal(err)
	}
	resp, err = hc.Get(base + "/keys")
	if err != nil {
		t.Fatalf("GET after restart: %v", err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("JWKS Cache-Control = %q, want no-store", got)
	}
}

func TestDexConfig(t *testing.T) {
	b, err := DexConfig("https://127.0.0.1:1/dex", "127.0.0.1:2", 20*time.Second,
		User{Email: "u@example.com", Password: "pw", Username: "u", Groups: []string{"g"}},
		"http://127.0.0.1:3/callback", "http://127.0.0.1:4/callback")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Expiry struct {
			IDTokens      string `json:"idTokens"`
			RefreshTokens struct {
				ReuseInterval string `json:"reuseInterval"`
			} `json:"refreshTokens"`
		} `json:"expiry"`
		StaticClients []struct {
			ID           string   `json:"id"`
			Public       bool     `json:"public"`
			Secret       string   `json:"secret"`
			RedirectURIs []string `json:"redirectURIs"`
		} `json:"staticClients"`
		StaticPasswords []struct {
			Hash   string   `json:"hash"`
			Groups []string `json:"groups"`
		} `json:"staticPasswords"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Expiry.IDTokens != "20s" || cfg.Expiry.RefreshTokens.ReuseInterval != "0s" {
		t.Errorf("expiry = %+v", cfg.Expiry)
	}
	last := len(cfg.StaticClients) - 1
	if len(cfg.StaticClients) != len(Clients) || !cfg.StaticClients[0].Public || len(cfg.StaticClients[0].RedirectURIs) != 0 ||
		cfg.StaticClients[last].Secret == "" || cfg.StaticClients[last].Public {
		t.Errorf("clients = %+v", cfg.StaticClients)
	}
	if !strings.HasPrefix(cfg.StaticPasswords[0].Hash, "$2a$10$") || !cmp.Equal(cfg.StaticPasswords[0].Groups, []string{"g"}) {
		t.Errorf("static password = %+v", cfg.StaticPasswords[0])
	}

	// StartDex's options beyond DexConfig's: the approval screen and the
	// device codes' lifetime.
	b, err = dexConfig("https://127.0.0.1:1/dex", "127.0.0.1:2", 0, User{Password: "pw"}, "", "",
		dexExtras{skipApproval: false, deviceTTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var extra struct {
		OAuth2 struct {
			SkipApprovalScreen *bool `json:"skipApprovalScreen"`
		} `json:"oauth2"`
		Expiry struct {
			DeviceRequests string `json:"deviceRequests"`
		} `json:"expiry"`
	}
	if err := json.Unmarshal(b, &extra); err != nil {
		t.Fatal(err)
	}
	if s := extra.OAuth2.SkipApprovalScreen; s == nil || *s || extra.Expiry.DeviceRequests != "3s" {
		t.Errorf("oauth2.skipApprovalScreen = %v, expiry.deviceRequests = %q; want false, 3s", s, extra.Expiry.DeviceRequests)
	}
}
