package pkce

import (
	"regexp"
	"testing"
)

func TestChallengeRFC7636AppendixB(t *testing.T) {
	const (
		verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
		want     = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
	)
	if got := Challenge(verifier); got != want {
		t.Errorf("Challenge(%q) = %q, want %q", verifier, got, want)
	}
}

// verifierRE is the code_verifier syntax of RFC 7636 §4.1 with the length this package produces.
var verifierRE = regexp.MustCompile(`^[A-Za-z0-9\-._~]{43}$`)

func TestNewVerifier(t *testing.T) {
	seen := make(map[string]bool)
	for range 100 {
		v := NewVerifier()
		if !verifierRE.MatchString(v) {
			t.Fatalf("NewVerifier() = %q: want 43 characters of [A-Za-z0-9-._~] (RFC 7636 §4.1)", v)
		}
		if seen[v] {
			t.Fatalf("NewVerifier() returned %q twice", v)
		}
		seen[v] = true
		// The challenge has the same shape: 32 octets of SHA-256, base64url without padding.
		if c := Challenge(v); len(c) != 43 || !verifierRE.MatchString(c) {
			t.Fatalf("Challenge(%q) = %q: want 43 base64url characters", v, c)
		}
	}
}
