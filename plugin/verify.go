package plugin

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"

	"github.com/latchkey/latchkey/cache"
)

// errRefreshRefused marks a refresh whose response cannot be used in the
// way the person asked for (an ID token was wanted and none came back):
// only a new login cures it, as when the provider refuses the refresh token.
var errRefreshRefused = errors.New("refresh token refused")

// errNoRefreshIDToken marks a refresh response without the ID token that
// is to be printed: a refusal for the ID token (only a login gives one),
// while its access token and refresh token are good.
var errNoRefreshIDToken = fmt.Errorf("%w: the provider's refresh response has no ID token (OpenID Connect Core §12.2 allows that), "+
	"so every expiry of the ID token means a login; use --oidc-use-access-token where the API server takes the provider's JWT access tokens, "+
	"or give ID tokens a longer lifetime at the provider", errRefreshRefused)

// defaultAccessTokenLifetime is assumed when a token response has no
// usable expires_in (RFC 6749 §5.1 makes it optional).
const defaultAccessTokenLifetime = 5 * time.Minute

// newEntry checks a token response for login l and turns it into a cache
// entry. nonce is the nonce sent with the login ("" after a refresh or a
// device login); prev is the entry refreshed (nil after a login).
func newEntry(ctx context.Context, hc *http.Client, now func() time.Time, l *login, r *tokenResponse, nonce string, prev *cache.Entry) (*cache.Entry, error) {
	e := &cache.Entry{
		AccessToken:  r.AccessToken,
		TokenType:    r.TokenType,
		Expiry:       r.Expiry,
		RefreshToken: r.RefreshToken,
		Issuer:       l.provider.Issuer,
		Scope:        r.Scope,
	}
	if e.Scope == "" && prev != nil {
		e.Scope = prev.Scope
	}
	if e.RefreshToken == "" && prev != nil {
		// RFC 6749 §6: without a new refresh token the old one stays valid.
		e.RefreshToken = prev.RefreshToken
	}
	if e.Expiry.IsZero() {
		e.Expiry = now().Add(defaultAccessTokenLifetime)
	}
	switch {
	case r.IDToken != "":
		idt, err := verifyIDToken(ctx, hc, now, l, r.IDToken, nonce)
		if err != nil {
			return nil, err
		}
		if prev != nil && prev.IDToken != "" {
			// OIDC Core §12.2: a refreshed ID token is about the same
			// person.
			if old, err := ParseClaims(prev.IDToken); err == nil && old.Subject != idt.Subject {
				return nil, fmt.Errorf("verify ID token: the refreshed token is for subject %q, not %q", idt.Subject, old.Subject)
			}
		}
		e.IDToken, e.IDTokenExpiry = r.IDToken, idt.Expiry
	case prev != nil && l.accessToken:
		// OIDC Core §12.2: a refresh need not return an ID token.
		e.IDToken, e.IDTokenExpiry = prev.IDToken, prev.IDTokenExpiry
	case prev != nil:
		// Glewlwyd's refresh responses never carry one (OIDC Core §12.2
		// allows that): the entry keeps the refreshed access token (for
		// `latchkey token`), and only a login gives a new ID token.
		e.IDToken, e.IDTokenExpiry = prev.IDToken, prev.IDTokenExpiry
		return e, errNoRefreshIDToken
	case !l.accessToken:
		return nil, errors.New("the token response has no ID token (is the openid scope allowed for this client?)")
	}
	if l.accessToken && e.AccessToken == "" {
		return nil, errors.New("the token response has no access token")
	}
	return e, nil
}

