// Package idptest provides an in-process OpenID Connect provider for tests, in
// the spirit of net/http/httptest.
//
// A Server speaks just enough OpenID Connect and OAuth 2.0 for a native
// (public) client such as latchkey: discovery (OpenID Connect Discovery 1.0
// §4), a JWKS, the authorization code grant with mandatory PKCE (RFC 6749
// §4.1, RFC 7636, RFC 8252), refresh with rotation (RFC 6749 §6, RFC 9700
// §4.14.2), revocation (RFC 7009) and the device authorization grant
// (RFC 8628). The "user" is always logged in and consenting: the
// authorization endpoint redirects straight back to the client, so a plain
// HTTP client (see Browse) can play the browser.
//
// Behaviour is tuned with Config and, mid-test, with Server.Update. Faults are
// injected with Config.Intercept. The package does not import testing, so it
// can also back benchmark drivers.
package idptest // import "github.com/latchkey/latchkey/plugin/idptest"

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Defaults applied by NewServer to zero fields of Config.
const (
	DefaultClientID           = "latchkey"
	DefaultSubject            = "user-1"
	DefaultEmail              = "user@example.com"
	DefaultTokenLifetime      = time.Hour
	DefaultDeviceCodeLifetime = 10 * time.Minute
	DefaultDeviceInterval     = 5 * time.Second
)

// CodeLifetime is how long an authorization code stays redeemable: the
// maximum RFC 6749 §4.1.2 recommends.
const CodeLifetime = 10 * time.Minute

// Endpoint paths under Server.URL, all advertised by discovery.
const (
	DiscoveryPath    = "/.well-known/openid-configuration"
	JWKSPath         = "/keys"
	AuthorizePath    = "/authorize"
	TokenPath        = "/token"
	RevocationPath   = "/revoke"
	DeviceCodePath   = "/device/code"
	DeviceVerifyPath = "/device"
)

const (
	deviceCodeGrant   = "urn:ietf:params:oauth:grant-type:device_code"
	scopeOpenID       = "openid"
	pkceMethodS256    = "S256"
	tokenTypeRefresh  = "refresh_token"
	errInvalidRequest = "invalid_request"
	errInvalidClient  = "invalid_client"
	errInvalidGrant   = "invalid_grant"
	errInvalidScope   = "invalid_scope"
)

