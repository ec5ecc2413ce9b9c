package idptest_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"github.com/latchkey/latchkey/plugin/idptest"
)

// client is one test's view of the provider, as a native app would hold it.
type client struct {
	t        *testing.T
	s        *idptest.Server
	http     *http.Client
	provider *oidc.Provider
	conf     *oauth2.Config
	callback chan url.Values
}

// newClient runs discovery against s with hc and starts a loopback
// redirect listener (RFC 8252 §7.3).
func newClient(t *testing.T, s *idptest.Server, hc *http.Client, secret string) *client {
	t.Helper()
	ctx := oidc.ClientContext(t.Context(), hc)
	p, err := oidc.NewProvider(ctx, s.URL)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	c := &client{t: t, s: s, http: hc, provider: p, callback: make(chan url.Values, 4)}
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.callback <- r.URL.Query()
		w.Write([]byte("you may close this window"))
	}))
	t.Cleanup(cb.Close)
	c.conf = &oauth2.Config{
		ClientID:     idptest.DefaultClientID,
		ClientSecret: secret,
		Endpoint:     p.Endpoint(),
		RedirectURL:  cb.URL + "/callback",
		Scopes:       []string{oidc.ScopeOpenID, "email", "groups"},
	}
	if secret == "" {
		c.conf.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	}
	return c
}

func (c *client) ctx() context.Context { return oidc.ClientContext(c.t.Context(), c.http) }

// authorize runs the authorization request through Browse and returns the
// query the loopback listener received.
func (c *client) authorize(opts ...oauth2.AuthCodeOption) url.Values {
	c.t.Helper()
	if err := idptest.Browse(c.t.Context(), c.http, c.conf.AuthCodeURL("state-1", opts...)); err != nil {
		c.t.Fatalf("browse: %v", err)
	}
	select {
	case q := <-c.callback:
		return q
	default:
		c.t.Fatal("loopback listener got no callback")
		return nil
	}
}

// login runs a full code+PKCE flow and returns the token.
func (c *client) login(nonce string) *oauth2.Token {
	c.t.Helper()
	verifier := oauth2.GenerateVerifier()
	q := c.authorize(oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce))
	if q.Get("error") != "" {
		c.t.Fatalf("authorization error %q", q.Get("error"))
	}
	if got, want := q.Get("state"), "state-1"; got != want {
		c.t.Fatalf("state = %q, want %q", got, want)
	}
	tok, err := c.conf.Exchange(c.ctx(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		c.t.Fatalf("exchange: %v", err)
	}
	return tok
}

// verify checks tok's ID token with go-oidc and returns it.
func (c *client) verify(tok *oauth2.Token) *oidc.IDToken {
	c.t.Helper()
	raw, ok := tok.Extra("id_token").(string)
	if !ok {
		c.t.Fatal("token response has no id_token")
	}
	idt, err := c.provider.Verifier(&oidc.Config{ClientID: c.conf.ClientID}).Verify(c.ctx(), raw)
	if err != nil {
		c.t.Fatalf("verify id_token: %v", err)
	}
	return idt
}

func (c *client) refresh(rt string) (*oauth2.Token, error) {
	return c.conf.TokenSource(c.ctx(), &oauth2.Token{RefreshToken: rt}).Token()
}

// errorCode returns the RFC 6749 §5.2 error code of err, failing if err is
// not a token endpoint error.
func errorCode(t *testing.T, err error) string {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("error %v is not a *oauth2.RetrieveError", err)
	}
	return re.ErrorCode
}

