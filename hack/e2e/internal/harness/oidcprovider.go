package harness

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Clients, secret and resource of the oidc-provider configuration
// (../../oidc-provider/server.mjs).
const (
	// OPPublicClient is a native public client (token_endpoint_auth_method
	// none): loopback redirects http://127.0.0.1/callback and
	// http://localhost/callback on any port (RFC 8252 §7.3); authorization
	// code, refresh token and device code grants.
	OPPublicClient = "latchkey"
	// OPConfidentialClient is native with a secret (client_secret_basic);
	// authorization code, refresh token and client credentials grants.
	OPConfidentialClient = "latchkey-secret"
	OPClientSecret       = "e2e-confidential-secret"
	// OPResource is the resource indicator (RFC 8707) whose access tokens
	// are JWTs with this audience and scope OPResourceScope.
	OPResource      = "urn:example:api"
	OPResourceScope = "api:read"
)

// OIDCProviderOptions configure an oidc-provider process.
type OIDCProviderOptions struct {
	Node string // node binary
	Dir  string // log
	// PKI's serving certificate (127.0.0.1, ::1, localhost) is served over
	// https; nil means plain http.
	PKI *PKI
	// TokenTTL is the ID and access tokens' lifetime, whole seconds; 0 means 20 s.
	TokenTTL time.Duration
	// DeviceCodeTTL is how long a device code stays valid; 0 means 10 minutes.
	DeviceCodeTTL time.Duration
}

// OIDCProvider is panva's oidc-provider (npm, a certified OpenID provider)
// running server.mjs on a loopback port. It serves TLS itself: there is no
// proxy in front; it records the requests it answered (OPRequest).
type OIDCProvider struct {
	Opts   OIDCProviderOptions
	Issuer string // https://127.0.0.1:<port>/oidc
	Addr   string // 127.0.0.1:<port>
	// Client trusts the PKI's CA.
	Client *http.Client

	proc *Proc
	t    testing.TB
}

// OPRequest is one request the provider answered, as server.mjs records it.
// No tokens, only their hex SHA-256 (Hash).
// CheckUserAgent is the User-Agent of latchkey's check of an authorization
// request before the browser opens.
const CheckUserAgent = "latchkey (authorization request check)"

type OPRequest struct {
	// Route is oidc-provider's route name: discovery, jwks, authorization,
	// interaction, submit, resume, token, device_authorization,
	// code_verification, revocation, userinfo, ...
	Route      string `json:"route"`
	Method     string `json:"method"`
	Status     int    `json:"status"`
	ClientID   string `json:"client_id"`
	ClientAuth string `json:"client_auth"` // basic, post or none
	UserAgent  string `json:"user_agent"`
	GrantType  string `json:"grant_type"`
	// Error is the OAuth error and its description.
	Error string `json:"error"`
	// Scope, Prompt, Resource, Claims, RedirectURI, CodeChallengeMethod:
	// the parameters as the client sent them (authorization and device
	// authorization requests; Scope and Resource of token requests too).
	Scope               string `json:"scope"`
	Prompt              string `json:"prompt"`
	Resource            string `json:"resource"`
	Claims              string `json:"claims"`
	RedirectURI         string `json:"redirect_uri"`
	CodeChallengeMethod string `json:"code_challenge_method"`
	// Token requests: the refresh token presented, the tokens returned.
	PresentedRefreshTokenHash string `json:"presented_refresh_token_hash"`
	IDTokenHash               string `json:"id_token_hash"`
	AccessTokenHash           string `json:"access_token_hash"`
	RefreshTokenHash          string `json:"refresh_token_hash"`
	ResponseScope             string `json:"response_scope"`
	TokenType                 string `json:"token_type"`
	// Revocation requests.
	TokenTypeHint      string `json:"token_type_hint"`
	PresentedTokenHash string `json:"presented_token_hash"`
}

// OIDCProviderDir is hack/e2e/oidc-provider, with package.json,
// package-lock.json and server.mjs.
func OIDCProviderDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "oidc-provider")
}

var npmOnce struct {
	sync.Mutex
	done bool
}