// verifyIDToken checks an ID token's signature, issuer, audience, expiry,
// azp and, after a login, its nonce (OpenID Connect Core §3.1.3.7). Keys
// the provider rotated in are fetched and kept in l.provider.
func verifyIDToken(ctx context.Context, hc *http.Client, now func() time.Time, l *login, raw, nonce string) (*oidc.IDToken, error) {
	if unsigned(raw) {
		return nil, errors.New("verify ID token: it is not signed (alg none): latchkey takes only signed ID tokens; have the provider sign them (RS256 or ES256)")
	}
	ks := &keySet{hc: hc, p: l.provider, now: now()}
	algs := make([]string, len(signingAlgs))
	for i, a := range signingAlgs {
		algs[i] = string(a)
	}
	v := oidc.NewVerifier(l.provider.Issuer, ks, &oidc.Config{
		ClientID:             l.clientID,
		SupportedSigningAlgs: algs,
		Now:                  now,
	})
	idt, err := v.Verify(oidc.ClientContext(ctx, hc), raw)
	if err != nil {
		return nil, fmt.Errorf("verify ID token: %w", err)
	}
	if nonce != "" && idt.Nonce != nonce {
		return nil, errors.New("verify ID token: nonce does not match the login's (possible replay)")
	}
	var claims struct {
		AZP string `json:"azp"`
	}
	if err := idt.Claims(&claims); err != nil {
		return nil, fmt.Errorf("verify ID token: %w", err)
	}
	// §3.1.3.7 items 4-5: with several audiences azp is required, and
	// when present it must be this client.
	if (len(idt.Audience) > 1 || claims.AZP != "") && claims.AZP != l.clientID {
		return nil, fmt.Errorf("verify ID token: azp %q is not the client id", claims.AZP)
	}
	return idt, nil
}

// fetchJWKS returns the raw JSON Web Key Set (RFC 7517 §5) at u after
// checking that it parses.
func fetchJWKS(ctx context.Context, hc *http.Client, u string) (json.RawMessage, error) {
	var raw json.RawMessage
	if err := getJSON(ctx, hc, u, &raw); err != nil {
		return nil, fmt.Errorf("%w: keys: %w", ErrDiscovery, err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("%w: keys at %s: %v", ErrDiscovery, u, err)
	}
	return raw, nil
}

// keySet verifies JWS signatures with the provider's cached JWKS, fetching
// the JWKS again once when no cached key verifies (the provider rotated its
// keys). It implements oidc.KeySet.
type keySet struct {
	hc  *http.Client
	p   *Provider // updated with refetched keys, saved with the entry
	now time.Time
}

func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(jwt, signingAlgs)
	if err != nil {
		return nil, fmt.Errorf("parse ID token: %v", err)
	}
	if payload, err := verifyWith(jws, k.p.JWKS); err == nil {
		return payload, nil
	}
	raw, err := fetchJWKS(ctx, k.hc, k.p.JWKSURI)
	if err != nil {
		return nil, err
	}
	k.p.JWKS, k.p.FetchedAt = raw, k.now
	return verifyWith(jws, raw)
}

// unsigned tells whether jwt is an unsecured JWT (RFC 7519 §6: alg none,
// an empty signature, or none at all, as LemonLDAP::NG sends when told not
// to sign).
func unsigned(jwt string) bool {
	parts := strings.Split(jwt, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return false
	}
	h, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return false
	}
	var header struct {
		Alg string `json:"alg"`
	}
	return json.Unmarshal(h, &header) == nil && strings.EqualFold(header.Alg, "none")
}

// signingAlgs are the JWS algorithms latchkey accepts for ID tokens; "none"
// and HMAC are not among them.
var signingAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

func verifyWith(jws *jose.JSONWebSignature, raw json.RawMessage) ([]byte, error) {
	if len(raw) == 0 {
		return nil, errors.New("no keys")
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("decode keys: %v", err)
	}
	kid := ""
	if len(jws.Signatures) > 0 {
		kid = jws.Signatures[0].Header.KeyID
	}
	for _, key := range set.Keys {
		if key.Use != "" && key.Use != "sig" {
			continue
		}
		if kid != "" && key.KeyID != kid {
			continue
		}
		if payload, err := jws.Verify(key.Key); err == nil {
			return payload, nil
		}
	}
	return nil, errors.New("no provider key verifies the ID token signature")
}
