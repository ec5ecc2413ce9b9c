package idptest

import (
	"net/url"
	"strings"
	"testing"
)

func TestS256Challenge(t *testing.T) {
	// RFC 7636 Appendix B.
	got := s256Challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
	if want := "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"; got != want {
		t.Errorf("s256Challenge = %q, want %q", got, want)
	}
}

func TestValidVerifier(t *testing.T) {
	for v, want := range map[string]bool{
		"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk": true,
		strings.Repeat("a", 42):                       false,
		strings.Repeat("~", 128):                      true,
		strings.Repeat("a", 129):                      false,
		strings.Repeat("a", 42) + "+":                 false,
	} {
		if got := validVerifier(v); got != want {
			t.Errorf("validVerifier(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestIsLoopbackRedirect(t *testing.T) {
	for raw, want := range map[string]bool{
		"http://127.0.0.1:53000/callback": true,
		"http://127.9.8.7/cb":             true,
		"http://[::1]:8000/":              true,
		"http://localhost:8000/":          true,
		"https://127.0.0.1:8000/":         false,
		"http://10.0.0.1:8000/":           false,
		"http://example.com/":             false,
		"http://127.0.0.1:8000/#frag":     false,
		"http://u:p@127.0.0.1:8000/":      false,
		"com.example.app:/cb":             false,
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := isLoopbackRedirect(u); got != want {
			t.Errorf("isLoopbackRedirect(%s) = %v, want %v", raw, got, want)
		}
	}
}