// NPMInstall runs `npm ci` in OIDCProviderDir unless node_modules was
// installed from the same package-lock.json by the same node version (a
// stamp file in node_modules says so). A file lock keeps concurrent test
// binaries from installing at once. It returns what it did.
func NPMInstall(npm, node string) (string, error) {
	npmOnce.Lock()
	defer npmOnce.Unlock()
	if npmOnce.done {
		return "installed earlier in this process", nil
	}
	dir := OIDCProviderDir()
	lock, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return "", err
	}
	ver, err := exec.Command(node, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", node, err)
	}
	sum := sha256.Sum256(append(lock, ver...))
	want := hex.EncodeToString(sum[:]) + "\n"
	stamp := filepath.Join(dir, "node_modules", ".latchkey-e2e-stamp")

	lf, err := os.OpenFile(filepath.Join(dir, ".npm-ci.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	defer func() { _ = syscall.Flock(int(lf.Fd()), syscall.LOCK_UN) }()

	if b, err := os.ReadFile(stamp); err == nil && string(b) == want {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "oidc-provider", "package.json")); err == nil {
			npmOnce.done = true
			return "node_modules up to date", nil
		}
	}
	start := time.Now()
	cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund", "--loglevel=warn")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm ci in %s: %w\n%s", dir, err, out)
	}
	if err := os.WriteFile(stamp, []byte(want), 0o600); err != nil {
		return "", err
	}
	npmOnce.done = true
	return fmt.Sprintf("npm ci took %v", time.Since(start).Round(time.Millisecond)), nil
}

// StartOIDCProvider starts server.mjs with node (NPMInstall must have run)
// and waits until its discovery document answers. The process is stopped
// when the test ends (SIGTERM, then SIGKILL), and gets SIGKILL if the test
// binary dies.
func StartOIDCProvider(t testing.TB, o OIDCProviderOptions) *OIDCProvider {
	t.Helper()
	if o.TokenTTL == 0 {
		o.TokenTTL = 20 * time.Second
	}
	if o.DeviceCodeTTL == 0 {
		o.DeviceCodeTTL = 10 * time.Minute
	}
	p := &OIDCProvider{Opts: o, t: t, Addr: Addr(FreePort(t))}
	scheme := "http"
	args := []string{filepath.Join(OIDCProviderDir(), "server.mjs"),
		"--host", "127.0.0.1", "--port", strings.TrimPrefix(p.Addr, "127.0.0.1:"),
		"--token-ttl", secs(o.TokenTTL), "--device-code-ttl", secs(o.DeviceCodeTTL),
		"--client-secret", OPClientSecret,
	}
	tr := &http.Transport{Proxy: nil}
	if o.PKI != nil {
		scheme = "https"
		args = append(args, "--cert", o.PKI.ServingCert, "--key", o.PKI.ServingKey)
		pem, err := os.ReadFile(o.PKI.CACert)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	p.Client = &http.Client{Timeout: 30 * time.Second, Transport: tr}
	t.Cleanup(tr.CloseIdleConnections)
	p.Issuer = scheme + "://" + p.Addr + "/oidc"
	p.proc = StartProc(t, o.Dir, "oidc-provider", o.Node, args, []string{"NODE_ENV=development", "NO_COLOR=1"})
	u := p.Issuer + "/.well-known/openid-configuration"
	err := WaitFor(context.Background(), "oidc-provider", p.proc, 60*time.Second, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := p.Client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var meta struct {
			Issuer string `json:"issuer"`
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", u, resp.Status)
		}
		if err := json.NewDecoder(resp.Body).Decode(&meta); err != nil {
			return err
		}
		if meta.Issuer != p.Issuer {
			return fmt.Errorf("issuer %q, want %q", meta.Issuer, p.Issuer)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func secs(d time.Duration) string {
	s := int(d.Round(time.Second) / time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.Itoa(s)
}

// Requests returns every request the provider has answered so far, in order.
func (p *OIDCProvider) Requests(t testing.TB) []OPRequest {
	t.Helper()
	u := "https://" + p.Addr + "/e2e/requests"
	if p.Opts.PKI == nil {
		u = "http://" + p.Addr + "/e2e/requests"
	}
	resp, err := p.Client.Get(u)
	if err != nil {
		t.Fatalf("oidc-provider request log: %v", err)
	}
	defer resp.Body.Close()
	var reqs []OPRequest
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("oidc-provider request log: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&reqs); err != nil {
		t.Fatalf("oidc-provider request log: %v", err)
	}
	return reqs
}

// Mark is a position in the request log; Since(mark) returns what came after.
func (p *OIDCProvider) Mark(t testing.TB) int { t.Helper(); return len(p.Requests(t)) }

// Since returns the requests answered after mark.
func (p *OIDCProvider) Since(t testing.TB, mark int) []OPRequest {
	t.Helper()
	return p.Requests(t)[mark:]
}

// OPRoute returns the requests of route in reqs.
func OPRoute(reqs []OPRequest, route string) []OPRequest {
	var out []OPRequest
	for _, r := range reqs {
		if r.Route == route {
			out = append(out, r)
		}
	}
	return out
}

// Log is the path of the provider's output.
func (p *OIDCProvider) Log() string { return p.proc.LogPath }
