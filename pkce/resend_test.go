package pkce

import (
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoginResendAuthParams(t *testing.T) {
	for _, resend := range []bool{false, true} {
		idp := newFakeIdP(t)
		var got *page
		l := idp.login(browse(t, &got))
		l.Request.Params = map[string]string{"audience": "flyte"}
		l.ResendAuthParams = resend
		if _, err := runLogin(t, l); err != nil {
			t.Fatalf("ResendAuthParams %v: Run: %v", resend, err)
		}
		auths, tokens, _ := idp.requests()
		if len(auths) != 1 || len(tokens) != 1 {
			t.Fatalf("ResendAuthParams %v: %d authorization and %d token requests, want 1 and 1", resend, len(auths), len(tokens))
		}
		auth, tok := auths[0], tokens[0]
		// The grant's own parameters are sent either way, once.
		own := url.Values{
			"grant_type":    {"authorization_code"},
			"code":          tok["code"],
			"code_verifier": tok["code_verifier"],
			"redirect_uri":  auth["redirect_uri"],
			"client_id":     {testClientID},
		}
		want := own
		if resend {
			want = url.Values{}
			for k, v := range auth {
				want[k] = v
			}
			for k, v := range own {
				want[k] = v
			}
			for _, k := range []string{"state", "scope", "code_challenge", "code_challenge_method", "audience", "nonce", "response_type"} {
				if auth.Get(k) == "" {
					t.Errorf("authorization request lacks %s", k)
				}
			}
		}
		if diff := cmp.Diff(want, tok); diff != "" {
			t.Errorf("ResendAuthParams %v: token request (-want +got):\n%s", resend, diff)
		}
	}
}
