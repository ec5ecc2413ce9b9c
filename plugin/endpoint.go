package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// errNotDelivered marks a token request that certainly reached no token
// endpoint (no connection, or a 404 where the endpoint should be), so a
// refresh token sent with it is unspent and may be sent elsewhere.
var errNotDelivered = errors.New("token request not delivered")

// maxTokenResponseBytes caps what latchkey reads of a response from the
// token, device authorization or revocation endpoint.
const maxTokenResponseBytes = 1 << 20

// maxExpiresIn is the longest expires_in latchkey believes; a larger value is
// treated as absent.
const maxExpiresIn = 366 * 24 * time.Hour

// tokenClient sends one OAuth client's requests to a provider's token,
// device authorization and revocation endpoints: every grant (the code
// exchange, refresh, device polling, client credentials) and revocation go
// through it, so client authentication, the response type and the
// classification of failures are written once. The HTTP client brings the
// rest: no redirects of a POST, time limits (newHTTPClient).
type tokenClient struct {
	hc           *http.Client
	clientID     string
	clientSecret string
	now          func() time.Time
}

// tokenResponse is a successful token endpoint response (RFC 6749 §5.1,
// OpenID Connect Core §3.1.3.3).
type tokenResponse struct {
	AccessToken  string          `json:"access_token"`
	TokenType    string          `json:"token_type"`
	RefreshToken string          `json:"refresh_token"`
	ExpiresIn    json.RawMessage `json:"expires_in"`
	IDToken      string          `json:"id_token"`
	Scope        string          `json:"scope"`
	// Expiry is computed from ExpiresIn; zero if it was absent or absurd.
	Expiry time.Time `json:"-"`
}

// post POSTs form to endpoint as the client: a public client sends
// client_id in the body, a confidential one authenticates with HTTP Basic
// (RFC 6749 §2.3.1). It returns the response with its body read, up to a
// limit; form is not changed.
func (t *tokenClient) post(ctx context.Context, endpoint string, form url.Values) (*http.Response, []byte, error) {
	f := make(url.Values, len(form)+1)
	for k, v := range form {
		f[k] = slices.Clone(v)
	}
	if t.clientSecret == "" {
		f.Set("client_id", t.clientID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(f.Encode()))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if t.clientSecret != "" {
		req.SetBasicAuth(url.QueryEscape(t.clientID), url.QueryEscape(t.clientSecret))
	}
	// A POST is not retried on a kept-alive connection the server closed
	// as the request went out (Node, hence oidc-provider, closes idle
	// connections after 5 s: the browser login and the device polls wait
	// longer). These requests are few: each goes on a new connection.
	t.hc.CloseIdleConnections()
	resp, err := t.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponseBytes))
	if err != nil {
		return nil, nil, fmt.Errorf("read response: %w", err)
	}
	return resp, body, nil
}

// token sends a token request (RFC 6749 §3.2) with form to endpoint and
// decodes the response. An error response (§5.2) is an
// *oauth2.RetrieveError carrying its error code; a request that certainly
// reached no token endpoint wraps errNotDelivered. classify tells what a
// failure means.
func (t *tokenClient) token(ctx context.Context, endpoint string, form url.Values) (*tokenResponse, error) {
	resp, body, err := t.post(ctx, endpoint, form)
	if err != nil {
		var dns *net.DNSError
		var op *net.OpError
		if errors.As(err, &dns) || errors.As(err, &op) && op.Op == "dial" {
			// The request never left: nothing was redeemed.
			return nil, fmt.Errorf("%w: token request: %w", errNotDelivered, err)
		}
		return nil, fmt.Errorf("token request: %w", err)
	}
	return decodeToken(resp, body, endpoint, t.now())
}

