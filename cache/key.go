package cache

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"maps"
	"slices"
)

// keyFormat prefixes the canonical encoding of a [Key]. Changing the encoding
// in any way must change this prefix, so that old and new IDs never collide.
const keyFormat = "latchkey/cache.Key/v1\x00"

// Key identifies one token entry: the tokens a given client obtained from a
// given issuer for a given set of scopes and authorization request parameters.
//
// The client secret is deliberately not part of the key: it does not change
// which tokens the issuer hands out, and it must never reach the disk.
type Key struct {
	// Issuer is the OpenID Provider's issuer identifier (OIDC Discovery 1.0
	// §3). It is compared exactly, without normalization, as the issuer is.
	Issuer string `json:"issuer"`
	// ClientID is the OAuth 2.0 client identifier (RFC 6749 §2.2).
	ClientID string `json:"client_id"`
	// Scopes are the requested scopes (RFC 6749 §3.3). Order, duplicates and
	// empty strings do not affect the ID.
	Scopes []string `json:"scopes,omitempty"`
	// ExtraParams are additional authorization request parameters. Map order
	// does not affect the ID; a nil and an empty map are the same.
	ExtraParams map[string]string `json:"extra_params,omitempty"`
	// UseAccessToken reports whether the access token, rather than the ID
	// token, is handed to Kubernetes. latchkey no longer sets it (one login
	// serves both tokens); entries written before keep it.
	UseAccessToken bool `json:"use_access_token,omitempty"`
	// Grant names the grant when the tokens are the client's own rather
	// than a person's: "client-credentials" (RFC 6749 §4.4). Empty for a
	// person's login, whichever way the person logged in.
	Grant string `json:"grant,omitempty"`
}

// ID returns the hex-encoded SHA-256 of k's canonical encoding. It is stable
// across runs, processes, platforms and Go versions, and is used as the entry
// file name (see [Cache.Path]).
//
// The canonical encoding is the fixed prefix "latchkey/cache.Key/v1\x00"
// followed by, in order: Issuer; ClientID; the count of distinct non-empty
// scopes and each of them in ascending byte order; the count of ExtraParams
// and each key and value, in ascending key order; UseAccessToken as one
// byte 0 or 1; and, only when it is not empty, Grant. Every count is an unsigned varint and every string is its
// length as an unsigned varint followed by its bytes, so the encoding is
// prefix-free and unambiguous: ("a", "bc") and ("ab", "c") differ, and so do
// strings that differ only in invalid UTF-8 (which JSON would have replaced
// with U+FFFD).
func (k Key) ID() string {
	sum := sha256.Sum256(k.canonical())
	return hex.EncodeToString(sum[:])
}

// canonical returns the encoding of k that ID hashes.
func (k Key) canonical() []byte {
	scopes := make([]string, 0, len(k.Scopes))
	for _, s := range k.Scopes {
		if s != "" {
			scopes = append(scopes, s)
		}
	}
	slices.Sort(scopes)
	scopes = slices.Compact(scopes)

	b := make([]byte, 0, 256)
	b = append(b, keyFormat...)
	b = appendString(b, k.Issuer)
	b = appendString(b, k.ClientID)
	b = binary.AppendUvarint(b, uint64(len(scopes)))
	for _, s := range scopes {
		b = appendString(b, s)
	}
	b = binary.AppendUvarint(b, uint64(len(k.ExtraParams)))
	for _, name := range slices.Sorted(maps.Keys(k.ExtraParams)) {
		b = appendString(b, name)
		b = appendString(b, k.ExtraParams[name])
	}
	if k.UseAccessToken {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	if k.Grant != "" {
		// Appended only when set, so that the IDs of existing logins stay.
		b = appendString(b, k.Grant)
	}
	return b
}

// appendString appends s to b, prefixed with its length.
func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}
