package plugin

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/latchkey/latchkey/cache"
	"github.com/latchkey/latchkey/pkce"
)

// login is one call's login, resolved once from the options and what the
// provider published: everything the requests of a login, a refresh or a
// revocation read. Nothing downstream looks at Options to find these.
type login struct {
	// provider is the metadata the login was resolved with; its Issuer is
	// the issuer the tokens come from.
	provider     *Provider
	clientID     string
	clientSecret string
	scopes       []string
	// authParams are the extra authorization request parameters.
	authParams map[string]string
	// redirectURL and listenAddresses say where the loopback redirect goes
	// (pkce.Login).
	redirectURL     string
	listenAddresses []string
	// resendAuthParams repeats the authorization request's parameters with
	// the code exchange (pkce.Request.TokenForm).
	resendAuthParams bool
	// accessToken: the token handed out is the access token, not the ID
	// token.
	accessToken bool
	// promptConsent adds prompt=consent to the authorization request
	// (unless a prompt is set): the provider grants offline_access only
	// with it (cache.Entry.OfflineNeedsConsent).
	promptConsent bool
}

// offline tells whether the login asks for a refresh token
// (offline_access, OpenID Connect Core §11).
func (l *login) offline() bool {
	return slices.Contains(l.scopes, "offline_access")
}

// request returns the authorization request of a login with PKCE.
func (l *login) request() pkce.Request {
	p := l.provider
	params := l.authParams
	if _, set := params["prompt"]; l.promptConsent && l.offline() && !set {
		params = maps.Clone(params)
		if params == nil {
			params = map[string]string{}
		}
		params["prompt"] = "consent"
	}
	return pkce.Request{
		AuthURL:    p.AuthorizationEndpoint,
		ClientID:   l.clientID,
		Scopes:     l.scopes,
		Params:     params,
		Issuer:     p.Issuer,
		RequireIss: p.IssParameterSupported,
	}
}

// tokenForm adds to a token request what every token request of the
// login carries: the resource indicator of the authorization request
// (RFC 8707 §2.2), without which a provider that honours it hands out an
// access token for no resource (opaque, not a JWT), after a refresh too.
func (l *login) tokenForm(form url.Values) url.Values {
	if r, ok := l.authParams["resource"]; ok {
		form.Set("resource", r)
	}
	return form
}

// client returns the client that sends this login's token and revocation
// requests.
func (l *login) client(hc *http.Client, now func() time.Time) *tokenClient {
	return &tokenClient{hc: hc, clientID: l.clientID, clientSecret: l.clientSecret, now: now}
}

// source is where a login's settings come from: an issuer's OpenID Connect
// discovery (oidcSource) or a Flyte deployment (flyteSource, flyte.go).
// Options.source picks it.
type source interface {
	// validate reports options this source cannot log in with.
	validate() error
	// key is the cache key of the login, known without the network. It
	// names a login, not the token printed: the ID token and the access
	// token come from one login (Dex keeps one refresh token per user and
	// client, so two logins would spend each other's).
	key() cache.Key
	// discover fetches the provider's metadata.
	discover(ctx context.Context, hc *http.Client, now time.Time) (*Provider, error)
	// fits tells whether metadata p, kept with a cache entry, was
	// discovered for these options.
	fits(p *Provider) bool
	// resolve completes the options with the metadata p.
	resolve(p *Provider) *login
	// describe names the login for messages: never a secret.
	describe() string
}

// oidcSource resolves a login from --oidc-issuer-url by OpenID Connect
// discovery.
type oidcSource struct{ o *Options }

func (s oidcSource) validate() error {
	o := s.o
	if o.IssuerURL == "" {
		return fmt.Errorf("%w: --oidc-issuer-url is required (or --flyte-endpoint)", ErrUsage)
	}
	if err := checkIssuerURL(o.IssuerURL); err != nil {
		return err
	}
	if u, _ := url.Parse(o.IssuerURL); u.Scheme == "http" && !isLoopback(u.Hostname()) && !o.Insecure {
		return fmt.Errorf("%w: --oidc-issuer-url %q is plain http off loopback: anyone on the network path could read the tokens; use https, or add --insecure to allow it", ErrUsage, o.IssuerURL)
	}
	if o.ClientID == "" {
		return fmt.Errorf("%w: --oidc-client-id is required", ErrUsage)
	}
	return nil
}

// checkIssuerURL requires an http(s) URL of --oidc-issuer-url.
func checkIssuerURL(s string) error {
	if u, err := url.Parse(s); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%w: --oidc-issuer-url %q is not an http(s) URL", ErrUsage, s)
	}
	return nil
}

// scopes are openid first, then the extra scopes in order, without
// duplicates.
//
// The client's own access token (client credentials without ID token
// output) is asked for without openid: there is no ID token to ask for.
func (s oidcSource) scopes() []string {
	var out []string
	if s.o.GrantType != GrantClientCredentials || !s.o.UseAccessToken {
		out = append(out, "openid")
	}
	for _, v := range s.o.ExtraScopes {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func (s oidcSource) key() cache.Key {
	o := s.o
	return cache.Key{Issuer: o.IssuerURL, ClientID: o.ClientID, Scopes: s.scopes(), ExtraParams: o.AuthParams, Grant: o.grantKey()}
}

func (s oidcSource) discover(ctx context.Context, hc *http.Client, now time.Time) (*Provider, error) {
	return discover(ctx, hc, s.o.IssuerURL, now)
}

func (s oidcSource) fits(p *Provider) bool {
	return p.Issuer == s.o.IssuerURL && p.Flyte == nil
}

func (s oidcSource) resolve(p *Provider) *login {
	o := s.o
	return &login{
		provider:         p,
		clientID:         o.ClientID,
		clientSecret:     o.ClientSecret,
		scopes:           s.scopes(),
		authParams:       o.AuthParams,
		redirectURL:      o.RedirectURL,
		listenAddresses:  o.ListenAddresses,
		resendAuthParams: o.ResendAuthParams != nil && *o.ResendAuthParams,
		accessToken:      o.UseAccessToken,
	}
}

func (s oidcSource) describe() string {
	return s.o.IssuerURL + ", client " + s.o.ClientID
}
