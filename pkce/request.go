package pkce

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"

	"golang.org/x/oauth2"
)

// ErrStateMismatch means an authorization response whose state is missing or not the one the request sent
// (RFC 6749 §10.12, RFC 9700 §4.7.1): it does not answer this login.
var ErrStateMismatch = errors.New("pkce: authorization response state mismatch")

// Request is one authorization request of the authorization code grant (RFC 6749 §4.1.1) with PKCE (RFC 7636
// §4.3) and an OpenID Connect nonce (OpenID Connect Core §3.1.2.1), and the checks of its response. [Login] sends
// it through a loopback redirect; a caller that cannot receive the redirect shows [Request.URL] and hands what the
// person pastes to [Request.Pasted].
//
// The methods are pure: the random values come from [Request.Begin].
type Request struct {
	// AuthURL is the authorization endpoint (RFC 6749 §3.1).
	AuthURL string
	// ClientID is the client identifier (RFC 6749 §2.2).
	ClientID string
	// RedirectURI is the redirect_uri (RFC 6749 §3.1.2); [Login] sets it to the URI it listens on.
	RedirectURI string
	// Scopes are sent space-separated as scope (RFC 6749 §3.3).
	Scopes []string
	// Params are extra authorization request parameters (audience, prompt, resource, ...). They cannot override
	// the protocol's own: see [Validate].
	Params map[string]string
	// Issuer, if set, must equal the response's iss parameter when present (RFC 9207 §2.4, simple string
	// comparison). If empty, iss is not checked.
	Issuer string
	// RequireIss means the server advertises authorization_response_iss_parameter_supported (RFC 9207 §3): a
	// response without iss is then refused. It requires Issuer.
	RequireIss bool

	// Verifier is the code_verifier (RFC 7636 §4.1), State the state and Nonce the nonce; Begin sets them.
	Verifier, State, Nonce string
}

// Begin returns a copy of r with a fresh code_verifier, state and nonce, each 256 bits from crypto/rand. Every
// authorization request needs new ones.
func (r Request) Begin() *Request {
	r.Verifier, r.State, r.Nonce = NewVerifier(), randomString(), randomString()
	return &r
}

// URL returns the authorization request URL (RFC 6749 §4.1.1): response_type code, client_id, redirect_uri, scope,
// state, the Params in key order, nonce, and the S256 code_challenge (RFC 7636 §4.3).
func (r *Request) URL() string {
	cfg := oauth2.Config{
		ClientID:    r.ClientID,
		Endpoint:    oauth2.Endpoint{AuthURL: r.AuthURL},
		RedirectURL: r.RedirectURI,
		Scopes:      r.Scopes,
	}
	opts := make([]oauth2.AuthCodeOption, 0, len(r.Params)+2)
	for _, k := range slices.Sorted(maps.Keys(r.Params)) {
		opts = append(opts, oauth2.SetAuthURLParam(k, r.Params[k]))
	}
	opts = append(opts, oauth2.SetAuthURLParam("nonce", r.Nonce), oauth2.S256ChallengeOption(r.Verifier))
	return cfg.AuthCodeURL(r.State, opts...)
}

// Response checks an authorization response (RFC 6749 §4.1.2) and returns its code: the state must be this
// request's; iss, if present, must be Issuer, and must be present when RequireIss (RFC 9207 §2.4, checked before
// anything else of the response is believed); an error response becomes an [*AuthError].
func (r *Request) Response(q url.Values) (string, error) {
	if got := q["state"]; len(got) != 1 || subtle.ConstantTimeCompare([]byte(got[0]), []byte(r.State)) != 1 {
		return "", fmt.Errorf("%w: the response is not the answer to this login (wrong or missing state)", ErrStateMismatch)
	}
	if iss, ok := q["iss"]; ok {
		if len(iss) != 1 {
			return "", fmt.Errorf("%w: iss appears %d times", ErrIssuerMismatch, len(iss))
		}
		if r.Issuer != "" && iss[0] != r.Issuer {
			return "", fmt.Errorf("%w: got %q, want %q", ErrIssuerMismatch, iss[0], r.Issuer)
		}
	} else if r.RequireIss {
		return "", fmt.Errorf("%w: iss is missing but the server advertises it (RFC 9207 §3)", ErrIssuerMismatch)
	}
	if code := q.Get("error"); code != "" {
		return "", &AuthError{Code: code, Description: q.Get("error_description"), URI: q.Get("error_uri")}
	}
	code := q.Get("code")
	if code == "" {
		return "", errNoCode
	}
	return code, nil
}

// Pasted returns the authorization code in what a person pasted after a login whose redirect could not be
// received: either the code itself, or the authorization response as the redirect URL or its query string, which
// [Request.Response] checks. A bare code carries neither state nor iss; PKCE still binds it to this request.
func (r *Request) Pasted(pasted string) (string, error) {
	s := strings.TrimSpace(pasted)
	if s == "" {
		return "", errors.New("nothing was pasted")
	}
	query, isResponse := s, false
	if i := strings.IndexByte(s, '?'); i >= 0 {
		query, isResponse = s[i+1:], true
		if j := strings.IndexByte(query, '#'); j >= 0 {
			query = query[:j]
		}
	}
	q, err := url.ParseQuery(query)
	if !isResponse && (err != nil || (!q.Has("code") && !q.Has("state") && !q.Has("error"))) {
		if strings.ContainsAny(s, " \t") {
			return "", errors.New("the pasted text is neither a code nor a redirect URL")
		}
		return s, nil // a bare code
	}
	if err != nil {
		return "", errors.New("the pasted URL has a malformed query")
	}
	return r.Response(q)
}

// TokenForm returns the token request that redeems code (RFC 6749 §4.1.3): grant_type, code, redirect_uri and the
// code_verifier (RFC 7636 §4.5). With resend it also carries every parameter of the authorization request (client_id,
// response_type, scope, state, nonce, code_challenge, code_challenge_method and Params such as audience): Flyte's
// built-in authorization server wants them there (flytekit's add_request_auth_code_params_to_request_access_token_params),
// and standard servers ignore unknown token request parameters (RFC 6749 §3.2). Client authentication is the caller's.
func (r *Request) TokenForm(code string, resend bool) url.Values {
	form := url.Values{}
	if resend {
		u, err := url.Parse(r.URL())
		if err == nil {
			form = u.Query()
		}
	}
	form.Set("grant_type", "authorization_code")
	form.Set("code", code)
	form.Set("redirect_uri", r.RedirectURI)
	form.Set("code_verifier", r.Verifier)
	return form
}
