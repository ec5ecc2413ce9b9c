package plugin

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/latchkey/latchkey/cache"
)

// Flyte's admin service publishes, without authentication, what its command
// line tools need to log in (flyteidl's AuthMetadataService).
const (
	// FlyteMetadataPath serves the authorization server metadata (RFC 8414
	// §3) of the deployment's authorization server, Flyte's own or an
	// external one.
	FlyteMetadataPath = "/.well-known/oauth-authorization-server"
	// FlyteClientConfigPath serves the public client configuration: client
	// id, redirect URI, scopes, token header name and audience.
	FlyteClientConfigPath = "/config/v1/flyte_client"
)

// Defaults of a Flyte deployment for what its client configuration leaves
// out: those of flyteadmin's built-in authorization server.
const (
	DefaultFlyteClientID    = "flytectl"
	DefaultFlyteRedirectURI = "http://localhost:53593/callback"
)

// defaultFlyteScopes are the scopes requested when a Flyte deployment
// advertises none.
var defaultFlyteScopes = []string{"all", "offline"}

// flyteKeyPrefix starts the cache key's Issuer of a Flyte login, which is
// derived from the Flyte endpoint (the issuer is known only after discovery).
// No issuer identifier starts with it: issuers are https URLs.
const flyteKeyPrefix = "flyte:"

// normalizeFlyteEndpoint returns the http(s) URL of a Flyte endpoint as
// people write it: a URL, a bare host[:port], or flytectl's
// dns:///host[:port] (https, or http when insecure, as flytectl's
// admin.insecure says); without a trailing slash.
func normalizeFlyteEndpoint(s string, insecure bool) string {
	s = strings.TrimSpace(s)
	scheme := "https://"
	if insecure {
		scheme = "http://"
	}
	if rest, ok := strings.CutPrefix(s, "dns:///"); ok {
		s = scheme + rest
	} else if !strings.Contains(s, "://") && s != "" {
		s = scheme + s
	}
	return strings.TrimRight(s, "/")
}

