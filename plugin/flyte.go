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
// people write it: a URL, a bare host[:port] (https), or flytectl's
// dns:///host[:port] (https); without a trailing slash.
func normalizeFlyteEndpoint(s string) string {
	s = strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(s, "dns:///"); ok {
		s = "https://" + rest
	} else if !strings.Contains(s, "://") && s != "" {
		s = "https://" + s
	}
	return strings.TrimRight(s, "/")
}

// validateFlyte checks the options of a Flyte login: the endpoint must be an
// http(s) URL; the issuer and client id are optional (discovered).
func (o *Options) validateFlyte() error {
	u, err := url.Parse(normalizeFlyteEndpoint(o.FlyteEndpoint))
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%w: --flyte-endpoint %q is not an http(s) URL (e.g. https://flyte.example.com)", ErrUsage, o.FlyteEndpoint)
	}
	return nil
}

// flyteKey is Key for a Flyte login: the endpoint and the flags that change
// the tokens, never discovered values, so that the cached path needs no
// network.
func (o *Options) flyteKey() cache.Key {
	return cache.Key{
		Issuer:         flyteKeyPrefix + normalizeFlyteEndpoint(o.FlyteEndpoint),
		ClientID:       o.ClientID,
		Scopes:         o.Scopes(),
		ExtraParams:    o.AuthParams,
		UseAccessToken: o.UseAccessToken,
	}
}

// withFlyte returns o completed with what the Flyte deployment advertised
// (p.Client), where no flag set it: client id, scopes, the redirect URI (used
// verbatim unless --listen-address asks for a port of latchkey's choosing),
// the audience parameter; and the issuer, for messages.
func (o *Options) withFlyte(p *cache.Provider) Options {
	out := *o
	cc := p.Client
	out.IssuerURL = p.Issuer
	out.ClientID = cmp.Or(o.ClientID, cc.ClientID, DefaultFlyteClientID)
	if len(o.ExtraScopes) == 0 {
		out.ExtraScopes = slices.Clone(cc.Scopes)
		if len(out.ExtraScopes) == 0 {
			out.ExtraScopes = slices.Clone(defaultFlyteScopes)
		}
	}
	if o.RedirectURL == "" && len(o.ListenAddresses) == 0 {
		out.RedirectURL = cmp.Or(cc.RedirectURI, DefaultFlyteRedirectURI)
	}
	if _, set := o.AuthParams["audience"]; cc.Audience != "" && !set {
		out.AuthParams = maps.Clone(o.AuthParams)
		if out.AuthParams == nil {
			out.AuthParams = make(map[string]string, 1)
		}
		out.AuthParams["audience"] = cc.Audience
	}
	return out
}

// resendAuthParams tells whether the code exchange repeats the authorization
// request's parameters: as set, else in Flyte mode.
func (o *Options) resendAuthParams() bool {
	if o.ResendAuthParams != nil {
		return *o.ResendAuthParams
	}
	return o.FlyteEndpoint != ""
}

// with returns c with its options completed from what the Flyte deployment
// advertised in p (see Options.withFlyte), for the requests of a refresh, a
// login or a revocation; c itself when it is not a Flyte login. The copy's
// Options.Key differs from c's: cache entries are saved by c.
func (c *Client) with(p *cache.Provider) *Client {
	if c.Options.FlyteEndpoint == "" || p == nil || p.Client == nil {
		return c
	}
	cc := *c
	cc.Options = c.Options.withFlyte(p)
	return &cc
}

// cachedProvider returns e's provider metadata if they are for these options
// and younger than providerLifetime, else nil.
func (c *Client) cachedProvider(e *cache.Entry) *cache.Provider {
	o := &c.Options
	if e == nil || e.Provider == nil || c.now().Sub(e.Provider.FetchedAt) >= providerLifetime {
		return nil
	}
	p := e.Provider
	if o.FlyteEndpoint == "" {
		if p.Issuer != o.IssuerURL || p.Client != nil {
			return nil
		}
		return p
	}
	if p.Client == nil || p.Client.Endpoint != normalizeFlyteEndpoint(o.FlyteEndpoint) || (o.IssuerURL != "" && p.Issuer != o.IssuerURL) {
		return nil
	}
	return p
}

// provider discovers the provider metadata for c.Options: from the Flyte
// endpoint with FlyteEndpoint, else by OpenID Connect discovery of the issuer.
func (c *Client) provider(ctx context.Context, hc *http.Client) (*cache.Provider, error) {
	o := &c.Options
	if o.FlyteEndpoint == "" {
		return discover(ctx, hc, o.IssuerURL, c.now())
	}
	p, err := discoverFlyte(ctx, hc, normalizeFlyteEndpoint(o.FlyteEndpoint), o.IssuerURL, c.now())
	if err != nil {
		return nil, err
	}
	c.logger().Debug("discovered Flyte deployment", "endpoint", p.Client.Endpoint, "issuer", p.Issuer,
		"client_id", p.Client.ClientID, "redirect_uri", p.Client.RedirectURI, "scopes", p.Client.Scopes)
	return p, nil
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
func discoverFlyte(ctx context.Context, hc *http.Client, endpoint, want string, now time.Time) (*cache.Provider, error) {
	u := endpoint + FlyteMetadataPath
	var raw json.RawMessage
	if err := getJSON(ctx, hc, u, &raw); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDiscovery, err)
	}
	var p cache.Provider
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
	var cc cache.ClientConfig
	if err := getJSON(ctx, hc, cu, &cc); err != nil {
		return nil, fmt.Errorf("%w: Flyte client configuration: %w", ErrDiscovery, err)
	}
	cc.Endpoint = endpoint
	p.Client = &cc

	p.FetchedAt = now
	return &p, nil
}