// Config configures a Server. The zero value is a working provider for a
// public client named DefaultClientID; zero fields take the documented
// defaults.
type Config struct {
	// ClientID is the only client the server knows. Default DefaultClientID.
	ClientID string
	// ClientSecret, if set, makes the client confidential: the token,
	// revocation and device endpoints then require it, sent either with HTTP
	// Basic (client_secret_basic) or in the form (client_secret_post), but
	// not both (RFC 6749 §2.3.1). Empty means a public client (RFC 6749
	// §2.1) that only identifies itself with client_id.
	ClientSecret string

	// Subject, Email and Groups are the claims of the always-logged-in user
	// (OIDC Core §2, §5.1). Defaults DefaultSubject, DefaultEmail and
	// {"admins"}. A non-nil empty Groups yields an empty groups claim.
	Subject string
	Email   string
	Groups  []string

	// IDTokenLifetime and AccessTokenLifetime set exp = Now()+lifetime,
	// truncated to whole seconds (JWT NumericDate, RFC 7519 §2), and
	// expires_in = the access token lifetime rounded up to whole seconds
	// (RFC 6749 §5.1). Default DefaultTokenLifetime each. Use Config.Now to
	// test expiry without sleeping; a negative lifetime mints tokens that are
	// already expired.
	IDTokenLifetime     time.Duration
	AccessTokenLifetime time.Duration

	// NoRotation turns refresh token rotation off. By default (false) every
	// refresh issues a new refresh token and supersedes the presented one
	// (RFC 9700 §4.14.2); presenting a superseded token fails with
	// ReuseErrorCode. With NoRotation, refresh responses carry no
	// refresh_token and the presented one stays valid (RFC 6749 §6: the
	// server "MAY issue a new refresh token").
	NoRotation bool
	// ReuseErrorCode is the error code answered for a superseded refresh
	// token. Default "invalid_grant" (RFC 6749 §5.2); Dex answers
	// "invalid_request".
	ReuseErrorCode string
	// ReuseRevokesFamily makes the reuse of a superseded refresh token also
	// revoke the newest token of its family, as RFC 9700 §4.14.2 suggests
	// for reuse detection. Default false, like Dex.
	ReuseRevokesFamily bool

	// OmitIDTokenOnRefresh makes refresh responses carry no id_token (OIDC
	// Core §12.2 allows it).
	OmitIDTokenOnRefresh bool
	// OmitRefreshToken makes authorization code (and device code) responses
	// carry no refresh_token.
	OmitRefreshToken bool
	// OmitExpiresIn drops expires_in from token responses (it is only
	// RECOMMENDED, RFC 6749 §5.1).
	OmitExpiresIn bool
	// AllowedAudiences, if set, are the only values of the audience
	// authorization parameter the server takes; another gets
	// invalid_request "Requested audience '...' has not been whitelisted by
	// the OAuth 2.0 Client.", as flyteadmin (fosite) answers one its client
	// may not ask for.
	AllowedAudiences []string
	// RedirectURIs, if set, are the only redirect URIs the server takes,
	// compared exactly (as Okta, Entra ID, Glewlwyd and LemonLDAP::NG do);
	// any other gets a 400 page and no redirect. Empty means any http
	// loopback URI (RFC 8252 §7.3).
	RedirectURIs []string
	// Ungranted are scopes the server drops from every grant without a
	// word in the authorization response (the token response's scope then
	// says what was granted), as oidc-provider drops offline_access without
	// prompt=consent and Dex its cross-client audience scopes. A refresh
	// that asks for one is refused with invalid_scope.
	Ungranted []string
	// JWTAccessTokensUnrevocable answers the revocation of a token that is
	// not a refresh token with 400 unsupported_token_type (RFC 7009
	// §2.2.1), as oidc-provider does for its JWT access tokens.
	JWTAccessTokensUnrevocable bool
	// OfflineNeedsConsent grants offline_access (and a refresh token) only
	// when the authorization request has prompt=consent, as oidc-provider
	// does (OpenID Connect Core §11); otherwise the scope is dropped and no
	// refresh token issued.
	OfflineNeedsConsent bool
	// RefuseRefreshScope refuses with invalid_scope any refresh that sends
	// a scope parameter, even one within the grant.
	RefuseRefreshScope bool
	// ClientCredentialsIDToken makes client_credentials responses carry an
	// ID token when openid is among the scopes, as Keycloak's do; without it
	// they carry an access token only, as oidc-provider's and Okta's do.
	// The grant (RFC 6749 §4.4) needs ClientSecret either way, and its
	// responses carry no refresh token (§4.4.3).
	ClientCredentialsIDToken bool

	// IssParameter adds iss to every authorization response, success or
	// error, and advertises authorization_response_iss_parameter_supported
	// (RFC 9207 §2, §3).
	IssParameter bool

	// DenyAuthorization, if set (e.g. "access_denied"), is the error the
	// authorization endpoint redirects with instead of a code (RFC 6749
	// §4.1.2.1), and the error device code polls get (RFC 8628 §3.5).
	DenyAuthorization string

	// DeviceCodeLifetime is the expires_in of device codes (RFC 8628 §3.2).
	// Default DefaultDeviceCodeLifetime.
	DeviceCodeLifetime time.Duration
	// DeviceInterval is the polling interval advertised for device codes,
	// rounded up to whole seconds (RFC 8628 §3.2). Default
	// DefaultDeviceInterval. A poll that arrives less than half the current
	// interval after the previous one for the same device code gets
	// slow_down, and the interval grows by 5 s (RFC 8628 §3.5); the slack
	// absorbs network jitter for well-behaved clients.
	DeviceInterval time.Duration
	// DeviceAutoApprove approves device authorization requests as soon as
	// they are made, as if the user had already entered the code.
	DeviceAutoApprove bool

	// TLS serves https (httptest.NewTLSServer); Server.CACertPEM then returns
	// the certificate to trust. Read by NewServer only.
	TLS bool

	// Now is the clock for every issued and checked time. Nil means
	// time.Now. It may be called with the server's lock held, so it must not
	// call methods of the Server.
	Now func() time.Time

	// IDTokenClaims, if set, changes an ID token's claims before they are
	// signed with the server's key: for tests of a client's checks (a
	// foreign nonce, audience or azp) with tokens that verify otherwise.
	IDTokenClaims func(claims map[string]any)

	// Intercept, if set, runs before every handler; returning true means it
	// wrote the response and the request is neither handled, counted nor
	// recorded. Use it for fault injection: 500s, slow responses, a wrong
	// issuer in discovery, dropped connections via http.Hijacker.
	Intercept func(w http.ResponseWriter, r *http.Request) bool
}

