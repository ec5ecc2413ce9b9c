package plugin

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// The parsers of what providers and Flyte deployments send, fuzzed: token
// responses, device authorization responses, discovery metadata (through
// the endpoint checks) and flytectl's configuration. They must not panic,
// and what they accept must hold what latchkey then relies on.

func fuzzResponse(status int, ct string) *http.Response {
	return &http.Response{StatusCode: status, Status: http.StatusText(status), Header: http.Header{"Content-Type": {ct}}}
}

func FuzzDecodeToken(f *testing.F) {
	for _, s := range []string{
		`{"access_token":"at","token_type":"Bearer","expires_in":3600,"refresh_token":"rt","id_token":"a.b.c","scope":"openid"}`,
		`{"access_token":"at","expires_in":"60"}`,
		`{"access_token":"at","expires_in":1e15}`,
		`{"error":"invalid_grant","error_description":"x"}`,
		`{"error":"server_error"}`,
		`<html>oops</html>`,
		`{"access_token":5}`,
		``,
	} {
		for _, status := range []int{200, 400, 401, 404, 500, 503} {
			f.Add(status, "application/json", []byte(s))
		}
	}
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, status int, ct string, body []byte) {
		if status < 100 || status > 999 {
			return
		}
		r, err := decodeToken(fuzzResponse(status, ct), body, "https://idp.example/token", now)
		if err != nil {
			if r != nil {
				t.Fatal("a result with an error")
			}
			// The message quotes no body but an OAuth error's fields.
			if strings.Contains(err.Error(), "<html>") && !strings.Contains(string(body), `"error"`) {
				t.Fatalf("error %q quotes the body", err)
			}
			return
		}
		if status < 200 || status > 299 || r.AccessToken == "" {
			t.Fatalf("took status %d, access token %q", status, r.AccessToken)
		}
		if !r.Expiry.IsZero() && (!r.Expiry.After(now) || r.Expiry.After(now.Add(maxExpiresIn))) {
			t.Fatalf("expiry %v out of range", r.Expiry)
		}
	})
}

func FuzzDecodeDeviceAuthorization(f *testing.F) {
	for _, s := range []string{
		`{"device_code":"d","user_code":"U","verification_uri":"https://idp.example/device","expires_in":600,"interval":5}`,
		`{"device_code":"d","user_code":"U","verification_url":"https://google.example/device"}`,
		`{"error":"unauthorized_client"}`,
		`{"device_code":"d"}`,
	} {
		f.Add(200, "application/json", []byte(s))
		f.Add(400, "application/json", []byte(s))
	}
	f.Fuzz(func(t *testing.T, status int, ct string, body []byte) {
		if status < 100 || status > 999 {
			return
		}
		da, err := decodeDeviceAuthorization(fuzzResponse(status, ct), body, "https://idp.example/device/code")
		if err == nil && (da.DeviceCode == "" || da.UserCode == "" || da.VerificationURI == "") {
			t.Fatalf("took a response without device_code, user_code or verification_uri: %+v", da)
		}
	})
}

// FuzzCheckEndpoints: whatever authorization endpoint the checks of an https
// issuer's metadata take, latchkey may open in a browser.
func FuzzCheckEndpoints(f *testing.F) {
	for _, s := range []string{"https://idp.example/auth", "http://127.0.0.1:5556/auth", "file:///x#", `\\host\share`, "https:", "HTTPS://IDP/auth", "http://[::1]/a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, auth string) {
		p := &Provider{AuthorizationEndpoint: auth, TokenEndpoint: "https://idp.example/token"}
		if auth != "" && checkEndpoints("https://idp.example", p) == nil { // discovery requires one
			if err := openable(auth); err != nil {
				t.Fatalf("metadata took authorization endpoint %q, which is not to be opened: %v", auth, err)
			}
		}
	})
}

func FuzzParseFlytectlConfig(f *testing.F) {
	f.Add(flytectlYAML)
	f.Add("admin:\n  endpoint: 'a''b'\n  scopes: [a, \"b\"]\n  insecure: yes\n")
	f.Fuzz(func(t *testing.T, doc string) {
		c, err := parseFlytectlConfig(doc)
		if err == nil && c == nil {
			t.Fatal("nil config without an error")
		}
	})
}
