package cache

// ClientConfig is the public client registration a deployment advertises to
// its command-line tools, as Flyte's admin service does at
// /config/v1/flyte_client (flyteidl's PublicClientAuthConfigResponse). It is
// cached with the [Provider] metadata so that a refresh needs no request for
// it.
type ClientConfig struct {
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