func (c Config) withDefaults() Config {
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	if c.Subject == "" {
		c.Subject = DefaultSubject
	}
	if c.Email == "" {
		c.Email = DefaultEmail
	}
	if c.Groups == nil {
		c.Groups = []string{"admins"}
	} else {
		c.Groups = slices.Clone(c.Groups) // the caller's slice stays theirs
	}
	if c.IDTokenLifetime == 0 {
		c.IDTokenLifetime = DefaultTokenLifetime
	}
	if c.AccessTokenLifetime == 0 {
		c.AccessTokenLifetime = DefaultTokenLifetime
	}
	if c.ReuseErrorCode == "" {
		c.ReuseErrorCode = errInvalidGrant
	}
	if c.DeviceCodeLifetime == 0 {
		c.DeviceCodeLifetime = DefaultDeviceCodeLifetime
	}
	if c.DeviceInterval <= 0 {
		c.DeviceInterval = DefaultDeviceInterval
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// CheckUserAgent is the User-Agent of latchkey's check of an authorization
// request before it opens the browser (Counts.AuthorizeChecks).
const CheckUserAgent = "latchkey (authorization request check)"

// Counts are the numbers of requests handled, by endpoint. Requests answered
// by Config.Intercept are not counted.
type Counts struct {
	Discovery int // GET DiscoveryPath
	JWKS      int // GET JWKSPath
	Authorize int // the browser's authorization requests, including refused ones
	// AuthorizeChecks counts latchkey's own checks of an authorization
	// request before the browser opens (User-Agent CheckUserAgent).
	AuthorizeChecks int
	// CodeExchange counts token requests with grant_type
	// authorization_code, including refused ones.
	CodeExchange int
	// Refresh counts token requests with grant_type refresh_token, including
	// refused ones; RefreshRejected counts the refused ones.
	Refresh         int
	RefreshRejected int
	Revocation      int // revocation requests
	Device          int // device authorization requests (RFC 8628 §3.1)
	DevicePoll      int // token requests with the device_code grant type
	// ClientCredentials counts token requests with grant_type
	// client_credentials, including refused ones.
	ClientCredentials int
}

// Server is a running OpenID Connect provider. Its methods are safe for
// concurrent use.
type Server struct {
	// URL is the issuer identifier: the base URL of the server, with no
	// trailing slash, e.g. "http://127.0.0.1:38291".
	URL string

	ts       *httptest.Server
	idSigner jose.Signer
	atSigner jose.Signer
	jwks     []byte

	mu            sync.Mutex
	cfg           Config
	counts        Counts
	lastAuthorize url.Values
	lastToken     url.Values
	codes         map[string]*authCode
	refresh       map[string]*refreshToken
	devices       map[string]*deviceAuth // by device_code
	userCodes     map[string]string      // normalized user_code -> device_code
}

// authCode is an issued authorization code (RFC 6749 §4.1.2).
type authCode struct {
	clientID, redirectURI string
	challenge             string // S256 code_challenge (RFC 7636 §4.3)
	nonce                 string
	scopes                []string
	expiry                time.Time
	used                  bool
	family                *family // tokens issued for this code, for replay revocation
}

// family is a chain of refresh tokens descending from one grant.
type family struct {
	clientID string
	scopes   []string // originally granted (RFC 6749 §6)
	revoked  bool
}

// refreshToken is an issued refresh token.
type refreshToken struct {
	family     *family
	superseded bool
}

// NewServer starts a provider listening on 127.0.0.1 with a fresh RSA 2048
// signing key (RS256), whose key id is its RFC 7638 thumbprint. Like
// httptest.NewServer it panics if it cannot listen. Call Close when done.
func NewServer(c Config) *Server {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(fmt.Sprintf("idptest: generate key: %v", err))
	}
	jwk := jose.JSONWebKey{Key: key, Algorithm: string(jose.RS256), Use: "sig"}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		panic(fmt.Sprintf("idptest: key thumbprint: %v", err))
	}
	jwk.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
	s := &Server{
		cfg:       c.withDefaults(),
		codes:     make(map[string]*authCode),
		refresh:   make(map[string]*refreshToken),
		devices:   make(map[string]*deviceAuth),
		userCodes: make(map[string]string),
	}
	s.idSigner = mustSigner(jwk, "JWT")
	s.atSigner = mustSigner(jwk, "at+jwt") // RFC 9068 §2.1
	s.jwks, err = json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk.Public()}})
	if err != nil {
		panic(fmt.Sprintf("idptest: marshal jwks: %v", err))
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET "+DiscoveryPath, s.handleDiscovery)
	mux.HandleFunc("GET "+JWKSPath, s.handleJWKS)
	mux.HandleFunc("GET "+AuthorizePath, s.handleAuthorize)
	mux.HandleFunc(TokenPath, s.handleToken)
	mux.HandleFunc(RevocationPath, s.handleRevoke)
	mux.HandleFunc(DeviceCodePath, s.handleDeviceCode)
	mux.HandleFunc("GET "+DeviceVerifyPath, s.handleDeviceVerify)
	s.ts = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		intercept := s.cfg.Intercept
		s.mu.Unlock()
		if intercept != nil && intercept(w, r) {
			return
		}
		mux.ServeHTTP(w, r)
	}))
	scheme := "http://"
	if c.TLS {
		scheme = "https://"
	}
	// Set before Start, so that no handler can observe it unset.
	s.URL = scheme + s.ts.Listener.Addr().String()
	if c.TLS {
		s.ts.StartTLS()
	} else {
		s.ts.Start()
	}
	return s
}