func TestDiscovery(t *testing.T) {
	s := idptest.NewServer(idptest.Config{IssParameter: true})
	defer s.Close()
	c := newClient(t, s, s.Client(), "")
	var meta struct {
		Issuer           string   `json:"issuer"`
		Revocation       string   `json:"revocation_endpoint"`
		Device           string   `json:"device_authorization_endpoint"`
		Methods          []string `json:"code_challenge_methods_supported"`
		Algs             []string `json:"id_token_signing_alg_values_supported"`
		ResponseTypes    []string `json:"response_types_supported"`
		IssParameterSupp bool     `json:"authorization_response_iss_parameter_supported"`
	}
	if err := c.provider.Claims(&meta); err != nil {
		t.Fatal(err)
	}
	want := struct {
		Issuer           string   `json:"issuer"`
		Revocation       string   `json:"revocation_endpoint"`
		Device           string   `json:"device_authorization_endpoint"`
		Methods          []string `json:"code_challenge_methods_supported"`
		Algs             []string `json:"id_token_signing_alg_values_supported"`
		ResponseTypes    []string `json:"response_types_supported"`
		IssParameterSupp bool     `json:"authorization_response_iss_parameter_supported"`
	}{s.URL, s.URL + idptest.RevocationPath, s.URL + idptest.DeviceCodePath, []string{"S256"}, []string{"RS256"}, []string{"code"}, true}
	if diff := cmp.Diff(want, meta); diff != "" {
		t.Errorf("metadata (-want +got):\n%s", diff)
	}
	if strings.HasSuffix(s.URL, "/") || !strings.HasPrefix(s.URL, "http://127.0.0.1:") {
		t.Errorf("URL = %q, want http://127.0.0.1:port", s.URL)
	}
}

func TestCodeFlow(t *testing.T) {
	s := idptest.NewServer(idptest.Config{IssParameter: true})
	defer s.Close()
	c := newClient(t, s, s.Client(), "")

	verifier := oauth2.GenerateVerifier()
	q := c.authorize(oauth2.S256ChallengeOption(verifier), oidc.Nonce("nonce-1"),
		oauth2.SetAuthURLParam("prompt", "consent"))
	if got := q.Get("iss"); got != s.URL {
		t.Errorf("callback iss = %q, want %q (RFC 9207)", got, s.URL)
	}
	last := s.LastAuthorize()
	for k, want := range map[string]string{
		"code_challenge_method": "S256",
		"code_challenge":        oauth2.S256ChallengeFromVerifier(verifier),
		"nonce":                 "nonce-1",
		"scope":                 "openid email groups",
		"prompt":                "consent",
	} {
		if got := last.Get(k); got != want {
			t.Errorf("LastAuthorize %s = %q, want %q", k, got, want)
		}
	}
	tok, err := c.conf.Exchange(c.ctx(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if got := s.LastToken().Get("code_verifier"); got != verifier {
		t.Errorf("LastToken code_verifier mismatch")
	}
	if tok.RefreshToken == "" || tok.TokenType != "Bearer" || tok.Expiry.IsZero() {
		t.Errorf("token = %+v, want refresh token, Bearer, expiry", tok)
	}
	idt := c.verify(tok)
	if idt.Nonce != "nonce-1" {
		t.Errorf("nonce = %q, want nonce-1", idt.Nonce)
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
		t.Errorf("at_hash: %v", err)
	}
	var claims struct {
		Sub           string   `json:"sub"`
		Azp           string   `json:"azp"`
		Email         string   `json:"email"`
		EmailVerified bool     `json:"email_verified"`
		Groups        []string `json:"groups"`
	}
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	wantClaims := claims
	wantClaims.Sub, wantClaims.Azp, wantClaims.Email, wantClaims.EmailVerified, wantClaims.Groups =
		"user-1", "latchkey", "user@example.com", true, []string{"admins"}
	if diff := cmp.Diff(wantClaims, claims); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}

	want := idptest.Counts{Discovery: 1, JWKS: 1, Authorize: 1, CodeExchange: 1}
	if diff := cmp.Diff(want, s.Counts()); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
}

func TestCodeExchangeRefused(t *testing.T) {
	s := idptest.NewServer(idptest.Config{})
	defer s.Close()
	c := newClient(t, s, s.Client(), "")

	t.Run("wrong verifier", func(t *testing.T) {
		q := c.authorize(oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
		_, err := c.conf.Exchange(c.ctx(), q.Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier()))
		if got := errorCode(t, err); got != "invalid_grant" {
			t.Errorf("error = %q, want invalid_grant", got)
		}
	})
	t.Run("replay", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		q := c.authorize(oauth2.S256ChallengeOption(v))
		tok, err := c.conf.Exchange(c.ctx(), q.Get("code"), oauth2.VerifierOption(v))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.conf.Exchange(c.ctx(), q.Get("code"), oauth2.VerifierOption(v))
		if got := errorCode(t, err); got != "invalid_grant" {
			t.Errorf("replay error = %q, want invalid_grant", got)
		}
		// RFC 6749 §4.1.2: tokens issued for a replayed code are revoked.
		_, err = c.refresh(tok.RefreshToken)
		if got := errorCode(t, err); got != "invalid_grant" {
			t.Errorf("refresh after replay error = %q, want invalid_grant", got)
		}
	})
	t.Run("redirect_uri mismatch", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		q := c.authorize(oauth2.S256ChallengeOption(v))
		_, err := c.conf.Exchange(c.ctx(), q.Get("code"), oauth2.VerifierOption(v),
			oauth2.SetAuthURLParam("redirect_uri", "http://127.0.0.1:1/other"))
		if got := errorCode(t, err); got != "invalid_grant" {
			t.Errorf("error = %q, want invalid_grant", got)
		}
	})
}

