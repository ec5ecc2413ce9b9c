package plugin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// ErrDiscovery reports an OpenID Provider whose metadata cannot be used.
var ErrDiscovery = errors.New("provider discovery failed")

// maxMetadataBytes caps what latchkey reads of a discovery or JWKS document.
const maxMetadataBytes = 1 << 20

// providerLifetime is how long discovered metadata and keys are reused
// before they are fetched again.
const providerLifetime = 24 * time.Hour

// Provider is what latchkey knows of an authorization server: its metadata
// (OpenID Connect Discovery 1.0 §3, RFC 8414 §2, RFC 9207 §3), its JSON Web
// Key Set (RFC 7517 §5) once fetched, and, for a Flyte deployment, the
// client configuration it advertises. It is kept with the tokens (as
// cache.Entry.Provider) so that a refresh needs one request.
type Provider struct {
	// Issuer is the issuer identifier the metadata was validated against.
	Issuer string `json:"issuer"`
	// AuthorizationEndpoint is the authorization endpoint (RFC 6749 §3.1).
	AuthorizationEndpoint string `json:"authorization_endpoint,omitempty"`
	// TokenEndpoint is the token endpoint (RFC 6749 §3.2).
	TokenEndpoint string `json:"token_endpoint,omitempty"`
	// JWKSURI is where JWKS is fetched from.
	JWKSURI string `json:"jwks_uri,omitempty"`
	// DeviceAuthorizationEndpoint is the device authorization endpoint
	// (RFC 8628 §4).
	DeviceAuthorizationEndpoint string `json:"device_authorization_endpoint,omitempty"`
	// RevocationEndpoint is the token revocation endpoint (RFC 7009 §2).
	RevocationEndpoint string `json:"revocation_endpoint,omitempty"`
	// IssParameterSupported means authorization responses carry iss
	// (RFC 9207 §3).
	IssParameterSupported bool `json:"authorization_response_iss_parameter_supported,omitempty"`
	// SigningAlgs are the ID token signing algorithms the provider supports.
	SigningAlgs []string `json:"id_token_signing_alg_values_supported,omitempty"`
	// JWKS is the JSON Web Key Set document as fetched.
	JWKS json.RawMessage `json:"jwks,omitempty"`
	// FetchedAt is when the metadata (and then JWKS) were fetched.
	FetchedAt time.Time `json:"fetched_at,omitzero"`
	// Flyte is the client configuration a Flyte deployment advertised, for
	// providers discovered through one (flyte.go); nil otherwise.
	Flyte *FlyteClient `json:"client_config,omitempty"`
}

// requestTimeout bounds every single HTTP request to the provider.
const requestTimeout = 30 * time.Second

// newHTTPClient returns the client for talking to the provider: the
// environment's proxy, the extra CAs of o, and a timeout on every request.
func newHTTPClient(o *Options) (*http.Client, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ResponseHeaderTimeout = requestTimeout
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	if len(o.CAFiles) > 0 || len(o.CAData) > 0 || o.InsecureSkipTLSVerify || o.TLSRenegotiation != 0 {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if len(o.CAFiles) > 0 || len(o.CAData) > 0 {
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			for _, f := range o.CAFiles {
				b, err := os.ReadFile(f)
				if err != nil {
					return nil, fmt.Errorf("read certificate authority: %w", err)
				}
				if !pool.AppendCertsFromPEM(b) {
					return nil, fmt.Errorf("read certificate authority %s: no PEM certificate found", f)
				}
			}
			for _, d := range o.CAData {
				b, err := base64.StdEncoding.DecodeString(d)
				if err != nil {
					return nil, fmt.Errorf("decode --certificate-authority-data: %w", err)
				}
				if !pool.AppendCertsFromPEM(b) {
					return nil, fmt.Errorf("decode --certificate-authority-data: no PEM certificate found")
				}
			}
			cfg.RootCAs = pool
		}
		cfg.InsecureSkipVerify = o.InsecureSkipTLSVerify
		cfg.Renegotiation = o.TLSRenegotiation
		t.TLSClientConfig = cfg
	}
	return &http.Client{Transport: t, Timeout: requestTimeout, CheckRedirect: checkRedirect}, nil
}