func mustSigner(jwk jose.JSONWebKey, typ jose.ContentType) jose.Signer {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jwk},
		(&jose.SignerOptions{}).WithType(typ))
	if err != nil {
		panic(fmt.Sprintf("idptest: new signer: %v", err))
	}
	return sig
}

// Close shuts the server down and blocks until all outstanding requests on
// it have completed.
func (s *Server) Close() { s.ts.Close() }

// CACertPEM returns the PEM-encoded certificate of a TLS server, suitable for
// --certificate-authority, or nil unless Config.TLS.
func (s *Server) CACertPEM() []byte {
	cert := s.ts.Certificate()
	if cert == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

// Client returns an HTTP client configured for the server (trusting its
// certificate when TLS), as httptest.Server.Client does. It can also reach
// other plain-http servers, such as a loopback redirect listener.
func (s *Server) Client() *http.Client { return s.ts.Client() }

// Counts returns the request counts so far.
func (s *Server) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts
}

// LastAuthorize returns a copy of the query of the last authorization
// request (to assert code_challenge_method=S256, scope, nonce, extra
// parameters), or nil if there was none.
func (s *Server) LastAuthorize() url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cloneValues(s.lastAuthorize)
}

// LastToken returns a copy of the form of the last token request, or nil if
// there was none. Client credentials sent with HTTP Basic are not included.
func (s *Server) LastToken() url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cloneValues(s.lastToken)
}

func cloneValues(v url.Values) url.Values {
	if v == nil {
		return nil
	}
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

// RevokeAll invalidates every refresh token issued so far, as an IdP restart
// with in-memory storage would: they are then refused with invalid_grant.
// Tokens issued afterwards are valid.
func (s *Server) RevokeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rt := range s.refresh {
		rt.family.revoked = true
	}
}

// Update changes the configuration of the running server: f is called with
// the current Config (defaults applied) and may modify it, under the server's
// lock, so f must not call methods of s. Requests already past their configuration read are not affected.
// Config.TLS cannot be changed; zero fields take their defaults again.
//
//	s.Update(func(c *idptest.Config) { c.OmitIDTokenOnRefresh = true })
func (s *Server) Update(f func(c *Config)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cfg
	c.Groups = slices.Clone(c.Groups)
	f(&c)
	c.TLS = s.cfg.TLS
	s.cfg = c.withDefaults()
}

// SetDeny sets Config.DenyAuthorization; "" stops denying.
func (s *Server) SetDeny(code string) {
	s.Update(func(c *Config) { c.DenyAuthorization = code })
}

// SetIDTokenLifetime sets Config.IDTokenLifetime for tokens issued from now
// on.
func (s *Server) SetIDTokenLifetime(d time.Duration) {
	s.Update(func(c *Config) { c.IDTokenLifetime = d })
}

// config returns a snapshot of the configuration.
func (s *Server) config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// handleDiscovery serves the provider metadata (OpenID Connect Discovery 1.0
// §3, §4; RFC 8414 §2 for the OAuth fields).
func (s *Server) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.counts.Discovery++
	iss := s.cfg.IssParameter
	s.mu.Unlock()
	m := map[string]any{
		"issuer":                                     s.URL,
		"authorization_endpoint":                     s.URL + AuthorizePath,
		"token_endpoint":                             s.URL + TokenPath,
		"jwks_uri":                                   s.URL + JWKSPath,
		"revocation_endpoint":                        s.URL + RevocationPath,
		"device_authorization_endpoint":              s.URL + DeviceCodePath,
		"response_types_supported":                   []string{"code"},
		"response_modes_supported":                   []string{"query"},
		"subject_types_supported":                    []string{"public"},
		"id_token_signing_alg_values_supported":      []string{"RS256"},
		"code_challenge_methods_supported":           []string{pkceMethodS256},
		"grant_types_supported":                      []string{"authorization_code", "refresh_token", deviceCodeGrant, "client_credentials"},
		"scopes_supported":                           []string{scopeOpenID, "email", "profile", "groups", "offline_access"},
		"token_endpoint_auth_methods_supported":      []string{"client_secret_basic", "client_secret_post", "none"},
		"revocation_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "none"},
		"claims_supported": []string{"iss", "sub", "aud", "azp", "exp", "iat", "nonce", "at_hash",
			"email", "email_verified", "groups"},
	}
	if iss {
		m["authorization_response_iss_parameter_supported"] = true
	}
	writeJSON(w, http.StatusOK, m)
}