// InsecureWarning returns what to tell the person each time the options
// reach the issuer or a Flyte endpoint over plain http off loopback, or "".
func (o *Options) InsecureWarning() string {
	what, raw := "the Flyte endpoint", flyteSource{o}.endpoint()
	if o.FlyteEndpoint == "" {
		what, raw = "the issuer", o.IssuerURL
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || isLoopback(u.Hostname()) {
		return ""
	}
	return what + " " + u.Host + " is reached over plain http (--insecure): anyone on the network path can read and change what it sends, tokens included"
}

// source returns where the options' login comes from: the Flyte deployment
// with --flyte-endpoint, else the issuer's OpenID Connect discovery.
func (o *Options) source() source {
	if o.FlyteEndpoint != "" {
		return flyteSource{o}
	}
	return oidcSource{o}
}

// FromKey sets the options that make up a cache key from k, so that o.Key()
// returns k again (`latchkey logout --all` rebuilds each login's options from
// its entry this way).
func (o *Options) FromKey(k cache.Key) {
	o.IssuerURL, o.FlyteEndpoint = k.Issuer, ""
	if ep, ok := strings.CutPrefix(k.Issuer, flyteKeyPrefix); ok {
		o.FlyteEndpoint, o.IssuerURL, _ = strings.Cut(ep, "#")
	}
	o.ClientID, o.AuthParams, o.UseAccessToken = k.ClientID, k.ExtraParams, k.UseAccessToken
	if k.Grant != "" {
		o.GrantType = k.Grant
	}
	o.ExtraScopes = nil
	for _, s := range k.Scopes {
		if s != "openid" || o.FlyteEndpoint != "" {
			o.ExtraScopes = append(o.ExtraScopes, s)
		}
	}
}

// FlyteClient is the public client registration a Flyte deployment
// advertises to its command-line tools at FlyteClientConfigPath (flyteidl's
// PublicClientAuthConfigResponse).
type FlyteClient struct {
	// Endpoint is the deployment's URL the configuration was fetched from.
	Endpoint string `json:"endpoint"`
	// ClientID is the OAuth client identifier to log in with (RFC 6749
	// §2.2).
	ClientID string `json:"client_id,omitempty"`
	// RedirectURI is the redirect URI registered for the client (RFC 6749
	// §3.1.2), used verbatim.
	RedirectURI string `json:"redirect_uri,omitempty"`
	// Scopes are the scopes to request (RFC 6749 §3.3).
	Scopes []string `json:"scopes,omitempty"`
	// AuthorizationMetadataKey is the request header (gRPC metadata key)
	// the deployment reads the token from, "authorization" by default.
	AuthorizationMetadataKey string `json:"authorization_metadata_key,omitempty"`
	// Audience, if set, is sent as the audience authorization request
	// parameter (Auth0 and others issue JWT access tokens for it).
	Audience string `json:"audience,omitempty"`
}

// flyteSource resolves a login from --flyte-endpoint: the deployment
// publishes its authorization server's metadata and the client to log in
// as; flags override what it publishes.
type flyteSource struct{ o *Options }

func (s flyteSource) endpoint() string {
	return normalizeFlyteEndpoint(s.o.FlyteEndpoint, s.o.Insecure)
}

// validate checks that the endpoint is an http(s) URL; the issuer and
// client id are optional (discovered).
func (s flyteSource) validate() error {
	u, err := url.Parse(s.endpoint())
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%w: --flyte-endpoint %q is not an http(s) URL (e.g. https://flyte.example.com)", ErrUsage, s.o.FlyteEndpoint)
	}
	if s.o.IssuerURL != "" {
		return checkIssuerURL(s.o.IssuerURL)
	}
	return nil
}

// scopes are the --oidc-extra-scope values, without duplicates and without
// openid, which Flyte's authorization server does not know.
func (s flyteSource) scopes() []string {
	var out []string
	for _, v := range s.o.ExtraScopes {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// key is made of the endpoint, the issuer pin and the flags that change the
// tokens, never of discovered values, so that the cached path needs no
// network: "flyte:<endpoint>", with "#<issuer>" when --oidc-issuer-url pins
// one (an endpoint has no fragment), so that a pinned login is never served
// the tokens of an unpinned one, minted by whatever issuer that was.
func (s flyteSource) key() cache.Key {
	o := s.o
	issuer := flyteKeyPrefix + s.endpoint()
	if o.IssuerURL != "" {
		issuer += "#" + o.IssuerURL
	}
	return cache.Key{Issuer: issuer, ClientID: o.ClientID, Scopes: s.scopes(), ExtraParams: o.AuthParams, Grant: o.grantKey()}
}

func (s flyteSource) discover(ctx context.Context, hc *http.Client, now time.Time) (*Provider, error) {
	return discoverFlyte(ctx, hc, s.endpoint(), s.o.IssuerURL, now)
}

func (s flyteSource) fits(p *Provider) bool {
	return p.Flyte != nil && p.Flyte.Endpoint == s.endpoint() && (s.o.IssuerURL == "" || p.Issuer == s.o.IssuerURL)
}

// resolve takes what no flag set from the deployment's client
// configuration: client id, scopes, the redirect URI (used verbatim unless
// --listen-address asks for a port of latchkey's choosing) and the audience
// parameter. The authorization request's parameters are resent with the
// code exchange unless --resend-auth-params=false: Flyte's authorization
// server wants them. Flyte takes the access token.
func (s flyteSource) resolve(p *Provider) *login {
	o, cc := s.o, p.Flyte
	if cc == nil {
		cc = &FlyteClient{}
	}
	l := &login{
		provider:         p,
		clientID:         cmp.Or(o.ClientID, cc.ClientID, DefaultFlyteClientID),
		clientSecret:     o.ClientSecret,
		scopes:           s.scopes(),
		authParams:       o.AuthParams,
		redirectURL:      o.RedirectURL,
		listenAddresses:  o.ListenAddresses,
		resendAuthParams: o.ResendAuthParams == nil || *o.ResendAuthParams,
		accessToken:      true,
	}
	if len(l.scopes) == 0 {
		l.scopes = slices.Clone(cc.Scopes)
	}
	if len(l.scopes) == 0 {
		l.scopes = slices.Clone(defaultFlyteScopes)
	}
	if o.RedirectURL == "" && len(o.ListenAddresses) == 0 {
		l.redirectURL = cmp.Or(cc.RedirectURI, DefaultFlyteRedirectURI)
	}
	switch aud, set := o.AuthParams["audience"]; {
	case cc.Audience != "" && !set:
		l.authParams = maps.Clone(o.AuthParams)
		if l.authParams == nil {
			l.authParams = make(map[string]string, 1)
		}
		l.authParams["audience"] = cc.Audience
	case set && aud == "":
		// --oidc-auth-request-extra-params=audience= : none at all.
		l.authParams = maps.Clone(o.AuthParams)
		delete(l.authParams, "audience")
	}
	return l
}

func (s flyteSource) describe() string {
	who := "Flyte " + s.endpoint()
	if s.o.ClientID != "" {
		who += ", client " + s.o.ClientID
	}
	return who
}

// flyteMetadata is the part of the RFC 8414 §2 metadata that is not kept in
// cache.Provider.
type flyteMetadata struct {
	CodeChallengeMethods []string `json:"code_challenge_methods_supported"`
}

// discoverFlyte fetches a Flyte deployment's authorization server metadata
// (RFC 8414 §3) and public client configuration from endpoint, then the
// server's JWKS (RFC 7517 §5) if it advertises one.
//
// The issuer: RFC 8414 §3.3 wants the metadata's issuer to be the URL the
// well-known path was appended to, but Flyte serves at its own endpoint the
// metadata of whichever authorization server it uses, its own (whose issuer
// is configured, and often differs from the endpoint behind a proxy) or an
// external IdP's. latchkey therefore trusts the issuer the endpoint names,
// as flytectl and flytekit do: the metadata came over TLS from the endpoint
// the person configured. That issuer then binds the login: RFC 9207 iss
// parameters and any ID token must carry it. A person who knows the issuer
// pins it with --oidc-issuer-url (want), and a different one is refused.
func discoverFlyte(ctx context.Context, hc *http.Client, endpoint, want string, now time.Time) (*Provider, error) {
	u := endpoint + FlyteMetadataPath
	var raw json.RawMessage
	if err := getJSON(ctx, hc, u, &raw); err != nil {
		// A sandbox may serve gRPC (flytectl's admin.endpoint) and the HTTP
		// API, where the metadata are, on two ports.
		return nil, fmt.Errorf("%w: %w (if the deployment serves its HTTP API on another port than gRPC, as sandboxes may, "+
			"give that one with --flyte-endpoint)", ErrDiscovery, err)
	}
	var p Provider
	var m flyteMetadata
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("%w: get %s: decode JSON: %v", ErrDiscovery, u, err)
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%w: get %s: decode JSON: %v", ErrDiscovery, u, err)
	}
	switch {
	case p.Issuer == "":
		return nil, fmt.Errorf("%w: %s has no issuer (RFC 8414 §2)", ErrDiscovery, u)
	case want != "" && p.Issuer != want:
		return nil, fmt.Errorf("%w: %s says its issuer is %q, want %q (--oidc-issuer-url)", ErrDiscovery, u, p.Issuer, want)
	case p.AuthorizationEndpoint == "" || p.TokenEndpoint == "":
		return nil, fmt.Errorf("%w: %s lacks authorization_endpoint or token_endpoint", ErrDiscovery, u)
	case m.CodeChallengeMethods != nil && !slices.Contains(m.CodeChallengeMethods, "S256"):
		// RFC 8414 §2: absent means no PKCE support declared, which many
		// servers omit; a list without S256 would refuse latchkey's.
		return nil, fmt.Errorf("%w: %s does not support PKCE with S256 (code_challenge_methods_supported %q)", ErrDiscovery, u, m.CodeChallengeMethods)
	}

	// The endpoint is what the person configured; the issuer it names is
	// trusted, but not to downgrade the endpoints to http.
	if err := checkEndpoints(endpoint, &p); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrDiscovery, u, err)
	}

	cu := endpoint + FlyteClientConfigPath
	var cc FlyteClient
	if err := getJSON(ctx, hc, cu, &cc); err != nil {
		return nil, fmt.Errorf("%w: Flyte client configuration: %w", ErrDiscovery, err)
	}
	cc.Endpoint = endpoint
	p.Flyte = &cc

	p.FetchedAt = now
	return &p, nil
}