// decodeToken reads a token endpoint's response (RFC 6749 §5.1, §5.2) to a
// request sent to endpoint at now. It is a pure function of its input, which
// comes from the network: fuzzed by FuzzDecodeToken.
func decodeToken(resp *http.Response, body []byte, endpoint string, now time.Time) (*tokenResponse, error) {
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if re := errorResponse(resp, body); re != nil {
			return nil, re
		}
		// Keep unknown bodies (proxies' HTML pages) out of messages, and the
		// status text: only its code.
		err := fmt.Errorf("token request: %d %s from %s", resp.StatusCode, http.StatusText(resp.StatusCode), endpoint)
		switch resp.StatusCode {
		case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusGone:
			// No token endpoint there: nothing was redeemed.
			return nil, fmt.Errorf("%w: %w", errNotDelivered, err)
		}
		return nil, err
	}
	var r tokenResponse
	if err := json.Unmarshal(body, &r); err != nil {
		ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		return nil, fmt.Errorf("token request: decode %s response: %v", ct, jsonError(err))
	}
	if r.AccessToken == "" {
		return nil, fmt.Errorf("token request: response has no access_token")
	}
	if d, ok := expiresIn(r.ExpiresIn); ok {
		r.Expiry = now.Add(d)
	}
	return &r, nil
}

// jsonError describes a json.Unmarshal error without quoting the input,
// which holds tokens.
func jsonError(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("malformed JSON at byte %d", syntax.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("JSON field %q has the wrong type", typ.Field)
	}
	return "malformed JSON"
}

// errorResponse decodes an OAuth error response (RFC 6749 §5.2), or returns
// nil if the body carries no error code.
func errorResponse(resp *http.Response, body []byte) *oauth2.RetrieveError {
	var e struct {
		Code        string `json:"error"`
		Description string `json:"error_description"`
		URI         string `json:"error_uri"`
	}
	if json.Unmarshal(body, &e) != nil || e.Code == "" {
		return nil
	}
	return &oauth2.RetrieveError{Response: resp, Body: body, ErrorCode: e.Code, ErrorDescription: e.Description, ErrorURI: e.URI}
}

// errorCode returns the OAuth error code of a token request's error
// response (RFC 6749 §5.2), or "".
func errorCode(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}

// serverError tells whether err is a 5xx error response.
func serverError(err error) bool {
	var re *oauth2.RetrieveError
	return errors.As(err, &re) && re.Response != nil && re.Response.StatusCode >= 500
}

// failure is what a failed grant means for the caller, whatever the grant.
type failure int

const (
	// unreachable: the provider gave no usable answer (network, timeout,
	// a 5xx or a body that is no OAuth error). The tokens are kept and no
	// login starts: a login would not cure it.
	unreachable failure = iota
	// refused: the provider refused the grant itself (the refresh token is
	// expired, revoked or reused). Only a new login cures it.
	refused
	// rejected: the provider answered with another OAuth error (a client
	// or scope it does not accept). A new login would fail the same way.
	rejected
)

// classify tells what a token request's error means. A refusal is a 400 or
// 401 error response with invalid_grant (RFC 6749 §5.2), or invalid_request,
// which Dex answers for a refresh token already claimed; or a 5xx other
// than 502, 503 and 504 that is an OAuth error document: flyteadmin answers
// an expired or unusable refresh token with 500 server_error. errRefreshRefused
// marks a response that does not give what was asked for. A provider that
// is down (no connection, a timeout, 502, 503, 504, or a 5xx that is no
// OAuth error document, such as a proxy's page) is unreachable.
func classify(err error) failure {
	if errors.Is(err, errRefreshRefused) {
		return refused
	}
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response == nil {
		return unreachable
	}
	switch s := re.Response.StatusCode; {
	case (s == http.StatusBadRequest || s == http.StatusUnauthorized) && (re.ErrorCode == "invalid_grant" || re.ErrorCode == "invalid_request"):
		return refused
	case s == http.StatusBadGateway || s == http.StatusServiceUnavailable || s == http.StatusGatewayTimeout:
		return unreachable
	case s >= 500:
		return refused
	}
	return rejected
}

// expiresIn reads expires_in (RFC 6749 §5.1), a number of seconds that some
// providers send as a string. Missing, malformed, non-positive or absurdly
// large values are reported as absent.
func expiresIn(raw json.RawMessage) (time.Duration, bool) {
	n, err := strconv.ParseInt(strings.Trim(string(raw), `"`), 10, 64)
	if err != nil || n <= 0 || n > int64(maxExpiresIn/time.Second) {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}