// checkRedirect lets the provider client follow redirects of GET requests
// (discovery, keys) that do not go from https to http. A token or
// revocation request (POST) is never redirected: a 307 would resend the
// refresh token, code or verifier to wherever it points.
func checkRedirect(req *http.Request, via []*http.Request) error {
	switch {
	case len(via) >= 10:
		return errors.New("stopped after 10 redirects")
	case req.Method != http.MethodGet:
		return fmt.Errorf("refusing to follow a redirect of a %s request to %s", req.Method, req.URL.Redacted())
	case via[0].URL.Scheme == "https" && req.URL.Scheme != "https":
		return fmt.Errorf("refusing a redirect from https to %s", req.URL.Redacted())
	}
	return nil
}

// discover fetches the OpenID Provider metadata of issuer (OpenID Connect
// Discovery 1.0 §4) and checks that the metadata names the
// same issuer (§4.3), which defends against mix-up (RFC 9700 §4.4).
func discover(ctx context.Context, hc *http.Client, issuer string, now time.Time) (*Provider, error) {
	u := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	var p Provider
	if err := getJSON(ctx, hc, u, &p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDiscovery, err)
	}
	if p.Issuer != issuer {
		if strings.TrimSuffix(p.Issuer, "/") == strings.TrimSuffix(issuer, "/") {
			// LemonLDAP::NG's issuer ends with a slash, and issuers are
			// compared exactly (OpenID Connect Discovery §4.3).
			return nil, fmt.Errorf("%w: %s says its issuer is %q, not %q: they differ in the trailing slash, which counts; use --oidc-issuer-url=%s",
				ErrDiscovery, u, p.Issuer, issuer, p.Issuer)
		}
		return nil, fmt.Errorf("%w: %s says its issuer is %q, want %q", ErrDiscovery, u, p.Issuer, issuer)
	}
	if p.AuthorizationEndpoint == "" || p.TokenEndpoint == "" || p.JWKSURI == "" {
		return nil, fmt.Errorf("%w: %s lacks authorization_endpoint, token_endpoint or jwks_uri", ErrDiscovery, u)
	}
	if err := checkEndpoints(issuer, &p); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrDiscovery, u, err)
	}
	// The keys are fetched when an ID token needs them (keySet): after the
	// browser has opened, not before.
	p.FetchedAt = now
	return &p, nil
}

// getJSON GETs u and decodes a JSON body into v.
func getJSON(ctx context.Context, hc *http.Client, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("get %s: %w", u, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("get %s: %w", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataBytes+1))
	if err != nil {
		return fmt.Errorf("get %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get %s: %s", u, resp.Status)
	}
	if len(body) > maxMetadataBytes {
		return fmt.Errorf("get %s: response larger than %d bytes", u, maxMetadataBytes)
	}
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct == "text/html" {
		return fmt.Errorf("get %s: got an HTML page, not JSON (is the issuer URL right?)", u)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("get %s: decode JSON: %v", u, err)
	}
	return nil
}

// checkEndpoints requires https for the endpoints that receive or hand out
// secrets when the issuer itself is https (RFC 8414 §2, RFC 6749 §3.2): an
// attacker who can rewrite metadata must not downgrade them. Loopback
// endpoints are exempt, for tests and local providers.
//
// Whatever the issuer, every endpoint must be an absolute http(s) URL: the
// authorization endpoint is handed to the OS's URL opener, which would run a
// file: or UNC path.
func checkEndpoints(issuer string, p *Provider) error {
	secure := strings.HasPrefix(issuer, "https://")
	for name, e := range map[string]string{
		"authorization_endpoint":        p.AuthorizationEndpoint,
		"token_endpoint":                p.TokenEndpoint,
		"jwks_uri":                      p.JWKSURI,
		"device_authorization_endpoint": p.DeviceAuthorizationEndpoint,
		"revocation_endpoint":           p.RevocationEndpoint,
	} {
		if e == "" {
			continue
		}
		u, err := url.Parse(e)
		if err != nil {
			return fmt.Errorf("%s %q: %w", name, e, err)
		}
		switch {
		case u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			return fmt.Errorf("%s %q is not an http(s) URL", name, e)
		case secure && u.Scheme != "https" && !isLoopback(u.Hostname()):
			return fmt.Errorf("%s %q is not https", name, e)
		}
	}
	return nil
}

// openable refuses a URL that latchkey must not hand to a browser or the
// OS's URL opener (which launch local and UNC executables, and send NTLM
// credentials to a UNC host on Windows): only an absolute https URL, or http
// on a loopback address, is opened.
func openable(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || u.Opaque != "":
		return fmt.Errorf("refusing to open %q: not an absolute http(s) URL", raw)
	case u.Scheme == "https", u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	}
	return fmt.Errorf("refusing to open %q: only https URLs, or http on a loopback address, are opened", raw)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
