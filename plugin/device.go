package plugin

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/latchkey/latchkey/internal/printable"
)

// ErrDeviceDenied reports that the person declined the device authorization
// request (access_denied, RFC 8628 §3.5).
var ErrDeviceDenied = errors.New("device login denied")

// ErrDeviceExpired reports that the device code expired before the person
// approved the request (expired_token, or its expires_in passed; RFC 8628
// §3.5).
var ErrDeviceExpired = errors.New("device code expired")

// errDeviceNotAllowed marks a device authorization request refused because
// this client may not use the grant (RFC 6749 §5.2 unauthorized_client or
// unsupported_grant_type), although the provider advertises it: nothing was
// shown to the person yet, so an automatic choice can fall back to another
// grant.
var errDeviceNotAllowed = errors.New("the client may not use the device authorization grant")

// deviceCodeGrantType is the grant_type of the device access token request
// (RFC 8628 §3.4).
const deviceCodeGrantType = "urn:ietf:params:oauth:grant-type:device_code"

// defaultDeviceInterval is the polling interval when the provider gives none
// (RFC 8628 §3.2).
const defaultDeviceInterval = 5 * time.Second

// slowDownStep is what each slow_down adds to the polling interval, for the
// rest of the login (RFC 8628 §3.5).
const slowDownStep = 5 * time.Second

// maxPollFailures is how many polls in a row may fail without an OAuth error
// response (a network error, a 5xx) before the device login gives up.
const maxPollFailures = 3

// deviceAuthResponse is a device authorization response (RFC 8628 §3.2).
type deviceAuthResponse struct {
	DeviceCode              string          `json:"device_code"`
	UserCode                string          `json:"user_code"`
	VerificationURI         string          `json:"verification_uri"`
	VerificationURIComplete string          `json:"verification_uri_complete"`
	ExpiresIn               json.RawMessage `json:"expires_in"`
	Interval                json.RawMessage `json:"interval"`
	// VerificationURL is Google's name for verification_uri.
	VerificationURL string `json:"verification_url"`
}

// device runs the device authorization grant (RFC 8628): it asks the
// provider for a device code, shows the person where to enter the user
// code, and polls the token endpoint until the person approves or declines,
// the code expires, or the authentication timeout passes. The ID token of a
// device grant carries no nonce; its signature, issuer, audience and expiry
// are verified.
func (f *flow) device(ctx context.Context) (*tokenResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	da, err := f.deviceAuthorization(ctx)
	if err != nil {
		return nil, fmt.Errorf("log in: %w", err)
	}
	start := f.now()
	var deadline time.Time
	if d, ok := expiresIn(da.ExpiresIn); ok {
		deadline = start.Add(d)
	}
	interval := defaultDeviceInterval
	if d, ok := expiresIn(da.Interval); ok {
		interval = d
	}
	f.showDeviceCode(ctx, da)

	form := f.l.tokenForm(url.Values{
		"grant_type":  {deviceCodeGrantType},
		"device_code": {da.DeviceCode},
	})
	failures := 0
	for {
		// RFC 8628 §3.4: wait the interval before every poll, the first
		// too, but no longer than the code lives.
		wait := interval
		if left := deadline.Sub(f.now()); !deadline.IsZero() && left < wait {
			wait = max(left, 0)
		}
		if err := f.sleep(ctx, wait); err != nil {
			return nil, f.deviceTimeout(err)
		}
		if !deadline.IsZero() && !f.now().Before(deadline) {
			return nil, fmt.Errorf("log in: %w: the code was not entered within %s; run the command again for a new one",
				ErrDeviceExpired, deadline.Sub(start))
		}
		r, err := f.tc.token(ctx, f.l.provider.TokenEndpoint, form)
		if err == nil {
			f.log.Debug("device login approved")
			return r, nil
		}
		if ctx.Err() != nil {
			return nil, f.deviceTimeout(ctx.Err())
		}
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) {
			// RFC 8628 §3.5: after a connection timeout, poll less often.
			if failures++; failures >= maxPollFailures {
				return nil, fmt.Errorf("log in: poll for the device login: %w", err)
			}
			interval *= 2
			f.log.Warn("polling for the device login failed; retrying", "err", err, "interval", interval)
			continue
		}
		failures = 0
		switch re.ErrorCode {
		case "authorization_pending":
		case "slow_down":
			interval += slowDownStep
			f.log.Debug("provider asked to poll more slowly", "interval", interval)
		case "access_denied":
			return nil, fmt.Errorf("log in: %w: the request was declined at the provider", ErrDeviceDenied)
		case "expired_token":
			return nil, fmt.Errorf("log in: %w: the code was not entered in time; run the command again for a new one", ErrDeviceExpired)
		default:
			return nil, fmt.Errorf("log in: poll for the device login: %w", err)
		}
	}
}

