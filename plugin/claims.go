package plugin

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrNotJWT reports a token that is not a JWS compact serialization with a
// JSON claims set.
var ErrNotJWT = errors.New("not a JWT")

// maxJWTBytes caps the tokens ParseClaims decodes.
const maxJWTBytes = 64 << 10

// Claims are the registered and OpenID Connect claims latchkey reads from a
// token (RFC 7519 §4.1, OpenID Connect Core §2 and §5.1).
type Claims struct {
	Issuer   string    `json:"iss"`
	Subject  string    `json:"sub"`
	Audience []string  `json:"aud"`
	Expiry   time.Time `json:"exp"`
	IssuedAt time.Time `json:"iat"`
	Email    string    `json:"email"`
	// EmailVerified is email_verified; nil when the token has none (some
	// providers leave it out unless configured, LemonLDAP::NG for one).
	EmailVerified *bool    `json:"email_verified"`
	Groups        []string `json:"groups"`
	Name          string   `json:"name"`
	Username      string   `json:"preferred_username"`
}

// ParseClaims decodes the claims of a JWT (RFC 7519 §7.2 steps 1-6, 10)
// WITHOUT verifying its signature: use it only to show or schedule, never to
// trust. aud may be a string or an array (§4.1.3); exp and iat are
// NumericDates (§2).
func ParseClaims(token string) (*Claims, error) {
	if len(token) > maxJWTBytes {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrNotJWT, maxJWTBytes)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: %d parts, want 3", ErrNotJWT, len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("%w: payload is not base64url", ErrNotJWT)
	}
	var raw struct {
		Issuer        string          `json:"iss"`
		Subject       string          `json:"sub"`
		Audience      json.RawMessage `json:"aud"`
		Expiry        json.Number     `json:"exp"`
		IssuedAt      json.Number     `json:"iat"`
		Email         string          `json:"email"`
		EmailVerified json.RawMessage `json:"email_verified"`
		Groups        json.RawMessage `json:"groups"`
		Name          string          `json:"name"`
		Username      string          `json:"preferred_username"`
	}
	d := json.NewDecoder(bytes.NewReader(payload))
	d.UseNumber()
	if err := d.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrNotJWT, err)
	}
	c := &Claims{Issuer: raw.Issuer, Subject: raw.Subject, Email: raw.Email, Name: raw.Name, Username: raw.Username}
	if c.Audience, err = stringOrList(raw.Audience); err != nil {
		return nil, fmt.Errorf("%w: aud: %v", ErrNotJWT, err)
	}
	if c.Groups, err = stringOrList(raw.Groups); err != nil {
		return nil, fmt.Errorf("%w: groups: %v", ErrNotJWT, err)
	}
	if c.Expiry, err = numericDate(raw.Expiry); err != nil {
		return nil, fmt.Errorf("%w: exp: %v", ErrNotJWT, err)
	}
	if c.IssuedAt, err = numericDate(raw.IssuedAt); err != nil {
		return nil, fmt.Errorf("%w: iat: %v", ErrNotJWT, err)
	}
	// email_verified is a boolean, but some providers send "true".
	if len(raw.EmailVerified) > 0 && string(raw.EmailVerified) != "null" {
		v := string(raw.EmailVerified) == "true" || string(raw.EmailVerified) == `"true"`
		c.EmailVerified = &v
	}
	return c, nil
}

func stringOrList(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return []string{s}, nil
	}
	var l []string
	if err := json.Unmarshal(raw, &l); err != nil {
		return nil, errors.New("neither a string nor an array of strings")
	}
	return l, nil
}

// numericDate converts seconds since the epoch, possibly fractional, to a
// time; an absent value is the zero time.
func numericDate(n json.Number) (time.Time, error) {
	if n == "" {
		return time.Time{}, nil
	}
	f, err := n.Float64()
	if err != nil || f < 0 || f > 1e11 {
		return time.Time{}, fmt.Errorf("%q is not a plausible date", n)
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)).UTC(), nil
}