// handleJWKS serves the public signing key (RFC 7517 §5).
func (s *Server) handleJWKS(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.counts.JWKS++
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Write(s.jwks)
}

// handleAuthorize implements the authorization endpoint for the code flow
// (RFC 6749 §4.1.1, §4.1.2; OIDC Core §3.1.2), with PKCE required (RFC 7636
// §4.4; RFC 8252 §8.1) and loopback redirects (RFC 8252 §7.3).
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	if r.UserAgent() == CheckUserAgent {
		s.counts.AuthorizeChecks++
	} else {
		s.counts.Authorize++
		s.lastAuthorize = cloneValues(q)
	}
	cfg := s.cfg
	s.mu.Unlock()

	// RFC 6749 §4.1.2.1: with a bad client or redirect URI, do not redirect.
	if q.Get("client_id") != cfg.ClientID {
		writePage(w, http.StatusBadRequest, "invalid_request: unknown client_id")
		return
	}
	redirectURI := q.Get("redirect_uri")
	cb, err := url.Parse(redirectURI)
	if err != nil || !isLoopbackRedirect(cb) {
		writePage(w, http.StatusBadRequest, "invalid_request: redirect_uri is not an http loopback URI (RFC 8252 §7.3)")
		return
	}
	if len(cfg.RedirectURIs) > 0 && !slices.Contains(cfg.RedirectURIs, redirectURI) {
		writePage(w, http.StatusBadRequest, "invalid_request: unregistered redirect_uri")
		return
	}

	state := q.Get("state")
	fail := func(code, desc string) {
		v := cb.Query()
		v.Set("error", code)
		v.Set("error_description", desc)
		if state != "" {
			v.Set("state", state)
		}
		if cfg.IssParameter {
			v.Set("iss", s.URL)
		}
		cb.RawQuery = v.Encode()
		http.Redirect(w, r, cb.String(), http.StatusFound)
	}
	scopes := strings.Fields(q.Get("scope"))
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "only response_type=code is supported")
		return
	case !slices.Contains(scopes, scopeOpenID):
		fail(errInvalidScope, `missing required scope "openid"`) // as Dex
		return
	case q.Get("code_challenge") == "":
		fail(errInvalidRequest, "code_challenge is required (RFC 7636 §4.4.1)")
		return
	case q.Get("code_challenge_method") != pkceMethodS256:
		// A missing method means plain (RFC 7636 §4.3).
		fail(errInvalidRequest, "code_challenge_method must be S256")
		return
	case cfg.DenyAuthorization != "":
		fail(cfg.DenyAuthorization, "authorization denied by the test")
		return
	case q.Has("audience") && len(cfg.AllowedAudiences) > 0 && !slices.Contains(cfg.AllowedAudiences, q.Get("audience")):
		fail(errInvalidRequest, "Requested audience '"+q.Get("audience")+"' has not been whitelisted by the OAuth 2.0 Client.")
		return
	}

	scopes = slices.DeleteFunc(scopes, func(sc string) bool {
		return slices.Contains(cfg.Ungranted, sc) ||
			sc == "offline_access" && cfg.OfflineNeedsConsent && !slices.Contains(strings.Fields(q.Get("prompt")), "consent")
	})
	code := rand.Text()
	s.mu.Lock()
	s.codes[code] = &authCode{
		clientID:    cfg.ClientID,
		redirectURI: redirectURI,
		challenge:   q.Get("code_challenge"),
		nonce:       q.Get("nonce"),
		scopes:      scopes,
		expiry:      cfg.Now().Add(CodeLifetime),
	}
	s.mu.Unlock()
	v := cb.Query()
	v.Set("code", code)
	if state != "" {
		v.Set("state", state)
	}
	if cfg.IssParameter {
		v.Set("iss", s.URL) // RFC 9207 §2
	}
	cb.RawQuery = v.Encode()
	http.Redirect(w, r, cb.String(), http.StatusFound)
}