// deviceTimeout describes the end of a device login's context.
func (f *flow) deviceTimeout(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("log in: the device login was not approved within %s: %w", f.timeout, err)
	}
	return fmt.Errorf("log in: %w", err)
}

// deviceAuthorization sends the device authorization request (RFC 8628
// §3.1) with the login's scopes and authorization parameters (Auth0 needs
// audience here too), authenticated as the token client authenticates. An
// error response is an *oauth2.RetrieveError.
func (f *flow) deviceAuthorization(ctx context.Context) (*deviceAuthResponse, error) {
	endpoint := f.l.provider.DeviceAuthorizationEndpoint
	form := url.Values{}
	for k, v := range f.l.authParams {
		form.Set(k, v)
	}
	form.Set("scope", strings.Join(f.l.scopes, " "))
	resp, body, err := f.tc.post(ctx, endpoint, form)
	if err != nil {
		return nil, fmt.Errorf("device authorization request: %w", err)
	}
	da, err := decodeDeviceAuthorization(resp, body, endpoint)
	if err != nil {
		return nil, err
	}
	// The person is sent there (and the browser, with device-code): an
	// https URL for an https issuer, or http on loopback.
	secure := strings.HasPrefix(f.l.provider.Issuer, "https://")
	for _, u := range []string{da.VerificationURI, da.VerificationURIComplete} {
		if u == "" {
			continue
		}
		if openable(u) != nil || secure && !strings.HasPrefix(u, "https://") {
			return nil, fmt.Errorf("device authorization request: verification URI %q is not an https URL", printable.String(u))
		}
	}
	return da, nil
}

// decodeDeviceAuthorization reads a device authorization response (RFC 8628
// §3.2, §3.5) from endpoint. It is a pure function of its input, which comes
// from the network: fuzzed by FuzzDecodeDeviceAuthorization.
func decodeDeviceAuthorization(resp *http.Response, body []byte, endpoint string) (*deviceAuthResponse, error) {
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		re := errorResponse(resp, body)
		switch {
		case re == nil:
			return nil, fmt.Errorf("device authorization request: %d %s from %s", resp.StatusCode, http.StatusText(resp.StatusCode), endpoint)
		case re.ErrorCode == "unauthorized_client" || re.ErrorCode == "unsupported_grant_type":
			return nil, fmt.Errorf("device authorization request: %w: %w", errDeviceNotAllowed, re)
		}
		return nil, fmt.Errorf("device authorization request: %w", re)
	}
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct != "" && ct != "application/json" {
		return nil, fmt.Errorf("device authorization request: response is %s, not JSON", ct)
	}
	var da deviceAuthResponse
	if err := json.Unmarshal(body, &da); err != nil {
		return nil, fmt.Errorf("device authorization request: decode response: %v", jsonError(err))
	}
	if da.VerificationURI == "" {
		da.VerificationURI = da.VerificationURL
	}
	if da.DeviceCode == "" || da.UserCode == "" || da.VerificationURI == "" {
		return nil, errors.New("device authorization request: response lacks device_code, user_code or verification_uri")
	}
	return &da, nil
}

// showDeviceCode tells the person where to enter the user code (RFC 8628
// §3.3, §3.3.1). With --grant-type device-code and a browser at hand, it
// also opens verification_uri_complete (or verification_uri), where the
// person still confirms the code.
func (f *flow) showDeviceCode(ctx context.Context, da *deviceAuthResponse) {
	w := f.stderr
	// All three came from the provider: shown with control characters
	// escaped.
	fmt.Fprintf(w, "latchkey: to log in, visit this URL on any device:\n\n    %s\n\nand enter the code:\n\n    %s\n\n",
		printable.String(da.VerificationURI), printable.String(da.UserCode))
	if da.VerificationURIComplete != "" && da.VerificationURIComplete != da.VerificationURI {
		fmt.Fprintf(w, "or open this URL, which fills the code in for you (check that the page shows the same code):\n\n    %s\n\n",
			printable.String(da.VerificationURIComplete))
	}
	if f.o.GrantType != GrantDeviceCode || f.o.SkipOpenBrowser {
		return
	}
	if ok, _ := f.browserAvailable(); !ok {
		return
	}
	u := cmp.Or(da.VerificationURIComplete, da.VerificationURI)
	if err := f.open(ctx, u); err != nil {
		f.log.Debug("could not open the verification page", "err", err)
	}
}