func TestAuthorizeRefused(t *testing.T) {
	s := idptest.NewServer(idptest.Config{})
	defer s.Close()
	c := newClient(t, s, s.Client(), "")
	challenge := oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())
	for _, tc := range []struct {
		name string
		opts []oauth2.AuthCodeOption
		want string
	}{
		{"plain PKCE", []oauth2.AuthCodeOption{
			oauth2.SetAuthURLParam("code_challenge", challenge),
			oauth2.SetAuthURLParam("code_challenge_method", "plain")}, "invalid_request"},
		{"method missing (means plain)", []oauth2.AuthCodeOption{
			oauth2.SetAuthURLParam("code_challenge", challenge)}, "invalid_request"},
		{"no PKCE", nil, "invalid_request"},
		{"no openid scope", []oauth2.AuthCodeOption{oauth2.S256ChallengeOption("x"),
			oauth2.SetAuthURLParam("scope", "email")}, "invalid_scope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := c.authorize(tc.opts...)
			if got := q.Get("error"); got != tc.want {
				t.Errorf("error = %q, want %q", got, tc.want)
			}
			if q.Get("code") != "" {
				t.Error("got a code")
			}
			if got := q.Get("state"); got != "state-1" {
				t.Errorf("state = %q, want state-1", got)
			}
		})
	}

	t.Run("deny", func(t *testing.T) {
		s.SetDeny("access_denied")
		defer s.SetDeny("")
		q := c.authorize(oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
		if got := q.Get("error"); got != "access_denied" {
			t.Errorf("error = %q, want access_denied", got)
		}
	})

	// RFC 6749 §4.1.2.1: never redirect to an unvalidated URI.
	for _, redirect := range []string{"http://example.com/cb", "https://127.0.0.1/cb", "http://10.0.0.1:8000/"} {
		t.Run("redirect "+redirect, func(t *testing.T) {
			conf := *c.conf
			conf.RedirectURL = redirect
			u := conf.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
			hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
				t.Error("server redirected")
				return http.ErrUseLastResponse
			}}
			if err := idptest.Browse(t.Context(), hc, u); err == nil {
				t.Error("Browse succeeded, want a 400 page")
			}
		})
	}
	t.Run("unknown client", func(t *testing.T) {
		conf := *c.conf
		conf.ClientID = "other"
		if err := idptest.Browse(t.Context(), s.Client(), conf.AuthCodeURL("st", oauth2.S256ChallengeOption("x"))); err == nil {
			t.Error("Browse succeeded, want a 400 page")
		}
		select {
		case <-c.callback:
			t.Error("redirected to the client")
		default:
		}
	})
}

