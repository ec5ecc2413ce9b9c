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
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// errNotDelivered marks a token request that certainly reached no token
// endpoint (no connection, or a 404 where the endpoint should be), so a
// refresh token sent with it is unspent and may be sent elsewhere.
var errNotDelivered = errors.New("token request not delivered")

// maxTokenResponseBytes caps what latchkey reads of a token response.
const maxTokenResponseBytes = 1 << 20

// maxExpiresIn is the longest expires_in latchkey believes; a larger value is
// treated as absent.
const maxExpiresIn = 366 * 24 * time.Hour

// postToken sends a token request (RFC 6749 §3.2) with form and decodes the
// response. Public clients send client_id in the body, confidential ones
// authenticate with HTTP Basic (§2.3.1). An error response (§5.2) is an
// *oauth2.RetrieveError carrying its error code.
func postToken(ctx context.Context, hc *http.Client, cfg *oauth2.Config, form url.Values, now time.Time) (*tokenResponse, error) {
	resp, body, err := postForm(ctx, hc, cfg, cfg.Endpoint.TokenURL, form)
	if err != nil {
		var dns *net.DNSError
		var op *net.OpError
		if errors.As(err, &dns) || errors.As(err, &op) && op.Op == "dial" {
			// The request never left: nothing was redeemed.
			return nil, fmt.Errorf("%w: token request: %w", errNotDelivered, err)
		}
		return nil, fmt.Errorf("token request: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if re := errorResponse(resp, body); re != nil {
			return nil, re
		}
		// Keep unknown bodies (proxies' HTML pages) out of messages.
		err := fmt.Errorf("token request: %s from %s", resp.Status, cfg.Endpoint.TokenURL)
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
		return nil, fmt.Errorf("token request: decode %s response: %w", ct, err)
	}
	if r.AccessToken == "" {
		return nil, fmt.Errorf("token request: response has no access_token")
	}
	if d, ok := expiresIn(r.ExpiresIn); ok {
		r.Expiry = now.Add(d)
	}
	return &r, nil
}

// postForm POSTs form to endpoint as cfg's client (the token, device
// authorization and revocation endpoints): a public client sends client_id
// in the body, a confidential one authenticates with HTTP Basic (RFC 6749
// §2.3.1). It returns the response with its body read, up to a limit; form
// is not changed.
func postForm(ctx context.Context, hc *http.Client, cfg *oauth2.Config, endpoint string, form url.Values) (*http.Response, []byte, error) {
	f := make(url.Values, len(form)+1)
	for k, v := range form {
		f[k] = append([]string(nil), v...)
	}
	if cfg.ClientSecret == "" {
		f.Set("client_id", cfg.ClientID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(f.Encode()))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if cfg.ClientSecret != "" {
		req.SetBasicAuth(url.QueryEscape(cfg.ClientID), url.QueryEscape(cfg.ClientSecret))
	}
	resp, err := hc.Do(req)
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

// expiresIn reads expires_in (RFC 6749 §5.1), a number of seconds that some
// providers send as a string. Missing, malformed, non-positive or absurdly
// large values are reported as absent.
func expiresIn(raw json.RawMessage) (time.Duration, bool) {
	n, err := strconv.ParseInt(strings.Trim(string(raw), `"`), 10, 64)
	if err != nil {
		return 0, false
	}
	return lifetime(n)
}

// lifetime converts an expires_in of n seconds, refusing non-positive and
// absurdly large values.
func lifetime(n int64) (time.Duration, bool) {
	if n <= 0 || n > int64(maxExpiresIn/time.Second) {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}
