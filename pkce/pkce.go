// Package pkce implements the OAuth 2.0 authorization code grant for native apps: PKCE (RFC 7636) and a loopback
// redirect listener (RFC 8252 §7.3).
//
// [Challenge] and [NewVerifier] are the PKCE primitives. [Login] runs one complete browser login: it listens on a
// loopback address, sends the person's browser (through a login link on that address, so that no command line shows
// the state) to the authorization endpoint with a fresh code_verifier, state and nonce, waits for exactly one valid
// authorization response on the redirect URI, and exchanges the code at the token endpoint.
package pkce // import "github.com/latchkey/latchkey/pkce"

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
)

// verifierBytes is the number of random octets behind a code_verifier, state or nonce: 256 bits, as RFC 7636 §4.1
// recommends (32 octets, base64url-encoded to 43 characters) and RFC 7636 §7.1 requires (at least 256 bits of
// entropy).
const verifierBytes = 32

// Challenge returns the S256 code_challenge for verifier (RFC 7636 §4.2): BASE64URL(SHA256(ASCII(verifier))), without
// padding (RFC 7636 Appendix A). It is a pure function; only the S256 method is supported, never "plain" (RFC 7636
// §7.2, RFC 9700 §2.1.1).
func Challenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// NewVerifier returns a new code_verifier (RFC 7636 §4.1): 43 characters of the unreserved set [A-Za-z0-9-_],
// base64url-encoded from 32 octets of crypto/rand output, which gives the 256 bits of entropy RFC 7636 §7.1 asks for.
// Use a new verifier for every authorization request.
func NewVerifier() string {
	return randomString()
}

// randomString returns 32 octets from crypto/rand, base64url-encoded without padding (43 characters). It is used for
// the code_verifier, the state (RFC 6749 §10.12, RFC 9700 §4.7.1) and the OIDC nonce (OpenID Connect Core §3.1.2.1).
func randomString() string {
	b := make([]byte, verifierBytes)
	// crypto/rand.Read never returns an error since Go 1.24: it crashes the program irrecoverably instead of handing
	// back predictable bytes.
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