// isLoopbackRedirect reports whether u is an acceptable native-app redirect
// URI: http, a loopback host (127.0.0.0/8, [::1] or localhost), any port
// (RFC 8252 §7.3, §8.3), and no fragment (RFC 6749 §3.1.2).
func isLoopbackRedirect(u *url.URL) bool {
	if u.Scheme != "http" || u.Fragment != "" || u.User != nil {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// tokenError is an error response of the token endpoint (RFC 6749 §5.2).
type tokenError struct {
	status int
	code   string
	desc   string
}

func (e *tokenError) Error() string { return e.code + ": " + e.desc }

func badRequest(code, desc string) *tokenError {
	return &tokenError{status: http.StatusBadRequest, code: code, desc: desc}
}

func writeTokenError(w http.ResponseWriter, e *tokenError) {
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="idptest"`) // RFC 6749 §5.2
	}
	m := map[string]string{"error": e.code}
	if e.desc != "" {
		m["error_description"] = e.desc
	}
	writeJSON(w, e.status, m)
}

// parsePost reads a POSTed form (RFC 6749 §3.2) and records it as the
// last token request when record.
func (s *Server) parsePost(r *http.Request, record bool) (url.Values, *tokenError) {
	if r.Method != http.MethodPost {
		return nil, &tokenError{status: http.StatusMethodNotAllowed, code: errInvalidRequest, desc: "POST required"}
	}
	if err := r.ParseForm(); err != nil {
		return nil, badRequest(errInvalidRequest, "malformed form")
	}
	if record {
		s.mu.Lock()
		s.lastToken = cloneValues(r.PostForm)
		s.mu.Unlock()
	}
	return r.PostForm, nil
}

// authenticateClient checks the client's identity (RFC 6749 §2.3.1, §3.2.1):
// with a secret configured, exactly one of client_secret_basic and
// client_secret_post; otherwise client_id alone (a public client; an empty
// Basic password is accepted too).
func authenticateClient(r *http.Request, form url.Values, cfg Config) *tokenError {
	unauthorized := &tokenError{status: http.StatusUnauthorized, code: errInvalidClient, desc: "client authentication failed"}
	user, pass, basic := r.BasicAuth()
	if basic {
		// RFC 6749 §2.3.1: Basic credentials are form-urlencoded first.
		var err1, err2 error
		user, err1 = url.QueryUnescape(user)
		pass, err2 = url.QueryUnescape(pass)
		if err1 != nil || err2 != nil {
			return unauthorized
		}
		if _, ok := form["client_secret"]; ok {
			return badRequest(errInvalidRequest, "more than one client authentication method (RFC 6749 §2.3)")
		}
		if id := form.Get("client_id"); id != "" && id != user {
			return badRequest(errInvalidRequest, "client_id does not match the authenticated client")
		}
	} else {
		user, pass = form.Get("client_id"), form.Get("client_secret")
	}
	if user != cfg.ClientID {
		return unauthorized
	}
	if cfg.ClientSecret != "" && subtle.ConstantTimeCompare([]byte(pass), []byte(cfg.ClientSecret)) != 1 {
		return unauthorized
	}
	return nil
}

// handleToken implements the token endpoint (RFC 6749 §3.2) for the
// authorization_code (§4.1.3), refresh_token (§6) and device_code (RFC 8628
// §3.4) grants.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	form, terr := s.parsePost(r, true)
	if terr != nil {
		writeTokenError(w, terr)
		return
	}
	cfg := s.config()
	grant := form.Get("grant_type")
	s.mu.Lock()
	switch grant {
	case "authorization_code":
		s.counts.CodeExchange++
	case "refresh_token":
		s.counts.Refresh++
	case deviceCodeGrant:
		s.counts.DevicePoll++
	case "client_credentials":
		s.counts.ClientCredentials++
	}
	s.mu.Unlock()

	var resp *tokenResponse
	if terr = authenticateClient(r, form, cfg); terr == nil {
		switch grant {
		case "authorization_code":
			resp, terr = s.exchangeCode(form, cfg)
		case "refresh_token":
			resp, terr = s.refreshGrant(form, cfg)
			if terr != nil {
				s.mu.Lock()
				s.counts.RefreshRejected++
				s.mu.Unlock()
			}
		case deviceCodeGrant:
			resp, terr = s.pollDevice(form, cfg)
		case "client_credentials":
			resp, terr = clientCredentials(form, cfg)
		case "":
			terr = badRequest(errInvalidRequest, "missing grant_type")
		default:
			terr = badRequest("unsupported_grant_type", "unsupported grant_type")
		}
	} else if grant == "refresh_token" {
		s.mu.Lock()
		s.counts.RefreshRejected++
		s.mu.Unlock()
	}
	if terr != nil {
		writeTokenError(w, terr)
		return
	}
	body, err := s.mint(resp, cfg)
	if err != nil {
		writeTokenError(w, &tokenError{status: http.StatusInternalServerError, code: "server_error", desc: "signing failed"})
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// exchangeCode redeems an authorization code (RFC 6749 §4.1.3) after
// checking the PKCE verifier (RFC 7636 §4.6). A code is consumed by its first
// presentation; presenting it again also revokes the tokens issued for it
// (RFC 6749 §4.1.2).
func (s *Server) exchangeCode(form url.Values, cfg Config) (*tokenResponse, *tokenError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ac := s.codes[form.Get("code")]
	switch {
	case ac == nil:
		return nil, badRequest(errInvalidGrant, "unknown authorization code")
	case ac.used:
		if ac.family != nil {
			ac.family.revoked = true
		}
		return nil, badRequest(errInvalidGrant, "authorization code already used")
	}
	ac.used = true
	switch {
	case !cfg.Now().Before(ac.expiry):
		return nil, badRequest(errInvalidGrant, "authorization code expired")
	case ac.clientID != cfg.ClientID:
		return nil, badRequest(errInvalidGrant, "authorization code issued to another client")
	case form.Get("redirect_uri") != ac.redirectURI:
		return nil, badRequest(errInvalidGrant, "redirect_uri does not match the authorization request")
	case form.Get("code_verifier") == "":
		return nil, badRequest(errInvalidRequest, "missing code_verifier") // as Dex
	case !validVerifier(form.Get("code_verifier")):
		return nil, badRequest(errInvalidGrant, "malformed code_verifier (RFC 7636 §4.1)")
	case subtle.ConstantTimeCompare([]byte(s256Challenge(form.Get("code_verifier"))), []byte(ac.challenge)) != 1:
		return nil, badRequest(errInvalidGrant, "code_verifier does not match code_challenge")
	}
	resp := &tokenResponse{scopes: ac.scopes, nonce: ac.nonce, idToken: true}
	if !cfg.OmitRefreshToken && (!cfg.OfflineNeedsConsent || slices.Contains(ac.scopes, "offline_access")) {
		ac.family = &family{clientID: ac.clientID, scopes: ac.scopes}
		resp.refreshToken = s.newRefreshLocked(ac.family)
	}
	return resp, nil
}

// clientCredentials implements the client credentials grant (RFC 6749
// §4.4) for a confidential client: the scopes asked for (none means
// openid), no refresh token, and an ID token only with
// ClientCredentialsIDToken and openid among the scopes.
func clientCredentials(form url.Values, cfg Config) (*tokenResponse, *tokenError) {
	if cfg.ClientSecret == "" {
		return nil, badRequest("unauthorized_client", "the client credentials grant needs a confidential client")
	}
	scopes := strings.Fields(form.Get("scope"))
	return &tokenResponse{scopes: scopes, idToken: cfg.ClientCredentialsIDToken && slices.Contains(scopes, "openid")}, nil
}

// s256Challenge returns the S256 code challenge of verifier:
// BASE64URL(SHA256(ASCII(verifier))) (RFC 7636 §4.2).
func s256Challenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// validVerifier reports whether v has the syntax of RFC 7636 §4.1: 43 to 128
// characters of [A-Za-z0-9-._~].
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for _, c := range []byte(v) {
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

func (s *Server) newRefreshLocked(f *family) string {
	t := rand.Text()
	s.refresh[t] = &refreshToken{family: f}
	return t
}

// refreshGrant implements the refresh_token grant (RFC 6749 §6) with
// rotation (RFC 9700 §4.14.2).
func (s *Server) refreshGrant(form url.Values, cfg Config) (*tokenResponse, *tokenError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := s.refresh[form.Get("refresh_token")]
	switch {
	case rt == nil || rt.family.revoked:
		return nil, badRequest(errInvalidGrant, "unknown or revoked refresh token")
	case rt.superseded:
		if cfg.ReuseRevokesFamily {
			rt.family.revoked = true
		}
		return nil, badRequest(cfg.ReuseErrorCode, "refresh token already used")
	case rt.family.clientID != cfg.ClientID:
		return nil, badRequest(errInvalidGrant, "refresh token issued to another client")
	}
	scopes := rt.family.scopes
	if _, ok := form["scope"]; ok && cfg.RefuseRefreshScope {
		return nil, badRequest(errInvalidScope, "scope not accepted on refresh")
	}
	if _, ok := form["scope"]; ok {
		scopes = strings.Fields(form.Get("scope"))
		for _, sc := range scopes {
			if !slices.Contains(rt.family.scopes, sc) {
				return nil, badRequest(errInvalidScope, "scope exceeds the original grant")
			}
		}
	}
	resp := &tokenResponse{scopes: scopes, idToken: !cfg.OmitIDTokenOnRefresh && slices.Contains(scopes, scopeOpenID)}
	if !cfg.NoRotation {
		rt.superseded = true
		resp.refreshToken = s.newRefreshLocked(rt.family)
	}
	return resp, nil
}

// tokenResponse is what a successful grant yields, before signing.
type tokenResponse struct {
	scopes       []string
	nonce        string
	idToken      bool
	refreshToken string
}

// mint builds the JSON body of a successful token response (RFC 6749 §5.1;
// OIDC Core §3.1.3.3), signing the access token (RFC 9068) and ID token
// (OIDC Core §2).
func (s *Server) mint(tr *tokenResponse, cfg Config) (map[string]any, error) {
	now := cfg.Now()
	scope := strings.Join(tr.scopes, " ")
	at, err := sign(s.atSigner, map[string]any{
		"iss":       s.URL,
		"sub":       cfg.Subject,
		"aud":       cfg.ClientID,
		"client_id": cfg.ClientID,
		"scope":     scope,
		"iat":       now.Unix(),
		"exp":       now.Add(cfg.AccessTokenLifetime).Unix(),
		"jti":       rand.Text(),
	})
	if err != nil {
		return nil, err
	}
	body := map[string]any{
		"access_token": at,
		"token_type":   "Bearer",
		"scope":        scope,
	}
	if !cfg.OmitExpiresIn {
		body["expires_in"] = int64(math.Ceil(cfg.AccessTokenLifetime.Seconds()))
	}
	if tr.refreshToken != "" {
		body["refresh_token"] = tr.refreshToken
	}
	if tr.idToken {
		claims := map[string]any{
			"iss":            s.URL,
			"sub":            cfg.Subject,
			"aud":            cfg.ClientID,
			"azp":            cfg.ClientID,
			"iat":            now.Unix(),
			"exp":            now.Add(cfg.IDTokenLifetime).Unix(),
			"at_hash":        atHash(at),
			"email":          cfg.Email,
			"email_verified": true,
			"groups":         cfg.Groups,
		}
		if tr.nonce != "" {
			claims["nonce"] = tr.nonce
		}
		if cfg.IDTokenClaims != nil {
			cfg.IDTokenClaims(claims)
		}
		idt, err := sign(s.idSigner, claims)
		if err != nil {
			return nil, err
		}
		body["id_token"] = idt
	}
	return body, nil
}

// atHash is the at_hash of an RS256 ID token: the base64url of the left half
// of SHA-256 of the access token (OIDC Core §3.1.3.6).
func atHash(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}

func sign(signer jose.Signer, claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("marshal claims: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign jwt: %w", err)
	}
	return jws.CompactSerialize()
}

// handleRevoke implements token revocation (RFC 7009 §2.1, §2.2): revoking a
// refresh token revokes its whole family; unknown tokens and access tokens
// get 200 too.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	form, terr := s.parsePost(r, false)
	s.mu.Lock()
	s.counts.Revocation++
	cfg := s.cfg
	s.mu.Unlock()
	if terr == nil {
		terr = authenticateClient(r, form, cfg)
	}
	if terr == nil && form.Get("token") == "" {
		terr = badRequest(errInvalidRequest, "missing token")
	}
	if terr != nil {
		writeTokenError(w, terr)
		return
	}
	s.mu.Lock()
	rt := s.refresh[form.Get("token")]
	if rt != nil && rt.family.clientID == cfg.ClientID {
		rt.family.revoked = true
	}
	s.mu.Unlock()
	if rt == nil && cfg.JWTAccessTokensUnrevocable {
		writeTokenError(w, badRequest("unsupported_token_type", "JWT access tokens cannot be revoked"))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store") // RFC 6749 §5.1
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writePage(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	io.WriteString(w, msg+"\n")
}

// Browse is a minimal browser: it GETs rawURL with client, following
// redirects, and returns an error unless the final response is 2xx. The
// client must reach both the provider and the loopback redirect listener;
// nil means http.DefaultClient. Use it as the plugin's browser opener. Error
// strings carry no query, so no code or state leaks into logs.
func Browse(ctx context.Context, client *http.Client, rawURL string) error {
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return fmt.Errorf("browse: %w", redact(err))
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("browse: %w", redact(err))
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		u := resp.Request.URL
		return fmt.Errorf("browse %s://%s%s: %s", u.Scheme, u.Host, u.Path, resp.Status)
	}
	return nil
}

// redact strips the URL (which may carry a code or state) from a *url.Error,
// keeping its operation and cause.
func redact(err error) error {
	if ue, ok := err.(*url.Error); ok {
		if u, perr := url.Parse(ue.URL); perr == nil {
			u.RawQuery, u.Fragment, u.User = "", "", nil
			return &url.Error{Op: ue.Op, URL: u.String(), Err: ue.Err}
		}
		return &url.Error{Op: ue.Op, URL: "(redacted)", Err: ue.Err}
	}
	return err
}
