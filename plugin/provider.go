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

	"github.com/go-jose/go-jose/v4"

	"github.com/latchkey/latchkey/cache"
)

// ErrDiscovery reports an OpenID Provider whose metadata cannot be used.
var ErrDiscovery = errors.New("provider discovery failed")

// maxMetadataBytes caps what latchkey reads of a discovery or JWKS document.
const maxMetadataBytes = 1 << 20

// providerLifetime is how long discovered metadata and keys are reused
// before they are fetched again.
const providerLifetime = 24 * time.Hour

// requestTimeout bounds every single HTTP request to the provider.
const requestTimeout = 30 * time.Second

// newHTTPClient returns the client for talking to the provider: the
// environment's proxy, the extra CAs of o, and a timeout on every request.
func newHTTPClient(o *Options) (*http.Client, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ResponseHeaderTimeout = requestTimeout
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	if len(o.CAFiles) > 0 || len(o.CAData) > 0 || o.InsecureSkipTLSVerify {
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
func discover(ctx context.Context, hc *http.Client, issuer string, now time.Time) (*cache.Provider, error) {
	u := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	var p cache.Provider
	if err := getJSON(ctx, hc, u, &p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDiscovery, err)
	}
	if p.Issuer != issuer {
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

// fetchJWKS returns the raw JSON Web Key Set (RFC 7517 §5) at u after
// checking that it parses.
func fetchJWKS(ctx context.Context, hc *http.Client, u string) (json.RawMessage, error) {
	var raw json.RawMessage
	if err := getJSON(ctx, hc, u, &raw); err != nil {
		return nil, fmt.Errorf("%w: keys: %w", ErrDiscovery, err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("%w: keys at %s: %v", ErrDiscovery, u, err)
	}
	return raw, nil
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

// keySet verifies JWS signatures with the provider's cached JWKS, fetching
// the JWKS again once when no cached key verifies (the provider rotated its
// keys). It implements oidc.KeySet.
type keySet struct {
	hc  *http.Client
	p   *cache.Provider // updated with refetched keys, saved with the entry
	now time.Time
}

func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(jwt, signingAlgs)
	if err != nil {
		return nil, fmt.Errorf("parse ID token: %v", err)
	}
	if payload, err := verifyWith(jws, k.p.JWKS); err == nil {
		return payload, nil
	}
	raw, err := fetchJWKS(ctx, k.hc, k.p.JWKSURI)
	if err != nil {
		return nil, err
	}
	k.p.JWKS, k.p.FetchedAt = raw, k.now
	return verifyWith(jws, raw)
}

// signingAlgs are the JWS algorithms latchkey accepts for ID tokens; "none"
// and HMAC are not among them.
var signingAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

func verifyWith(jws *jose.JSONWebSignature, raw json.RawMessage) ([]byte, error) {
	if len(raw) == 0 {
		return nil, errors.New("no keys")
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("decode keys: %v", err)
	}
	kid := ""
	if len(jws.Signatures) > 0 {
		kid = jws.Signatures[0].Header.KeyID
	}
	for _, key := range set.Keys {
		if key.Use != "" && key.Use != "sig" {
			continue
		}
		if kid != "" && key.KeyID != kid {
			continue
		}
		if payload, err := jws.Verify(key.Key); err == nil {
			return payload, nil
		}
	}
	return nil, errors.New("no provider key verifies the ID token signature")
}

// checkEndpoints requires https for the endpoints that receive or hand out
// secrets when the issuer itself is https (RFC 8414 §2, RFC 6749 §3.2): an
// attacker who can rewrite metadata must not downgrade them. Loopback
// endpoints are exempt, for tests and local providers.
func checkEndpoints(issuer string, p *cache.Provider) error {
	if !strings.HasPrefix(issuer, "https://") {
		return nil
	}
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
		if u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())) {
			return fmt.Errorf("%s %q is not https", name, e)
		}
	}
	return nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