func TestRefresh(t *testing.T) {
	for _, reuse := range []string{"", "invalid_request"} {
		t.Run("reuse code "+reuse, func(t *testing.T) {
			s := idptest.NewServer(idptest.Config{ReuseErrorCode: reuse})
			defer s.Close()
			c := newClient(t, s, s.Client(), "")
			tok := c.login("n")

			tok2, err := c.refresh(tok.RefreshToken)
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			if tok2.RefreshToken == "" || tok2.RefreshToken == tok.RefreshToken {
				t.Error("refresh did not rotate the refresh token")
			}
			if idt := c.verify(tok2); idt.Nonce != "" {
				t.Errorf("refreshed id_token nonce = %q, want none", idt.Nonce)
			}
			want := reuse
			if want == "" {
				want = "invalid_grant"
			}
			_, err = c.refresh(tok.RefreshToken)
			if got := errorCode(t, err); got != want {
				t.Errorf("superseded token error = %q, want %q", got, want)
			}
			// Without ReuseRevokesFamily the newest token still works.
			if _, err := c.refresh(tok2.RefreshToken); err != nil {
				t.Errorf("refresh with newest token: %v", err)
			}
			got := s.Counts()
			if got.Refresh != 3 || got.RefreshRejected != 1 {
				t.Errorf("Refresh, RefreshRejected = %d, %d, want 3, 1", got.Refresh, got.RefreshRejected)
			}
		})
	}

	t.Run("reuse revokes family", func(t *testing.T) {
		s := idptest.NewServer(idptest.Config{ReuseRevokesFamily: true})
		defer s.Close()
		c := newClient(t, s, s.Client(), "")
		tok := c.login("n")
		tok2, err := c.refresh(tok.RefreshToken)
		if err != nil {
			t.Fatal(err)
		}
		c.refresh(tok.RefreshToken)
		_, err = c.refresh(tok2.RefreshToken)
		if got := errorCode(t, err); got != "invalid_grant" {
			t.Errorf("error = %q, want invalid_grant", got)
		}
	})

	t.Run("no rotation, no id_token", func(t *testing.T) {
		s := idptest.NewServer(idptest.Config{NoRotation: true, OmitIDTokenOnRefresh: true})
		defer s.Close()
		c := newClient(t, s, s.Client(), "")
		tok := c.login("n")
		for range 2 {
			tok2, err := c.refresh(tok.RefreshToken)
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			if tok2.Extra("id_token") != nil || tok2.Extra("refresh_token") != nil {
				t.Error("refresh response carries id_token or refresh_token")
			}
		}
	})

	t.Run("RevokeAll", func(t *testing.T) {
		s := idptest.NewServer(idptest.Config{})
		defer s.Close()
		c := newClient(t, s, s.Client(), "")
		tok := c.login("n")
		s.RevokeAll()
		_, err := c.refresh(tok.RefreshToken)
		if got := errorCode(t, err); got != "invalid_grant" {
			t.Errorf("error = %q, want invalid_grant", got)
		}
		if _, err := c.refresh(c.login("n").RefreshToken); err != nil {
			t.Errorf("refresh of a token issued after RevokeAll: %v", err)
		}
	})

	t.Run("scope", func(t *testing.T) {
		s := idptest.NewServer(idptest.Config{})
		defer s.Close()
		c := newClient(t, s, s.Client(), "")
		tok := c.login("n")
		for _, tc := range []struct{ scope, wantErr string }{
			{"openid email", ""},
			{"openid admin", "invalid_scope"},
		} {
			status, body := post(t, s.Client(), s.URL+idptest.TokenPath, url.Values{
				"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken},
				"client_id": {"latchkey"}, "scope": {tc.scope},
			})
			if got := body["error"]; got != nil && got != tc.wantErr || got == nil && tc.wantErr != "" {
				t.Errorf("scope %q: status %d error %v, want %q", tc.scope, status, got, tc.wantErr)
			}
			if rt, ok := body["refresh_token"].(string); ok {
				tok.RefreshToken = rt
			}
		}
	})
}

// post sends a form and decodes the JSON answer.
func post(t *testing.T, hc *http.Client, u string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := hc.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func TestClientSecret(t *testing.T) {
	s := idptest.NewServer(idptest.Config{ClientSecret: "s3cret"})
	defer s.Close()
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		c := newClient(t, s, s.Client(), "s3cret")
		c.conf.Endpoint.AuthStyle = style
		c.verify(c.login("n"))

		c.conf.ClientSecret = "wrong"
		v := oauth2.GenerateVerifier()
		q := c.authorize(oauth2.S256ChallengeOption(v))
		_, err := c.conf.Exchange(c.ctx(), q.Get("code"), oauth2.VerifierOption(v))
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "invalid_client" || re.Response.StatusCode != http.StatusUnauthorized {
			t.Errorf("style %v, wrong secret: err = %v, want 401 invalid_client", style, err)
		}
	}
	status, body := post(t, s.Client(), s.URL+idptest.TokenPath, url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {"x"}, "client_id": {"latchkey"},
	})
	if status != http.StatusUnauthorized || body["error"] != "invalid_client" {
		t.Errorf("no secret: %d %v, want 401 invalid_client", status, body["error"])
	}
}

