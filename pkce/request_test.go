package pkce

import (
	"errors"
	"strings"
	"testing"
)

func TestRequestPasted(t *testing.T) {
	const state, iss = "st4te", "https://idp.example"
	tests := []struct {
		name, pasted string
		requireIss   bool
		want         string
		wantErr      error
	}{
		{name: "bare code", pasted: "abc.DEF-123_~", want: "abc.DEF-123_~"},
		{name: "bare code with padding", pasted: "abc==", want: "abc=="},
		{name: "bare code although iss is required", pasted: "abc", requireIss: true, want: "abc"},
		{name: "URL", pasted: "http://localhost/?code=c1&state=st4te", want: "c1"},
		{name: "URL with fragment", pasted: "http://localhost/cb?code=c1&state=st4te#_=_", want: "c1"},
		{name: "oob-style query", pasted: "code=c1&state=st4te&iss=https%3A%2F%2Fidp.example", requireIss: true, want: "c1"},
		{name: "state missing", pasted: "http://localhost/?code=c1", wantErr: ErrStateMismatch},
		{name: "state twice", pasted: "http://localhost/?code=c1&state=st4te&state=st4te", wantErr: ErrStateMismatch},
		{name: "iss twice", pasted: "http://localhost/?code=c1&state=st4te&iss=" + iss + "&iss=" + iss, wantErr: ErrIssuerMismatch},
		{name: "iss required", pasted: "http://localhost/?code=c1&state=st4te", requireIss: true, wantErr: ErrIssuerMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := (&Request{State: state, Issuer: iss, RequireIss: tt.requireIss}).Pasted(tt.pasted)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Errorf("Pasted(%q) = %q, %v; want %q, %v", tt.pasted, got, err, tt.want, tt.wantErr)
			}
		})
	}

	_, err := (&Request{State: state, Issuer: iss}).Pasted("http://localhost/?error=access_denied&error_description=no&state=st4te")
	var ae *AuthError
	if !errors.As(err, &ae) || ae.Code != "access_denied" {
		t.Errorf("error response: got %v, want *AuthError access_denied", err)
	}
	if _, err := (&Request{State: state, Issuer: iss}).Pasted("two words"); err == nil {
		t.Error("text with spaces was taken for a code")
	}
	_, err = (&Request{State: state, Issuer: iss}).Pasted("http://localhost/?code=c0de&state=f0rged")
	if err == nil || strings.Contains(err.Error(), "f0rged") || strings.Contains(err.Error(), "c0de") || strings.Contains(err.Error(), state) {
		t.Errorf("state error %q must exist and echo neither state nor code", err)
	}
}
