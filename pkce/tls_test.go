package pkce

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// selfSigned returns a TLS certificate for 127.0.0.1 and localhost, and a
// pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestLoginTLS: with Login.TLS the loopback redirect is https (kubelogin's
// --local-server-cert and --local-server-key), for providers that refuse
// http redirect URIs.
func TestLoginTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	idp := newFakeIdP(t)
	var got *page
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 30 * time.Second}
	l := idp.login(func(_ context.Context, u string) error {
		p, err := visit(t, c, http.MethodGet, u)
		if err != nil {
			t.Errorf("browser: %v", err)
			return nil
		}
		got = p
		return nil
	})
	l.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	req, err := runLogin(t, l)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(req.RedirectURI, "https://127.0.0.1:") || got == nil || got.url.Scheme != "https" || got.status != http.StatusOK {
		t.Errorf("redirect URI %q, final page %+v: want an https loopback callback that succeeded", req.RedirectURI, got)
	}
	if len(idp.received) != 1 {
		t.Error("no token exchanged")
	}

	// A fixed redirect URL must then be https, and is refused as http.
	for _, u := range []string{"http://127.0.0.1:8000/callback", "https://127.0.0.1:8000/callback"} {
		err := Validate(u, nil, nil, true)
		if https := strings.HasPrefix(u, "https:"); (err == nil) != https || (err != nil && !errors.Is(err, ErrConfig)) {
			t.Errorf("Validate(%s, secure) = %v", u, err)
		}
		if err := Validate(u, nil, nil, false); (err == nil) == strings.HasPrefix(u, "https:") {
			t.Errorf("Validate(%s, plain) = %v", u, err)
		}
	}
}

// TestLoginAfterURL: after a successful login the browser is sent to
// AfterURL (kubelogin's --open-url-after-authentication), with no
// Referer carrying the code; a failed one still shows the failure page.
func TestLoginAfterURL(t *testing.T) {
	const after = "https://docs.example.com/welcome"
	for _, fail := range []bool{false, true} {
		idp := newFakeIdP(t)
		if fail {
			idp.tokenError = "invalid_grant"
		}
		var loc, policy string
		var status int
		c := &http.Client{CheckRedirect: func(r *http.Request, via []*http.Request) error {
			if r.URL.Host == "docs.example.com" {
				return http.ErrUseLastResponse
			}
			return nil
		}}
		l := idp.login(func(_ context.Context, u string) error {
			resp, err := c.Get(u)
			if err != nil {
				t.Errorf("browser: %v", err)
				return nil
			}
			resp.Body.Close()
			status, loc, policy = resp.StatusCode, resp.Header.Get("Location"), resp.Header.Get("Referrer-Policy")
			return nil
		})
		l.AfterURL = after
		_, err := runLogin(t, l)
		switch {
		case fail && (err == nil || status == http.StatusSeeOther):
			t.Errorf("failed login: err %v, status %d; want the failure page", err, status)
		case !fail && (err != nil || status != http.StatusSeeOther || loc != after || policy != "no-referrer"):
			t.Errorf("login: err %v, status %d, Location %q, Referrer-Policy %q; want 303 to %s with no-referrer", err, status, loc, policy, after)
		}
	}
}