func TestTLS(t *testing.T) {
	s := idptest.NewServer(idptest.Config{TLS: true})
	defer s.Close()
	if !strings.HasPrefix(s.URL, "https://") {
		t.Fatalf("URL = %q, want https", s.URL)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CACertPEM()) {
		t.Fatal("CACertPEM is not a PEM certificate")
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	c := newClient(t, s, hc, "")
	c.verify(c.login("n"))

	plain := idptest.NewServer(idptest.Config{})
	defer plain.Close()
	if plain.CACertPEM() != nil {
		t.Error("CACertPEM of a plain server is not nil")
	}
}

func TestRevocation(t *testing.T) {
	s := idptest.NewServer(idptest.Config{})
	defer s.Close()
	c := newClient(t, s, s.Client(), "")
	tok := c.login("n")
	tok2, err := c.refresh(tok.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	for _, token := range []string{tok.RefreshToken, "unknown"} {
		status, _ := post(t, s.Client(), s.URL+idptest.RevocationPath, url.Values{
			"token": {token}, "token_type_hint": {"refresh_token"}, "client_id": {"latchkey"},
		})
		if status != http.StatusOK {
			t.Errorf("revoke status = %d, want 200", status)
		}
	}
	// Revoking a superseded token revokes its family.
	_, err = c.refresh(tok2.RefreshToken)
	if got := errorCode(t, err); got != "invalid_grant" {
		t.Errorf("error = %q, want invalid_grant", got)
	}
	if got := s.Counts().Revocation; got != 2 {
		t.Errorf("Revocation = %d, want 2", got)
	}
}

func TestIntercept(t *testing.T) {
	var mu sync.Mutex
	fail := true
	s := idptest.NewServer(idptest.Config{Intercept: func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		if fail && r.URL.Path == idptest.DiscoveryPath {
			http.Error(w, "boom", http.StatusInternalServerError)
			return true
		}
		return false
	}})
	defer s.Close()
	if _, err := oidc.NewProvider(oidc.ClientContext(t.Context(), s.Client()), s.URL); err == nil {
		t.Error("discovery succeeded despite a 500")
	}
	if got := s.Counts().Discovery; got != 0 {
		t.Errorf("Discovery = %d, want 0 (intercepted requests are not counted)", got)
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	newClient(t, s, s.Client(), "")
}

func TestIDTokenLifetime(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s := idptest.NewServer(idptest.Config{Now: func() time.Time { return now }, AccessTokenLifetime: 1500 * time.Millisecond})
	defer s.Close()
	s.SetIDTokenLifetime(2 * time.Second)
	c := newClient(t, s, s.Client(), "")
	tok := c.login("n")
	if got := tok.Extra("expires_in"); got != 2.0 {
		t.Errorf("expires_in = %v, want 2 (1.5 s rounded up)", got)
	}
	raw := tok.Extra("id_token").(string)
	v := c.provider.Verifier(&oidc.Config{ClientID: "latchkey", Now: func() time.Time { return now.Add(time.Second) }})
	idt, err := v.Verify(c.ctx(), raw)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if got, want := idt.Expiry, now.Add(2*time.Second); !got.Equal(want) {
		t.Errorf("exp = %v, want %v", got, want)
	}
	v = c.provider.Verifier(&oidc.Config{ClientID: "latchkey", Now: func() time.Time { return now.Add(3 * time.Second) }})
	var expired *oidc.TokenExpiredError
	if _, err := v.Verify(c.ctx(), raw); !errors.As(err, &expired) {
		t.Errorf("verify after exp: %v, want TokenExpiredError", err)
	}
}

func TestDevice(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	s := idptest.NewServer(idptest.Config{Now: clock, DeviceInterval: time.Second, DeviceCodeLifetime: time.Minute})
	defer s.Close()
	c := newClient(t, s, s.Client(), "")
	pollErr := func(da *oauth2.DeviceAuthResponse) any {
		_, body := post(t, s.Client(), s.URL+idptest.TokenPath, url.Values{
			"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {da.DeviceCode},
			"client_id": {"latchkey"},
		})
		return body["error"]
	}

	da, err := c.conf.DeviceAuth(c.ctx())
	if err != nil {
		t.Fatalf("device auth: %v", err)
	}
	if da.Interval != 1 || da.VerificationURI != s.URL+idptest.DeviceVerifyPath {
		t.Errorf("device response = %+v", da)
	}
	for _, tc := range []struct {
		advance time.Duration
		want    any
	}{
		{0, "authorization_pending"},
		{0, "slow_down"},
		{time.Second, "slow_down"}, // the interval is now 6 s
		{6 * time.Second, "authorization_pending"},
	} {
		advance(tc.advance)
		if got := pollErr(da); got != tc.want {
			t.Errorf("poll after %v: error %v, want %v", tc.advance, got, tc.want)
		}
	}
	if err := idptest.Browse(t.Context(), s.Client(), da.VerificationURIComplete); err != nil {
		t.Fatalf("browse verification URI: %v", err)
	}
	advance(6 * time.Second)
	if got := pollErr(da); got != nil {
		t.Errorf("poll after approval: error %v", got)
	}
	advance(6 * time.Second)
	if got := pollErr(da); got != "invalid_grant" {
		t.Errorf("poll of a spent code: error %v, want invalid_grant", got)
	}

	denied, _ := c.conf.DeviceAuth(c.ctx())
	if err := s.Deny(denied.UserCode); err != nil {
		t.Fatal(err)
	}
	if got := pollErr(denied); got != "access_denied" {
		t.Errorf("denied: error %v, want access_denied", got)
	}
	expired, _ := c.conf.DeviceAuth(c.ctx())
	advance(time.Minute)
	if got := pollErr(expired); got != "expired_token" {
		t.Errorf("expired: error %v, want expired_token", got)
	}
	if err := s.Approve("BCDF-GHJK"); !errors.Is(err, idptest.ErrUnknownUserCode) {
		t.Errorf("Approve(unknown) = %v, want ErrUnknownUserCode", err)
	}

	// The real x/oauth2 poller, waiting one interval (1 s) of wall time.
	da, err = c.conf.DeviceAuth(c.ctx())
	if err != nil {
		t.Fatal(err)
	}
	s.ApproveAll()
	ctx, cancel := context.WithTimeout(c.ctx(), 30*time.Second)
	defer cancel()
	tok, err := c.conf.DeviceAccessToken(ctx, da)
	if err != nil {
		t.Fatalf("device access token: %v", err)
	}
	v := c.provider.Verifier(&oidc.Config{ClientID: "latchkey", Now: clock})
	if _, err := v.Verify(c.ctx(), tok.Extra("id_token").(string)); err != nil {
		t.Errorf("verify: %v", err)
	}
	if got := s.Counts().Device; got != 4 {
		t.Errorf("Device = %d, want 4", got)
	}
}

func TestConcurrent(t *testing.T) {
	s := idptest.NewServer(idptest.Config{})
	defer s.Close()
	c := newClient(t, s, s.Client(), "")
	toks := make([]*oauth2.Token, 8)
	for i := range toks {
		toks[i] = c.login("n")
	}
	var wg sync.WaitGroup
	for _, tok := range toks {
		wg.Go(func() {
			if _, err := c.refresh(tok.RefreshToken); err != nil {
				t.Errorf("refresh: %v", err)
			}
		})
	}
	wg.Go(func() { s.Update(func(c *idptest.Config) { c.Groups = []string{"a", "b"} }) })
	wg.Wait()
	if got := s.Counts().Refresh; got != len(toks) {
		t.Errorf("Refresh = %d, want %d", got, len(toks))
	}
}

func TestBrowseError(t *testing.T) {
	s := idptest.NewServer(idptest.Config{})
	defer s.Close()
	err := idptest.Browse(t.Context(), s.Client(), s.URL+"/nope?code=secret")
	if err == nil {
		t.Fatal("Browse of a 404 succeeded")
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("error %q leaks the query", err)
	}
}
